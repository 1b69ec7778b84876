#!/usr/bin/env bash
# Build and tag execbox's runtime images: every image runtimes.toml names, each with the Debian
# packages of the runtimes it serves (images/runtimes.py reads them):
#   execbox/python:bookworm  python, bash, ruby, php, perl, lua
#   execbox/node:bookworm    javascript, typescript
#   execbox/gcc:bookworm     c, cpp, rust
#   execbox/go:bookworm      go
#   execbox/java:bookworm    java
#
# Usage: images/build.sh [--offline] [--if-missing]
#   --offline     skip the registry: build one Debian rootfs with every runtime's packages
#                 (debootstrap) and tag it under every name (images/build-offline.sh)
#   --if-missing  do nothing when every tag exists with the packages its runtimes need
#
# Without --offline each image is built from images/Dockerfile (FROM debian:bookworm-slim, its
# packages as a build argument). If the base is neither present locally nor pullable (no
# registry), this falls back to the offline build and says so.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BASE=debian:bookworm-slim
mapfile -t IMAGES < <(python3 "$here/runtimes.py" images)

die() { echo "images/build.sh: error: $*" >&2; exit 1; }
say() { echo "images/build.sh: $*" >&2; }
usage() { sed -n '2,18s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

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
# An image is current when its execbox.packages label lists every package its runtimes need
# (one built before a runtime was added is built again).
current() {
    have "$1" || return 1
    local label pkg
    label=,$(docker image inspect -f '{{index .Config.Labels "execbox.packages"}}' "$1" 2>/dev/null),
    label=${label// /,}
    for pkg in $(python3 "$here/runtimes.py" packages "$1"); do
        [[ $label == *",$pkg,"* ]] || return 1
    done
}

# Test binaries may call this concurrently: one build at a time; the others wait
# and then find the images present (with --if-missing).
if command -v flock >/dev/null; then
    exec 9>/var/tmp/execbox-images.lock
    flock -n 9 || { say "another build is running; waiting for it"; flock 9; }
fi

missing=()
for tag in "${IMAGES[@]}"; do
    current "$tag" || missing+=("$tag")
done

if ((if_missing)) && ((${#missing[@]} == 0)); then
    say "all images present, nothing to do"
    exit 0
fi

if ((!offline)) && ! have "$BASE"; then
    # The Dockerfile needs its base; with no registry it cannot be pulled.
    say "pulling $BASE"
    if ! docker pull -q "$BASE" >/dev/null 2>&1; then
        say "cannot pull $BASE (no registry reachable?): falling back to the offline build"
        offline=1
    fi
fi

if ((offline)); then
    bash "$here/build-offline.sh" || die "offline build failed"
else
    for tag in "${IMAGES[@]}"; do
        packages=$(python3 "$here/runtimes.py" packages "$tag")
        say "docker build $tag with $packages"
        # no build context: the Dockerfile copies nothing in
        docker build -t "$tag" --build-arg "PACKAGES=$packages" - <"$here/Dockerfile" \
            || die "docker build of $tag failed"
    done
fi

for tag in "${IMAGES[@]}"; do
    current "$tag" || die "$tag is missing (or lacks its packages) after the build"
done
say "ready: ${IMAGES[*]}"
