#!/usr/bin/env bash
# How a release profile trades build time for binary size: for each variant, a cold
# `cargo lambda build --release --arm64` of every function in a fresh target directory, its
# wall time, then the size of every bootstrap. Prints figures; asserts nothing. The chosen
# profile is `[profile.release]` in Cargo.toml (docs/operations.md has the table).
#
#   infra/measure-profiles.sh "z fat 1 abort" "z false 16 abort" ...
#   (each variant: opt-level lto codegen-units panic)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=infra/lib.sh
. infra/lib.sh
ensure_tools_venv
rustup target add aarch64-unknown-linux-gnu >/dev/null
export PATH="$root/infra/.venv-tools/bin:$PATH"
[ "$#" -gt 0 ] || set -- "z fat 1 abort"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/profiles.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
for variant in "$@"; do
  read -r opt lto cgu panic <<<"$variant"
  export CARGO_TARGET_DIR="$scratch/target" CARGO_PROFILE_RELEASE_OPT_LEVEL="$opt" \
    CARGO_PROFILE_RELEASE_LTO="$lto" CARGO_PROFILE_RELEASE_CODEGEN_UNITS="$cgu" \
    CARGO_PROFILE_RELEASE_PANIC="$panic"
  rm -rf "$CARGO_TARGET_DIR"
  t0=$(date +%s)
  cargo lambda build --release --arm64 --locked -p functions >"$scratch/build.log" 2>&1 \
    || { tail -30 "$scratch/build.log"; exit 1; }
  t1=$(date +%s)
  echo "== opt-level=$opt lto=$lto codegen-units=$cgu panic=$panic: cold build of every function $((t1 - t0)) s"
  max=0 total=0 n=0
  for f in "$CARGO_TARGET_DIR"/lambda/*/bootstrap; do
    name="$(basename "$(dirname "$f")")"
    size=$(stat -c %s "$f")
    total=$((total + size)) n=$((n + 1))
    [ "$name" = docs ] || [ "$size" -le "$max" ] || max=$size
    printf '   %-24s %10s bytes\n' "$name" "$size"
  done
  echo "   $n functions, $total bytes in all, largest but docs $max bytes"
done
