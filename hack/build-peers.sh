#!/usr/bin/env bash
# Builds the peers Tessera's benchmarks compare against into bin/, each from
# its own module under hack/peers/ (they pin other Kubernetes releases).
# Rebuilt only when the peer's go.sum changes. Cold: about 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir=$PWD/bin
mkdir -p "$bin_dir"

want="$(sha256sum hack/peers/coscheduling/go.sum | cut -d' ' -f1) $(go env GOVERSION)"
stamp=$bin_dir/.coscheduling-scheduler.version
if [[ -x $bin_dir/coscheduling-scheduler && -f $stamp && $(<"$stamp") == "$want" ]]; then
  echo "build-peers: coscheduling-scheduler up to date"
  exit 0
fi
echo "build-peers: building scheduler-plugins v0.34.7 (coscheduling) from hack/peers/coscheduling (cold: minutes) ..."
start=$SECONDS
(cd hack/peers/coscheduling && GOFLAGS=-mod=readonly go build \
  -ldflags "-X k8s.io/component-base/version.gitVersion=v1.34.4 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34" \
  -o "$bin_dir/coscheduling-scheduler" sigs.k8s.io/scheduler-plugins/cmd/scheduler)
echo "$want" >"$stamp"
echo "build-peers: built coscheduling-scheduler in $((SECONDS - start))s"
