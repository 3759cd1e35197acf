#!/usr/bin/env bash
# The function binaries link one HTTP client stack and one crypto provider: fails if the
# functions package's dependency tree holds ring, rustls 0.21, hyper 0.14, OpenSSL or the SSO
# credential crates (the operator CLI may have SSO; functions get credentials from Lambda).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tree="$(cargo tree --locked -p functions -e normal --prefix none | sed 's/ (\*)$//; s/ (proc-macro)$//' | sort -u)"
bad="$(grep -E '^(ring|openssl|openssl-sys|aws-sdk-sso|aws-sdk-ssooidc) v|^rustls v0\.21\.|^hyper v0\.14\.|^hyper-rustls v0\.24\.' <<<"$tree" || true)"
if [ -n "$bad" ]; then
  echo "check-deps: the functions link what they must not:" >&2
  sed 's/^/  /' <<<"$bad" >&2
  exit 1
fi
echo "check-deps: functions link $(grep -c . <<<"$tree") crates; $(grep -E '^(hyper|rustls|aws-lc-rs) v' <<<"$tree" | tr '\n' ' ')and no ring, rustls 0.21, hyper 0.14, OpenSSL or SSO crates"
