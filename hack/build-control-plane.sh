#!/usr/bin/env bash
# Builds the real control plane used by the integration tests and the local
# cluster from the modules pinned in go.mod: etcd, kube-apiserver,
# kube-controller-manager, Kueue and kwok, into bin/. A binary is rebuilt
# only when its module version changes (recorded in bin/.<name>.version).
# Cold builds take minutes each. Kueue's CRDs are copied from its module to
# bin/kueue-crds/ beside its binary.
set -euo pipefail
cd "$(dirname "$0")/.."

bin_dir=${BIN_DIR:-$PWD/bin}
mkdir -p "$bin_dir"

k8s_version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
[[ $k8s_version =~ ^v1\.([0-9]+)\. ]]
k8s_minor=${BASH_REMATCH[1]}
# Unstamped binaries report v0.0.0-master+$Format$, which Kueue cannot parse.
k8s_ldflags="-X k8s.io/component-base/version.gitVersion=${k8s_version} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${k8s_minor} -X k8s.io/component-base/version.gitTreeState=clean"

# name  package  module-that-versions-it
targets=(
  "etcd           go.etcd.io/etcd/server/v3                go.etcd.io/etcd/server/v3"
  "kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver     k8s.io/kubernetes"
  "kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes"
  "kwok           sigs.k8s.io/kwok/cmd/kwok                sigs.k8s.io/kwok"
  "kueue          sigs.k8s.io/kueue/cmd/kueue              sigs.k8s.io/kueue"
)

go_version=$(go env GOVERSION)
for t in "${targets[@]}"; do
  read -r name pkg module <<<"$t"
  want="$(go list -m -f '{{.Path}}@{{.Version}}' "$module") ${go_version}"
  stamp="$bin_dir/.${name}.version"
  if [[ -x $bin_dir/$name && -f $stamp && $(<"$stamp") == "$want" ]] && [[ $name != kueue || -d $bin_dir/kueue-crds ]]; then
    echo "build-control-plane: $name up to date ($want)"
    continue
  fi
  echo "build-control-plane: building $name from $want (cold builds take minutes) ..."
  start=$SECONDS
  ldflags=""
  [[ $name == kube-* ]] && ldflags=$k8s_ldflags
  go build -ldflags "$ldflags" -o "$bin_dir/$name" "$pkg"
  if [[ $name == kueue ]]; then
    rm -rf "$bin_dir/kueue-crds"
    mkdir -p "$bin_dir/kueue-crds"
    cp "$(go list -m -f '{{.Dir}}' "$module")"/config/components/crd/bases/*.yaml "$bin_dir/kueue-crds/"
    chmod u+w "$bin_dir"/kueue-crds/*.yaml
  fi
  echo "$want" >"$stamp"
  echo "build-control-plane: built $name in $((SECONDS - start))s"
done
