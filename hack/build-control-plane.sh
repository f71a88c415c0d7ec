#!/usr/bin/env bash
# Builds the real control plane used by the integration tests and the local
# cluster from the modules pinned in go.mod: etcd, kube-apiserver,
# kube-controller-manager, Kueue, kwok, the JobSet and LeaderWorkerSet
# controllers and Kubeflow's training-operator and Trainer (each from its
# own module under hack/frameworks/), and Helm and promtool for the chart's
# checks (hack/tools/), into bin/. A binary is rebuilt only when its module version
# changes (recorded in bin/.<name>.version). Cold builds take minutes each.
# The CRDs of Kueue and the framework controllers are copied from their
# modules to bin/<name>-crds/ beside their binaries, and their webhook
# configurations to bin/<name>-webhooks.yaml (internal/cluster registers
# them by URL).
set -euo pipefail
cd "$(dirname "$0")/.."

# Absolute: some targets build from their own module folder.
bin_dir=$(realpath -m "${BIN_DIR:-$PWD/bin}")
mkdir -p "$bin_dir"

k8s_version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
[[ $k8s_version =~ ^v1\.([0-9]+)\. ]]
k8s_minor=${BASH_REMATCH[1]}
# Unstamped binaries report v0.0.0-master+$Format$, which Kueue cannot parse.
k8s_ldflags="-X k8s.io/component-base/version.gitVersion=${k8s_version} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${k8s_minor} -X k8s.io/component-base/version.gitTreeState=clean"

# name  package  module-that-versions-it  [module folder, when not ours]
targets=(
  "etcd           go.etcd.io/etcd/server/v3                go.etcd.io/etcd/server/v3"
  "kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver     k8s.io/kubernetes"
  "kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes"
  "kwok           sigs.k8s.io/kwok/cmd/kwok                sigs.k8s.io/kwok"
  "kueue          sigs.k8s.io/kueue/cmd/kueue              sigs.k8s.io/kueue"
  "jobset-controller sigs.k8s.io/jobset                    sigs.k8s.io/jobset"
  "lws-controller sigs.k8s.io/lws/cmd                      sigs.k8s.io/lws"
  "training-operator github.com/kubeflow/training-operator/cmd/training-operator.v1 github.com/kubeflow/training-operator hack/frameworks/training-operator"
  "trainer-controller-manager github.com/kubeflow/trainer/v2/cmd/trainer-controller-manager github.com/kubeflow/trainer/v2 hack/frameworks/trainer"
  # The chart's and alert rules' checks (make verify-generate, make lint-chart).
  "helm           helm.sh/helm/v4/cmd/helm                 helm.sh/helm/v4 hack/tools/helm"
  "promtool       github.com/prometheus/prometheus/cmd/promtool github.com/prometheus/prometheus hack/tools/promtool"
)

# assets NAME prints the CRD files (a glob) and webhook file (or -) that
# NAME's module ships, relative to the module root; nothing for a plain
# binary.
assets() {
  case $1 in
    kueue) echo "config/components/crd/bases/*.yaml config/components/webhook/manifests.yaml" ;;
    jobset-controller) echo "config/components/crd/bases/*.yaml config/components/webhook/manifests.yaml" ;;
    lws-controller) echo "config/crd/bases/*.yaml config/webhook/manifests.yaml" ;;
    # PyTorchJob only: the stack enables no other training-operator scheme.
    training-operator) echo "manifests/base/crds/kubeflow.org_pytorchjobs.yaml manifests/base/webhook/manifests.yaml" ;;
    trainer-controller-manager) echo "manifests/base/crds/trainer.kubeflow.org_*.yaml manifests/base/webhook/manifests.yaml" ;;
  esac
}

copy_assets() {
  local name=$1 dir=$2 crds webhooks
  read -r crds webhooks <<<"$(assets "$name")"
  [[ -n $crds ]] || return 0
  rm -rf "$bin_dir/$name-crds"
  mkdir -p "$bin_dir/$name-crds"
  # shellcheck disable=SC2086 # $crds is a glob
  cp "$dir"/$crds "$bin_dir/$name-crds/"
  chmod u+w "$bin_dir/$name-crds"/*.yaml
  if [[ $webhooks != - ]]; then
    cp "$dir/$webhooks" "$bin_dir/$name-webhooks.yaml"
    chmod u+w "$bin_dir/$name-webhooks.yaml"
  fi
}

# assets_present NAME: whatever NAME's module ships is in bin/.
assets_present() {
  local crds webhooks
  read -r crds webhooks <<<"$(assets "$1")"
  [[ -z $crds || -d $bin_dir/$1-crds ]] && [[ -z $webhooks || $webhooks == - || -f $bin_dir/$1-webhooks.yaml ]]
}

go_version=$(go env GOVERSION)
for t in "${targets[@]}"; do
  read -r name pkg module moddir <<<"$t"
  moddir=${moddir:-.}
  want="$(cd "$moddir" && go list -m -f '{{.Path}}@{{.Version}}' "$module") ${go_version}"
  stamp="$bin_dir/.${name}.version"
  if [[ -x $bin_dir/$name && -f $stamp && $(<"$stamp") == "$want" ]] && assets_present "$name"; then
    echo "build-control-plane: $name up to date ($want)"
    continue
  fi
  echo "build-control-plane: building $name from $want (cold builds take minutes) ..."
  start=$SECONDS
  ldflags=""
  [[ $name == kube-* ]] && ldflags=$k8s_ldflags
  (cd "$moddir" && go build -ldflags "$ldflags" -o "$bin_dir/$name" "$pkg")
  copy_assets "$name" "$(cd "$moddir" && go list -m -f '{{.Dir}}' "$module")"
  echo "$want" >"$stamp"
  echo "build-control-plane: built $name in $((SECONDS - start))s"
done

# The Prometheus Operator's ServiceMonitor and PrometheusRule CRDs, for the
# server-side dry run of the chart's monitoring objects
# (test/integration/chart): from the operator's module, no binary.
prometheus_operator=github.com/prometheus-operator/prometheus-operator@v0.92.1
stamp="$bin_dir/.prometheus-operator-crds.version"
if [[ -d $bin_dir/prometheus-operator-crds && -f $stamp && $(<"$stamp") == "$prometheus_operator" ]]; then
  echo "build-control-plane: prometheus-operator-crds up to date ($prometheus_operator)"
else
  dir=$(cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download -json "$prometheus_operator" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [[ -n $dir ]] || { echo "build-control-plane: could not download $prometheus_operator"; exit 1; }
  rm -rf "$bin_dir/prometheus-operator-crds"
  mkdir -p "$bin_dir/prometheus-operator-crds"
  cp "$dir"/example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,prometheusrules}.yaml "$bin_dir/prometheus-operator-crds/"
  chmod u+w "$bin_dir/prometheus-operator-crds"/*.yaml
  echo "$prometheus_operator" >"$stamp"
  echo "build-control-plane: copied the ServiceMonitor and PrometheusRule CRDs of $prometheus_operator"
fi
