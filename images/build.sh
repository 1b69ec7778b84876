#!/usr/bin/env bash
# Build and tag execbox's runtime images:
#   execbox/python:bookworm  (python, bash)   images/python.Dockerfile
#   execbox/node:bookworm    (javascript)     images/node.Dockerfile
#   execbox/gcc:bookworm     (c, cpp)         images/gcc.Dockerfile
#
# Usage: images/build.sh [--offline] [--if-missing]
#   --offline     skip the registry: build one Debian rootfs with debootstrap and
#                 tag it under all three names (images/build-offline.sh)
#   --if-missing  do nothing when all three tags already exist
#
# Without --offline the Dockerfiles are built FROM official bases. If a base is
# neither present locally nor pullable (no registry), this falls back to the
# offline build and says so.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# tag | dockerfile | base image
IMAGES=(
    "execbox/python:bookworm|python.Dockerfile|debian:bookworm-slim"
    "execbox/node:bookworm|node.Dockerfile|node:20-bookworm-slim"
    "execbox/gcc:bookworm|gcc.Dockerfile|gcc:12-bookworm"
)

die() { echo "images/build.sh: error: $*" >&2; exit 1; }
say() { echo "images/build.sh: $*" >&2; }
usage() { sed -n '2,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

offline=0 if_missing=0
for arg in "$@"; do
    case $arg in
        --offline) offline=1 ;;
        --if-missing) if_missing=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $arg" ;;
    esac
done

command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (docker info failed; check DOCKER_HOST / the daemon)"

have() { docker image inspect "$1" >/dev/null 2>&1; }
# The python image also carries the data packages contexts expect; one built before they were
# added lacks this label and is built again.
DATA_LABEL=execbox.python-data
DATA_PACKAGES=numpy,pandas,matplotlib
current() {
    have "$1" || return 1
    [[ $1 != execbox/python:* ]] && return 0
    [[ $(docker image inspect -f "{{index .Config.Labels \"$DATA_LABEL\"}}" "$1" 2>/dev/null) == "$DATA_PACKAGES" ]]
}

# Test binaries may call this concurrently: one build at a time; the others wait
# and then find the images present (with --if-missing).
if command -v flock >/dev/null; then
    exec 9>/var/tmp/execbox-images.lock
    flock -n 9 || { say "another build is running; waiting for it"; flock 9; }
fi

missing=()
for entry in "${IMAGES[@]}"; do
    tag=${entry%%|*}
    current "$tag" || missing+=("$tag")
done

if ((if_missing)) && ((${#missing[@]} == 0)); then
    say "all images present, nothing to do"
    exit 0
fi

if ((!offline)); then
    # The Dockerfiles need their bases; with no registry they cannot be pulled.
    for entry in "${IMAGES[@]}"; do
        base=${entry##*|}
        have "$base" && continue
        say "pulling $base"
        if ! docker pull -q "$base" >/dev/null 2>&1; then
            say "cannot pull $base (no registry reachable?): falling back to the offline build"
            offline=1
            break
        fi
    done
fi

if ((offline)); then
    bash "$here/build-offline.sh" || die "offline build failed"
else
    for entry in "${IMAGES[@]}"; do
        IFS='|' read -r tag file _ <<<"$entry"
        say "docker build $tag from $file"
        # no build context: the Dockerfiles copy nothing in
        docker build -t "$tag" - <"$here/$file" || die "docker build of $tag ($file) failed"
    done
fi

for entry in "${IMAGES[@]}"; do
    tag=${entry%%|*}
    have "$tag" || die "$tag is missing after the build"
done
say "ready: $(for e in "${IMAGES[@]}"; do printf '%s ' "${e%%|*}"; done)"
