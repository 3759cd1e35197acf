#!/usr/bin/env bash
# DynamoDB calls and sequential round trips per request, rate limits on and off, counted by a
# proxy in front of DynamoDB Local while the function binaries serve API Gateway events
# (tests/examples/bench_calls.rs). Starts the emulators unless they are running. Prints figures;
# the budgets are asserted by tests/e2e/calls.rs.
#
#   infra/bench-calls.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=infra/lib.sh
. infra/lib.sh
use_emulators
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --locked --workspace --bins --tests --examples
"$target/debug/examples/bench_calls"
