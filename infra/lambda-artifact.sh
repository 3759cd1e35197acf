#!/usr/bin/env bash
# One function's Lambda artifact for SAM's makefile build (see Makefile):
#   infra/lambda-artifact.sh <LogicalId> <ARTIFACTS_DIR>
# Builds every binary of the functions package with one `cargo lambda build --release --arm64`
# (serialized with flock, so SAM's parallel builds share one compile), then copies
# <target dir>/lambda/<binary>/bootstrap, where <binary> is the logical id in kebab case without
# "Function" (UsersRevokeSessionsFunction → users-revoke-sessions).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
logical="$1"
dest="$2"
binary="$(sed -E 's/Function$//; s/([a-z0-9])([A-Z])/\1-\2/g' <<<"$logical" | tr '[:upper:]' '[:lower:]')"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$target"
flock "$target/.lambda-build.lock" cargo lambda build --release --arm64 --locked -p functions >&2
mkdir -p "$dest"
cp "$target/lambda/$binary/bootstrap" "$dest/bootstrap"
