#!/usr/bin/env bash
# Answer times of sign-up, resend-verification, forgot-password and the locking login for
# known and unknown addresses, through the release function binaries with mail queued on
# moto's SQS (tests/examples/bench_mail_timing.rs). Starts the emulators unless they are
# running. Prints distributions; asserts nothing.
#
#   infra/bench-mail-timing.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=infra/lib.sh
. infra/lib.sh
use_emulators
run_on_release_functions bench_mail_timing
