#!/usr/bin/env bash
# The pinned Python venvs the tests drive third-party clients from, each at target/venv-<name>
# (inside the repo's target dir, so a clean clone gets its own), from .ci/venvs/<name>.txt.
# With no argument, every venv listed there; with names, only those. Re-run cheaply: a venv that
# already has exactly its pins is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian's python3 with its venv module (python3-venv), not whatever python is first on PATH.
if ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv
fi
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for req in .ci/venvs/*.txt; do names+=("$(basename "$req" .txt)"); done
fi
mkdir -p target
for name in "${names[@]}"; do
  req=.ci/venvs/$name.txt
  venv=target/venv-$name
  if [ -x "$venv/bin/python" ] && cmp -s "$req" "$venv/.requirements"; then
    continue
  fi
  echo "venv $name: installing $req"
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --no-input -r "$req"
  cp "$req" "$venv/.requirements"
done
