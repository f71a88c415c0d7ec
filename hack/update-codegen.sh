#!/usr/bin/env bash
# Regenerates deepcopy code and CRD manifests from the API types with
# controller-gen: Tessera's own types (apis/) and the PodGroup type of
# sigs.k8s.io/scheduler-plugins, which the gang plugin uses.
set -euo pipefail
cd "$(dirname "$0")/.."

controller_gen_version=v0.23.0
bin_dir=$PWD/bin
controller_gen=$bin_dir/controller-gen
if [[ ! -x $controller_gen || $("$controller_gen" --version) != *"$controller_gen_version"* ]]; then
  echo "update-codegen: installing controller-gen $controller_gen_version"
  # Its own module graph: controller-tools needs newer k8s libraries than Tessera pins.
  (cd "$(mktemp -d)" && GOBIN=$bin_dir GOFLAGS= go install "sigs.k8s.io/controller-tools/cmd/controller-gen@${controller_gen_version}")
fi

"$controller_gen" object:headerFile=hack/boilerplate.go.txt paths=./apis/...

# The chart ships the CRDs; make manifests copies them to manifests/crd.
crd_dir=charts/tessera/crds
rm -f "$crd_dir"/*.yaml
"$controller_gen" crd paths=./apis/... output:crd:artifacts:config="$crd_dir"

# The scheduler-plugins package also holds ElasticQuota; Tessera installs only PodGroup.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$controller_gen" crd paths=sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1 output:crd:artifacts:config="$tmp"
cp "$tmp/scheduling.x-k8s.io_podgroups.yaml" "$crd_dir/"
echo "update-codegen: wrote $(ls "$crd_dir" | tr '\n' ' ')"
