#!/usr/bin/env bash
# Install gVisor's runsc from Debian and register it with the running Docker engine as the
# runtime "runsc", without restarting the engine (a SIGHUP reloads daemon.json's runtimes).
# Idempotent, and quick when already done. The `gvisor` policy and its tests need this.
#
# runsc runs with --network=none: the sandboxes have no network, and runsc refuses containers
# without one unless told so.
set -euo pipefail

DAEMON_JSON=${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}
RUNSC=/usr/bin/runsc
ARGS='["--network=none","--host-uds=create"]'

# The engine has runsc registered as wanted (`docker info` shows the runtimes it loaded).
registered() {
  docker info --format '{{json .Runtimes}}' 2>/dev/null |
    jq -e --arg p "$RUNSC" --argjson a "$ARGS" '.runsc == {path: $p, runtimeArgs: $a}' >/dev/null 2>&1
}

# The engine's daemon.json says so.
configured() {
  [ -f "$DAEMON_JSON" ] && jq -e --arg p "$RUNSC" --argjson a "$ARGS" '.runtimes.runsc == {path: $p, runtimeArgs: $a}' "$DAEMON_JSON" >/dev/null 2>&1
}

# Serialise concurrent callers (CI and test binaries on one machine).
exec 9>/run/execbox-gvisor.lock
flock 9

if [ -x "$RUNSC" ] && registered; then
  exit 0
fi

missing=()
[ -x "$RUNSC" ] || missing+=(runsc)
command -v jq >/dev/null || missing+=(jq)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi

if registered; then
  exit 0
fi

# The engine must be this host's: its daemon.json is the one edited here.
pid=$(pidof dockerd || true)
if [ -z "$pid" ]; then
  echo "gvisor.sh: no dockerd runs on this host; register runsc with your engine by hand (see README, gVisor)" >&2
  exit 1
fi

# Merge into what is there (or create it), atomically.
if ! configured; then
  mkdir -p "$(dirname "$DAEMON_JSON")"
  current='{}'
  [ -s "$DAEMON_JSON" ] && current=$(cat "$DAEMON_JSON")
  tmp=$(mktemp "$DAEMON_JSON.XXXXXX")
  jq --arg p "$RUNSC" --argjson a "$ARGS" '.runtimes = ((.runtimes // {}) + {runsc: {path: $p, runtimeArgs: $a}})' <<<"$current" >"$tmp"
  chmod 644 "$tmp"
  mv "$tmp" "$DAEMON_JSON"
fi

# A reload, not a restart: running containers are untouched.
kill -HUP $pid
for _ in $(seq 1 50); do
  registered && { echo "gvisor.sh: runsc registered with the Docker engine"; exit 0; }
  sleep 0.1
done
echo "gvisor.sh: dockerd did not pick up the runsc runtime from $DAEMON_JSON after SIGHUP" >&2
exit 1
