#!/usr/bin/env bash
# Pins k8s.io/kubernetes and every staging module it replaces to one release.
# kubernetes requires its staging modules at v0.0.0 and replaces them with
# ./staging paths, so a consumer needs one replace line per staging module.
# Usage: hack/update-k8s-pins.sh v1.36.3
set -euo pipefail

version=${1:?usage: $0 v1.MINOR.PATCH}
[[ $version =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || { echo "version must look like v1.36.3, got $version" >&2; exit 2; }
staging_version="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"

cd "$(dirname "$0")/.."
gomod=$(go mod download -json "k8s.io/kubernetes@${version}" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
[[ -f $gomod ]] || { echo "could not download k8s.io/kubernetes@${version}" >&2; exit 1; }

mapfile -t staging < <(sed -n 's#^\t\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod")
echo "pinning k8s.io/kubernetes ${version} and ${#staging[@]} staging modules at ${staging_version}"

args=(-require="k8s.io/kubernetes@${version}")
for m in "${staging[@]}"; do
  args+=(-replace="${m}=${m}@${staging_version}")
done
go mod edit "${args[@]}"
go mod tidy
