#!/usr/bin/env bash
# The Python tools of the API fuzz test (tests/fuzz.rs): schemathesis and openapi-spec-validator,
# pinned in .ci/fuzz-requirements.txt, in a venv at target/ci-venv (inside the repo's target dir,
# so a clean clone gets its own). Re-run cheaply: does nothing when the venv already has exactly
# these pins.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/ci-venv
req=.ci/fuzz-requirements.txt
if [ -x "$venv/bin/schemathesis" ] && cmp -s "$req" "$venv/.requirements"; then
  exit 0
fi
# Debian's python3 with its venv module (python3-venv), not whatever python is first on PATH.
if ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv
fi
rm -rf "$venv"
mkdir -p target
/usr/bin/python3 -m venv "$venv"
"$venv/bin/pip" install -q --no-input -r "$req"
cp "$req" "$venv/.requirements"
"$venv/bin/schemathesis" --version
