#!/usr/bin/env bash
# Black-box checks of the running local server backed by DynamoDB Local and moto (the
# emulators must be started and infra/.run/env sourced):
#   1. Schemathesis against /openapi.json with every check but positive_data_acceptance (see
#      docs/api.md: the API answers 400 to schema-valid but unknown tokens and weak passwords, rules
#      JSON Schema cannot express) and without POST /auth/logout-all, which would end the test
#      user's session and leave every other bearer operation untested past authentication
#      (tests/e2e/lifecycle.rs covers it). Any 5xx, undocumented status, content type, header or
#      response schema fails.
#   2. PyJWT and Authlib (clients we did not write) against the JWKS and /auth/token; pyotp
#      (an RFC 6238 implementation we did not write) enrols, signs in and is refused replays.
#   3. The mail-link pages in headless Chromium (playwright-core): open, submit, see the result.
#   4. /docs in headless Chromium with the network closed: the operations list must render.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=infra/lib.sh
. infra/lib.sh
ensure_venv infra/.venv-api infra/requirements-api-tests.txt \
  sh -c 'pytest --version && schemathesis --version && python -c "import jwt, authlib, requests, pyotp"'
if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
cargo build --locked -q -p local-server
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
base="http://127.0.0.1:$port"
log="$(mktemp)"
admin_email="schemathesis-admin-$RANDOM@example.com"
BOOTSTRAP_ADMIN_EMAIL="$admin_email" BOOTSTRAP_ADMIN_PASSWORD="violet-tractor-sunrise-42" \
TABLE_NAME="api-tests-$port" MAILER=ses MAIL_FROM=no-reply@example.com ARGON2_MEMORY_KIB=256 ARGON2_ITERATIONS=1 \
  ENUMERATION_FLOOR_MS=0 PORT="$port" RUST_LOG=warn target/debug/local-server --create-table >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done

# A verified user, so that the bearer operations are exercised past authentication.
email="schemathesis-$RANDOM$RANDOM@example.com"
password="violet-tractor-sunrise-42"
curl -sf -H 'content-type: application/json' -d "{\"email\":\"$email\",\"password\":\"$password\"}" "$base/auth/signup" >/dev/null
token=$(curl -sf "$MOTO_URL/moto-api/data.json" | python3 -c "
import json, re, sys
msgs = [m for m in json.load(sys.stdin)['ses']['Message'] if '$email' in m['destinations']['ToAddresses']]
print(re.search(r'token=([A-Za-z0-9._-]+)', msgs[-1]['body']).group(1))")
curl -sf -H 'content-type: application/json' -d "{\"token\":\"$token\",\"password\":\"$password\"}" "$base/auth/verify-email" >/dev/null
access=$(curl -sf -H 'content-type: application/json' -d "{\"email\":\"$email\",\"password\":\"$password\"}" "$base/auth/login" \
  | python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])")

# Standard clients: PyJWT against the JWKS, Authlib's RFC 6749 client against /auth/token.
BASE_URL="$base" USER_EMAIL="$email" USER_PASSWORD="$password" \
  infra/.venv-api/bin/pytest -q -p no:cacheprovider tests/interop

# The mail pages in headless Chromium: open the link from the mail, submit, see the result.
BASE_URL="$base" node --test tests/browser/

# Schemathesis acts as the bootstrap admin, so that the admin routes are exercised too.
admin_access=$(curl -sf -H 'content-type: application/json' -d "{\"email\":\"$admin_email\",\"password\":\"$password\"}" "$base/auth/login" \
  | python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])")
SCHEMATHESIS_TELEMETRY=false infra/.venv-api/bin/schemathesis run "$base/openapi.json" \
  --checks all --exclude-checks positive_data_acceptance \
  --header "Authorization: Bearer $admin_access" \
  --exclude-path /auth/logout-all \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-150}" --seed 42 --no-color

dom="$(timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$(mktemp -d)" --virtual-time-budget=15000 --dump-dom "$base/docs" 2>/dev/null)"
rendered=$(grep -o 'class="opblock-summary-path" data-path="[^"]*"' <<<"$dom" | wc -l)
documented=$(curl -sf "$base/openapi.json" | python3 -c "import json,sys; print(sum(len(v) for v in json.load(sys.stdin)['paths'].values()))")
echo "docs: headless Chromium rendered $rendered operations; the document has $documented"
[ "$rendered" -eq "$documented" ] && [ "$documented" -gt 0 ]
