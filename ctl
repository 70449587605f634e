#!/bin/sh
# The README's quick start, on a fresh Debian machine with Node.js 20 and Python 3.11:
#   ./ctl start   install what is missing (npm packages), build dist/, then serve the bundled model on :3000
#                 (embedded mode: in-process cache and queue, no Redis)
#   ./ctl test    install what is missing (npm packages, redis-server, Python requirements), then run
#                 every test: lint, type-check, TypeScript tests, bundle parity, pytest
# Each step checks first and installs only what is missing; .ci/run calls `./ctl test`.
set -eu
cd "$(dirname "$0")"

say() { printf 'ctl: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    say "need root for: $*"; exit 1
  fi
}

ensure_npm() {
  # `npm ls` fails when a dependency of package.json is missing or has the wrong version.
  if [ -d node_modules ] && npm ls --depth=0 >/dev/null 2>&1; then return 0; fi
  if [ -L node_modules ]; then say "node_modules is a symlink to another tree: not reinstalling it"; return 0; fi
  say "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund
}

ensure_redis() {
  command -v redis-server >/dev/null 2>&1 && return 0
  say "installing redis-server (apt-get)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server
}

# Pinned requirements (name==version) that are not installed at that version. torch is large and
# often installed as a local build (2.8.0+cu128): it counts as present when `import torch` works.
missing_python() {
  python3 - "$@" <<'EOF'
import sys
from importlib import metadata, util
for path in sys.argv[1:]:
    for line in open(path):
        req = line.split('#')[0].strip()
        if not req:
            continue
        name, _, version = req.partition('==')
        if name == 'torch':
            if util.find_spec('torch') is None:
                print(req)
            continue
        try:
            if version and metadata.version(name).split('+')[0] != version:
                print(req)
        except metadata.PackageNotFoundError:
            print(req)
EOF
}

ensure_python() {
  missing=$(missing_python training/requirements.txt requirements-test.txt)
  [ -z "$missing" ] && return 0
  say "installing Python packages: $(echo "$missing" | tr '\n' ' ')"
  # shellcheck disable=SC2086 # one argument per requirement
  python3 -m pip install -q $missing
}

case "${1:-}" in
  start)
    ensure_npm
    # Compiled, not through tsx: with a full L1 the server took 817 MiB of RSS compiled and 1197 MiB
    # through tsx, whose loader every worker thread loads again (README "Quick start").
    say "building dist/ (npm run build)"
    npm run --silent build
    # A 32 MiB young generation: fewer scavenges under load (README "Every core": −7 % CPU per request, +85 MiB RSS).
    exec node --max-semi-space-size=32 dist/server.js
    ;;
  test)
    ensure_npm
    ensure_redis
    ensure_python
    say "npm test (lint, type-check, TypeScript tests)"
    npm test
    say "ctrserve verify (bundle parity)"
    node bin/ctrserve.js verify
    say "pytest"
    python3 -m pytest -q training/tests
    ;;
  *)
    echo "usage: ./ctl start | ./ctl test" >&2
    exit 2
    ;;
esac
