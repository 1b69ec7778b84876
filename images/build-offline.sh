#!/usr/bin/env bash
# Build execbox's runtime images with no container registry.
#
# One Debian bookworm root filesystem is made from the machine's own apt mirror
# (debootstrap for the base, then apt-get inside it for the runtimes' packages)
# and imported into Docker. It holds the Debian packages of every
# runtime of runtimes.toml (images/runtimes.py reads them), so it serves every
# language's image: it is imported once under the first image name of the table
# and tagged under the others (the same image id under every name). One rootfs is
# the fastest build: one debootstrap, one import.
#
# Usage: images/build-offline.sh          (as root; Docker engine reachable)
# Env:   EXECBOX_DEBIAN_MIRROR   mirror URL to use instead of the one in apt sources
#        EXECBOX_RUNTIMES_FILE   another runtimes.toml (default: the repository's)
#
# Running it again rebuilds from scratch and re-tags; the previous image is
# removed once no tag points at it.
set -euo pipefail

SUITE=bookworm
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PACKAGES=$(python3 "$here/runtimes.py" packages)
mapfile -t TAGS < <(python3 "$here/runtimes.py" images)
PRIMARY=${TAGS[0]}
ALIASES=("${TAGS[@]:1}")
# images/build.sh rebuilds an image whose label lacks a package its runtimes need.
LABEL_PACKAGES=$(python3 "$here/runtimes.py" packages | tr ' ' ',')

die() { echo "build-offline: error: $*" >&2; exit 1; }
say() { echo "build-offline: $*" >&2; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }'; }

# --- the mirror, from this machine's apt sources -------------------------------

# shellcheck source=images/debian-mirror.sh
. "$here/debian-mirror.sh"
debian_mirror "$SUITE"

# --- prerequisites -------------------------------------------------------------

[[ $(id -u) == 0 ]] || die "must run as root (debootstrap needs it)"
command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (docker info failed; check DOCKER_HOST / the daemon)"
if ! command -v debootstrap >/dev/null; then
    command -v apt-get >/dev/null || die "debootstrap not found and no apt-get to install it"
    say "installing debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
        || die "could not install debootstrap (apt-get install -y debootstrap)"
fi

# --- build ---------------------------------------------------------------------

t_all=$EPOCHREALTIME
ROOT=$(mktemp -d /var/tmp/execbox-rootfs.XXXXXX)
LOG=$ROOT.log

cleanup() {
    # debootstrap mounts proc/sys inside the target; never rm -rf through a mount.
    local m
    findmnt -rn -o TARGET | awk -v r="$ROOT/" 'index($0, r) == 1' | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    if [[ -d $ROOT ]]; then rm -rf --one-file-system "$ROOT"; fi
    rm -f "$LOG"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "debootstrap --variant=minbase $SUITE into $ROOT (log $LOG)"
t=$EPOCHREALTIME
# tar: the service streams files with it; ca-certificates: for programs that speak TLS.
# debootstrap fetches one package after another: only the base, then apt (which pipelines its
# downloads) installs the runtimes, minutes faster for a JDK, Go and Rust.
if ! debootstrap --variant=minbase --include=tar,ca-certificates ${KEYRING:+--keyring="$KEYRING"} \
    "$SUITE" "$ROOT" "$MIRROR" >"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    [[ -f $ROOT/debootstrap/debootstrap.log ]] && tail -n 30 "$ROOT/debootstrap/debootstrap.log" >&2
    die "debootstrap failed (mirror $MIRROR)"
fi
say "debootstrap: $(since "$t")"

t=$EPOCHREALTIME
# A JVM (java -version, ca-certificates-java's setup) needs /proc; cleanup unmounts it.
mount -t proc proc "$ROOT/proc"
# No fsync for each file unpacked: the tree is imported whole or thrown away.
echo force-unsafe-io >"$ROOT/etc/dpkg/dpkg.cfg.d/execbox-unsafe-io"
# shellcheck disable=SC2086 # one word per package
if ! chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive sh -c \
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends $PACKAGES" >>"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    die "apt-get install of the runtimes' packages failed (mirror $MIRROR)"
fi
rm "$ROOT/etc/dpkg/dpkg.cfg.d/execbox-unsafe-io"
say "apt-get install ($PACKAGES): $(since "$t")"

t=$EPOCHREALTIME
# the sandbox user is Debian's nobody/nogroup (65534); /work is its empty mount point
grep -q '^nobody:x:65534:' "$ROOT/etc/passwd" || die "rootfs has no nobody (65534) user"
grep -q '^nogroup:x:65534:' "$ROOT/etc/group" || die "rootfs has no nogroup (65534) group"
install -d -o 65534 -g 65534 -m 0755 "$ROOT/work"
# the service streams files with `tar -x -C /work`; it expects /usr/bin/tar
[[ -e $ROOT/usr/bin/tar ]] || ln -s /bin/tar "$ROOT/usr/bin/tar"
for c in sh bash tar sleep; do
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin sh -c "command -v $c" >/dev/null \
        || die "rootfs lacks $c"
done
# every runtime's own version command, as the service probes it
while read -r version; do
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp sh -c "$version" >/dev/null 2>&1 \
        || die "in the rootfs, the version command \"$version\" fails"
done < <(python3 "$here/runtimes.py" versions)
chroot "$ROOT" /usr/bin/python3 -c 'import numpy, pandas, matplotlib' \
    || die "rootfs python3 lacks numpy, pandas or matplotlib"
umount "$ROOT/proc"
# shrink: package caches and lists, docs (copyright files kept), man/info, locales, logs
rm -rf "$ROOT"/var/cache/apt/* "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/debconf/*-old \
    "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/usr/share/locale/* \
    "$ROOT"/usr/share/doc-base "$ROOT"/var/log/*
find "$ROOT/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete 2>/dev/null || true
find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
# don't ship this host's resolver config; Docker provides its own
: >"$ROOT/etc/resolv.conf"
say "prepare rootfs: $(since "$t"), $(du -sh --apparent-size "$ROOT" | cut -f1)"

old_ids=()
for tag in "${TAGS[@]}"; do
    id=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
    if [[ -n $id && " ${old_ids[*]} " != *" $id "* ]]; then old_ids+=("$id"); fi
done

t=$EPOCHREALTIME
new_id=$(tar -C "$ROOT" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'LABEL execbox.image=offline' \
    --change "LABEL execbox.packages=$LABEL_PACKAGES" \
    --change 'LABEL execbox.python-data=numpy,pandas,matplotlib' \
    --change 'WORKDIR /work' \
    - "$PRIMARY") || die "docker import failed"
for tag in "${ALIASES[@]}"; do docker tag "$PRIMARY" "$tag"; done
say "import + tag: $(since "$t")"

for id in "${old_ids[@]}"; do
    [[ $id == "$new_id" ]] && continue
    # a plain rm refuses while the id is still tagged or used by a container
    docker image rm "$id" >/dev/null 2>&1 \
        || say "previous image ${id#sha256:} left in place (still tagged or used by a container)"
done

say "built $new_id as ${TAGS[*]} ($(docker image inspect -f '{{.Size}}' "$PRIMARY" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
t=$EPOCHREALTIME
cleanup
say "remove rootfs: $(since "$t")"
say "total: $(since "$t_all")"
