#!/usr/bin/env bash
# Builds the peers Tessera's benchmarks compare against into bin/, each from
# its own module under hack/peers/ (they pin other Kubernetes releases).
# Each is rebuilt only when its go.sum changes. Cold: about 5 minutes each
# (coscheduling; Volcano, which also copies its CRDs into bin/).
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir=$PWD/bin
mkdir -p "$bin_dir"

# module_dir MODULE@VERSION: the module's folder in the module cache,
# downloaded first if need be (outside any module, so that no go.mod applies).
module_dir() {
  (cd / && go mod download -json "$1") | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# up_to_date NAME WANT: bin/NAME was built from WANT (its stamp says so).
up_to_date() {
  local stamp=$bin_dir/.$1.version
  [[ -x $bin_dir/$1 && -f $stamp && $(<"$stamp") == "$2" ]]
}

build_coscheduling() {
  local want
  want="$(sha256sum hack/peers/coscheduling/go.sum | cut -d' ' -f1) $(go env GOVERSION)"
  if up_to_date coscheduling-scheduler "$want"; then
    echo "build-peers: coscheduling-scheduler up to date"
    return
  fi
  echo "build-peers: building scheduler-plugins v0.34.7 (coscheduling) from hack/peers/coscheduling (cold: minutes) ..."
  local start=$SECONDS
  (cd hack/peers/coscheduling && GOFLAGS=-mod=readonly go build \
    -ldflags "-X k8s.io/component-base/version.gitVersion=v1.34.4 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34" \
    -o "$bin_dir/coscheduling-scheduler" sigs.k8s.io/scheduler-plugins/cmd/scheduler)
  echo "$want" >"$bin_dir/.coscheduling-scheduler.version"
  echo "build-peers: built coscheduling-scheduler in $((SECONDS - start))s"
}

# Volcano v1.15.1's vc-scheduler, from hack/peers/volcano, and next to it
# (bin/volcano-scheduler-crds/) the CRDs it reads, copied from the Volcano
# module at build time: nothing of Volcano's is committed.
build_volcano() {
  local version=v1.15.1 want crds=$bin_dir/volcano-scheduler-crds
  # This script's hash too: it writes the constant and picks the CRDs.
  want="$(sha256sum hack/peers/volcano/go.sum hack/build-peers.sh | cut -d' ' -f1 | tr '\n' ' ')$(go env GOVERSION)"
  if up_to_date volcano-scheduler "$want" && [[ -d $crds ]]; then
    echo "build-peers: volcano-scheduler up to date"
    return
  fi
  echo "build-peers: building Volcano $version (vc-scheduler) from hack/peers/volcano (cold: minutes) ..."
  local start=$SECONDS volcano_dir apis_dir=_output/peers/volcano-apis
  volcano_dir=$(module_dir "volcano.sh/volcano@$version")
  # volcano.sh/apis v1.15 is not served by the module proxy (Volcano builds
  # it from its repository's staging folder). v1.14.0 is, and lacks only the
  # queue-admission scheduling gate's name: hack/peers/volcano/go.mod
  # replaces volcano.sh/apis with this writable copy of v1.14.0 plus that
  # constant (the value of v1.15, docs/design/scheduling-gates-queue-admission.md).
  rm -rf "$apis_dir"
  mkdir -p "$(dirname "$apis_dir")"
  cp -r "$(module_dir volcano.sh/apis@v1.14.0)" "$apis_dir"
  chmod -R u+w "$apis_dir"
  cat >"$apis_dir/pkg/apis/scheduling/v1beta1/zz_tessera_queue_allocation_gate.go" <<'EOF'
package v1beta1

// QueueAllocationGateKey is the scheduling gate of a pod waiting for its
// queue to have room (Volcano v1.15's SchedulingGatesQueueAdmission); added
// to volcano.sh/apis v1.14.0 by Tessera's hack/build-peers.sh.
const QueueAllocationGateKey = GroupName + "/queue-allocation-gate"
EOF
  (cd hack/peers/volcano && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build \
    -ldflags "-X volcano.sh/volcano/pkg/version.Version=$version" \
    -o "$bin_dir/volcano-scheduler" volcano.sh/volcano/cmd/scheduler)
  rm -rf "$crds"
  mkdir -p "$crds"
  local crd
  for crd in scheduling.volcano.sh_podgroups scheduling.volcano.sh_queues topology.volcano.sh_hypernodes nodeinfo.volcano.sh_numatopologies; do
    install -m 0644 "$volcano_dir/config/crd/volcano/bases/$crd.yaml" "$crds/"
  done
  echo "$want" >"$bin_dir/.volcano-scheduler.version"
  echo "build-peers: built volcano-scheduler in $((SECONDS - start))s"
}

build_coscheduling
build_volcano
