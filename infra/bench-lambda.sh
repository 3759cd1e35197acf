#!/usr/bin/env bash
# Init and first-request figures of the release function binaries (`cargo build --release -p
# functions`: what users deploy, built for this machine), driven through the loopback Runtime
# API of the end-to-end harness against DynamoDB Local and moto (started here unless already
# running). Prints figures; asserts nothing (tests/examples/lambda_figures.rs). The driver is
# the debug build the tests already made: its share of each figure is the harness's HTTP hop.
#
#   infra/bench-lambda.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=infra/lib.sh
. infra/lib.sh
use_emulators
run_on_release_functions lambda_figures
