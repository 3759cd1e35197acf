#!/usr/bin/env bash
# Fails when the git index holds something generated: a virtual environment, node_modules,
# build output (target/, .aws-sam/), Python caches, or any file over 1 MB. A clone at another
# path breaks on such files (a venv's scripts name the absolute path they were made in), and
# they bloat every clone. Part of the test command (infra/test.sh).
#
#   infra/check-repo.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fail=0
generated=$(git ls-files | grep -E '(^|/)(\.venv[^/]*|venv|node_modules|target|\.aws-sam|__pycache__|\.run)/' || true)
if [ -n "$generated" ]; then
  echo "check-repo: generated files are tracked ($(wc -l <<<"$generated") files), e.g.:" >&2
  head -n 5 <<<"$generated" | sed 's/^/  /' >&2
  echo "  remove them with: git rm -r --cached <dir> (and keep them in .gitignore)" >&2
  fail=1
fi
big=$(git ls-files -z | xargs -0 -r stat -c '%s %n' 2>/dev/null | awk '$1 > 1048576 {print $2 " (" $1 " bytes)"}')
if [ -n "$big" ]; then
  echo "check-repo: files over 1 MB are tracked:" >&2
  sed 's/^/  /' <<<"$big" >&2
  fail=1
fi
[ "$fail" -eq 0 ] && echo "check-repo: $(git ls-files | wc -l) tracked files, none generated, none over 1 MB"
exit "$fail"
