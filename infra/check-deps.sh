#!/usr/bin/env bash
# The function binaries link one HTTP client stack and one crypto provider: fails if the
# functions package's dependency tree holds ring, rustls 0.21, hyper 0.14, OpenSSL, the SSO
# credential crates (the operator CLI may have SSO; functions get credentials from Lambda), or
# HTTP/2 and the SDK's default client. The functions' client is hyper-util's pooled client over
# hyper-rustls, HTTP/1.1 only (shared::aws_http); the CLI and the local server take the SDK's
# default client through the `operator-client` feature, which the functions never enable.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tree="$(cargo tree --locked -p functions -e normal --prefix none | sed 's/ (\*)$//; s/ (proc-macro)$//' | sort -u)"
bad="$(grep -E '^(ring|openssl|openssl-sys|aws-sdk-sso|aws-sdk-ssooidc|h2|aws-smithy-http-client) v|^rustls v0\.21\.|^hyper v0\.14\.' <<<"$tree" || true)"
if [ -n "$bad" ]; then
  echo "check-deps: the functions link what they must not:" >&2
  sed 's/^/  /' <<<"$bad" >&2
  exit 1
fi
echo "check-deps: functions link $(grep -c . <<<"$tree") crates; $(grep -E '^(hyper|hyper-util|hyper-rustls|rustls|aws-lc-rs) v' <<<"$tree" | tr '\n' ' ')and no ring, rustls 0.21, hyper 0.14, OpenSSL, SSO crates, h2 or the SDK's default HTTP client"
