#!/usr/bin/env bash
# Starts the real local-server binary on embedded defaults (no AWS variables) and walks
# sign-up → outbox → verify → login → me → refresh with curl.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cargo build --locked -q -p local-server
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
log="$(mktemp)"
# Embedded defaults: strip every variable that would switch to AWS.
env -u TABLE_NAME -u MAILER -u SIGNING_KEY_SECRET_ID -u AWS_ENDPOINT_URL_DYNAMODB \
    -u AWS_ENDPOINT_URL_SESV2 -u AWS_ENDPOINT_URL_SECRETS_MANAGER -u AWS_ENDPOINT_URL_SQS -u MAIL_QUEUE_URL PORT="$port" METRICS=emf \
    BOOTSTRAP_ADMIN_EMAIL=smoke-admin@example.com BOOTSTRAP_ADMIN_PASSWORD=violet-tractor-sunrise-42 \
    target/debug/local-server >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done
grep -q "listening on $base" "$log" || { cat "$log"; echo "no startup line"; exit 1; }
grep -q "EPHEMERAL" "$log" || { cat "$log"; echo "ephemeral key not announced"; exit 1; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
email="smoke-$RANDOM@example.com"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' -H 'x-request-id: smoke-client-1' \
  -d "{\"email\":\"$email\",\"password\":\"violet-tractor-sunrise-42\"}" "$base/auth/signup")
[ "$code" = 202 ] || { echo "signup: $code"; exit 1; }
# Mail is queued in-process and sent a moment after the answer.
token=""
for _ in $(seq 1 50); do
  token=$(curl -sf "$base/_dev/outbox" | python3 -c "import json,sys; m=[m for m in json.load(sys.stdin) if m['to']=='$email']; print(m[-1]['text'].split('token=')[1].split()[0] if m else '')")
  [ -n "$token" ] && break; sleep 0.1
done
[ -n "$token" ] || { echo "no verification mail in the outbox"; exit 1; }
curl -sf -H 'content-type: application/json' -d "{\"token\":\"$token\",\"password\":\"violet-tractor-sunrise-42\"}" "$base/auth/verify-email" >/dev/null
pair=$(curl -sf -H 'content-type: application/json' -d "{\"email\":\"$email\",\"password\":\"violet-tractor-sunrise-42\"}" "$base/auth/login")
access=$(echo "$pair" | json "['access_token']")
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' -d "{\"email\":\"$email\",\"password\":\"wrong-password-1\"}" "$base/auth/login")
[ "$code" = 401 ] || { echo "wrong password: $code"; exit 1; }
refresh=$(echo "$pair" | json "['refresh_token']")
[ "$(curl -sf -H "authorization: Bearer $access" "$base/auth/me" | json "['email']")" = "$email" ]
curl -sf -d "grant_type=refresh_token&refresh_token=$refresh" "$base/auth/token" >/dev/null

# An admin action, for the audit event.
admin=$(curl -sf -H 'content-type: application/json' -d '{"email":"smoke-admin@example.com","password":"violet-tractor-sunrise-42"}' "$base/auth/login" | json "['access_token']")
code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $admin" -H 'content-type: application/json' \
  -d '{"email":"smoke-created@example.com","password":"granite-meadow-compass-81","is_superuser":true}' "$base/users")
[ "$code" = 201 ] || { echo "admin create: $code"; exit 1; }

# Security events: one JSON line each, with the stable names; no secret anywhere in the log.
kill $pid; wait $pid 2>/dev/null || true
python3 - "$log" "$token" "$access" "$refresh" <<'PY'
import json, sys
log, *secrets = sys.argv[1:]
secrets += ["violet-tractor-sunrise-42", "granite-meadow-compass-81"]
text = open(log).read()
for s in secrets:
    assert s and s not in text, "a secret reached the log"
    # The secret part of a token (its last segment; ids before it may be logged).
    assert s.split(".")[-1] not in text, "a token's secret part reached the log"
lines = [json.loads(l) for l in text.splitlines() if l.startswith("{")]
metrics = {m["Name"] for l in lines if "_aws" in l for m in l["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
assert {"LoginSucceeded", "LoginFailed"} <= metrics, f"EMF metrics missing: {metrics}"
events = [l for l in lines if "_aws" not in l]
names = [e.get("event") for e in events]
for want in ["signup", "email_verified", "login_succeeded", "token_refreshed"]:
    assert want in names, f"no {want} event in {names}"
created = [e for e in events if e.get("event") == "admin_user_created" and e.get("actor_id") not in (None, "cli")]
assert created and created[-1]["fields"] == "email,password,is_superuser", created
for e in events:
    if e.get("event") in ("signup", "login_succeeded"):
        assert e["timestamp"].endswith("Z") and e["request_id"] and e["ip"] == "127.0.0.1", e
# A client's X-Request-Id is logged beside the server's id, never in its place.
signup = [e for e in events if e.get("event") == "signup"][-1]
assert signup["client_request_id"] == "smoke-client-1" and signup["request_id"] != "smoke-client-1", signup
print(f"smoke: {len(events)} JSON log lines, security events present, EMF metrics {sorted(metrics)}, no secret logged")
PY
echo "smoke: local server on embedded defaults walked signup → verify → login → me → refresh"
