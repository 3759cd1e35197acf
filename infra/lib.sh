# Helpers the infra scripts source. Every install step checks that the tool *works* (runs, or
# imports), never only that a file exists: a virtual environment copied or cloned from another
# path has scripts whose first line names a Python that is not there.

# ensure_venv DIR REQUIREMENTS CHECK...
#   Makes DIR a virtual environment with REQUIREMENTS installed, unless CHECK (a command run
#   with DIR/bin first on PATH) already succeeds and the requirements did not change since the
#   last install. A broken environment is deleted and built again.
ensure_venv() {
  local dir="$1" req="$2"
  shift 2
  local stamp
  stamp="$dir/.installed-$(sha1sum "$req" | cut -c1-12)"
  if [ -f "$stamp" ] && PATH="$dir/bin:$PATH" "$@" >/dev/null 2>&1; then
    return 0
  fi
  if [ -d "$dir" ]; then
    echo "$(basename "$dir"): missing, stale or broken; rebuilding" >&2
    rm -rf "$dir"
  fi
  python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  if ! PATH="$dir/bin:$PATH" "$@" >/dev/null; then
    echo "$(basename "$dir"): installed, but '$*' still fails" >&2
    return 1
  fi
  touch "$stamp"
}

# ensure_node_modules DIR CHECK...
#   `npm ci` in DIR unless CHECK (run in DIR) succeeds and package-lock.json did not change.
ensure_node_modules() {
  local dir="$1"
  shift
  local stamp
  stamp="$dir/node_modules/.installed-$(sha1sum "$dir/package-lock.json" | cut -c1-12)"
  if [ -f "$stamp" ] && (cd "$dir" && "$@") >/dev/null 2>&1; then
    return 0
  fi
  (cd "$dir" && rm -rf node_modules && npm ci --no-audit --no-fund --loglevel=error)
  if ! (cd "$dir" && "$@") >/dev/null; then
    echo "node_modules in $dir: installed, but '$*' still fails" >&2
    return 1
  fi
  touch "$stamp"
}

# The tools venv (SAM CLI, cfn-lint, cargo-lambda, zig): infra/.venv-tools.
ensure_tools_venv() {
  local infra
  infra="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  ensure_venv "$infra/.venv-tools" "$infra/requirements-tools.txt" \
    sh -c 'sam --version && cfn-lint --version && cargo-lambda lambda --version && python -c "import ziglang, samtranslator"'
}

# use_emulators
#   Starts the emulators (stopped again on exit) and loads their environment, unless a
#   caller already did (AWS_ENDPOINT_URL_DYNAMODB is set). For the benchmark scripts.
use_emulators() {
  if [ -z "${AWS_ENDPOINT_URL_DYNAMODB:-}" ]; then
    trap 'infra/emulators.sh stop' EXIT
    infra/emulators.sh start >/dev/null
    # shellcheck disable=SC1091
    . infra/.run/env
  fi
}

# run_on_release_functions EXAMPLE
#   Builds the release function binaries and the test harness, then runs the harness's
#   example EXAMPLE against the release binaries (FUNCTIONS_DIR). For the benchmark scripts.
run_on_release_functions() {
  local target="${CARGO_TARGET_DIR:-$PWD/target}"
  cargo build --release --locked -p functions
  cargo build --locked --workspace --bins --tests --examples
  FUNCTIONS_DIR="$target/release" "$target/debug/examples/$1"
}
