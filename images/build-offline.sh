#!/usr/bin/env bash
# Build execbox's runtime images with no container registry.
#
# One Debian bookworm root filesystem is made with debootstrap from the machine's
# own apt mirror and imported into Docker. That single rootfs has python3, bash,
# nodejs, gcc and g++, so it serves all three languages' images: it is imported
# once as execbox/python:bookworm and tagged as execbox/node:bookworm and
# execbox/gcc:bookworm too (the same image id under three names).
#
# Usage: images/build-offline.sh          (as root; Docker engine reachable)
# Env:   EXECBOX_DEBIAN_MIRROR   mirror URL to use instead of the one in apt sources
#
# Running it again rebuilds from scratch and re-tags; the previous image is
# removed once no tag points at it.
set -euo pipefail

SUITE=bookworm
PACKAGES=python3,nodejs,gcc,g++,libc6-dev,tar,ca-certificates
PRIMARY=execbox/python:bookworm
ALIASES=(execbox/node:bookworm execbox/gcc:bookworm)
TAGS=("$PRIMARY" "${ALIASES[@]}")

die() { echo "build-offline: error: $*" >&2; exit 1; }
say() { echo "build-offline: $*" >&2; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }'; }

# --- the mirror, from this machine's apt sources -------------------------------

# deb822 files (/etc/apt/sources.list.d/*.sources): print "URI<TAB>SIGNED-BY" for
# each enabled `deb` stanza whose Suites include exactly $SUITE, skipping
# security mirrors.
mirrors_from_deb822() {
    awk -v suite="$SUITE" '
        function flush(   n, s, i, ok, u) {
            if (f["uris"] != "" && f["enabled"] !~ /^[[:space:]]*no[[:space:]]*$/ \
                && (" " f["types"] " ") ~ /[[:space:]]deb[[:space:]]/) {
                n = split(f["suites"], s, /[[:space:]]+/); ok = 0
                for (i = 1; i <= n; i++) if (s[i] == suite) ok = 1
                if (ok) {
                    n = split(f["uris"], u, /[[:space:]]+/)
                    for (i = 1; i <= n; i++)
                        if (u[i] != "" && u[i] !~ /security/)
                            printf "%s\t%s\n", u[i], f["signed-by"]
                }
            }
            delete f; key = ""
        }
        /^#/ { next }
        /^[[:space:]]*$/ { flush(); next }
        /^[[:space:]]/ { if (key != "") f[key] = f[key] " " $0; next }
        {
            i = index($0, ":"); if (i == 0) next
            key = tolower(substr($0, 1, i - 1))
            f[key] = substr($0, i + 1)
            gsub(/^[[:space:]]+|[[:space:]]+$/, "", f[key])
        }
        END { flush() }
    ' "$@"
}

# one-line format (/etc/apt/sources.list, *.list): `deb [opts] URL bookworm comps`
mirrors_from_list() {
    awk -v suite="$SUITE" '
        $1 != "deb" { next }
        {
            i = 2; signed = ""
            if ($2 ~ /^\[/) {
                for (; i <= NF; i++) {
                    if ($i ~ /^\[?signed-by=/) { signed = $i; sub(/^\[?signed-by=/, "", signed); sub(/\]$/, "", signed) }
                    if ($i ~ /\]$/) { i++; break }
                }
            }
            if ($(i + 1) == suite && $i !~ /security/) printf "%s\t%s\n", $i, signed
        }
    ' "$@"
}

find_mirror() {
    local -a deb822=() lists=()
    local f
    for f in /etc/apt/sources.list.d/*.sources; do if [[ -f $f ]]; then deb822+=("$f"); fi; done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do if [[ -f $f ]]; then lists+=("$f"); fi; done
    {
        if ((${#deb822[@]})); then mirrors_from_deb822 "${deb822[@]}"; fi
        if ((${#lists[@]})); then mirrors_from_list "${lists[@]}"; fi
    } | awk -F'\t' '$1 ~ /^(https?|file):/' | head -n 1
}

MIRROR="" KEYRING=""
if [[ -n ${EXECBOX_DEBIAN_MIRROR:-} ]]; then
    MIRROR=$EXECBOX_DEBIAN_MIRROR
    say "mirror $MIRROR (from EXECBOX_DEBIAN_MIRROR)"
else
    line=$(find_mirror || true)
    [[ -n $line ]] || die "no Debian $SUITE mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list
  (looked for a non-security 'deb' entry whose suite is '$SUITE').
  Set EXECBOX_DEBIAN_MIRROR to a Debian mirror URL, e.g. EXECBOX_DEBIAN_MIRROR=http://<your-mirror>/debian"
    MIRROR=${line%%$'\t'*}
    signed=${line#*$'\t'}
    if [[ -n $signed && -f $signed ]]; then KEYRING=$signed; fi
    say "mirror $MIRROR (from this machine's apt sources)${KEYRING:+, keyring $KEYRING}"
fi

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
if ! debootstrap --variant=minbase --include="$PACKAGES" ${KEYRING:+--keyring="$KEYRING"} \
    "$SUITE" "$ROOT" "$MIRROR" >"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    [[ -f $ROOT/debootstrap/debootstrap.log ]] && tail -n 30 "$ROOT/debootstrap/debootstrap.log" >&2
    die "debootstrap failed (mirror $MIRROR)"
fi
say "debootstrap: $(since "$t")"

t=$EPOCHREALTIME
# the sandbox user is Debian's nobody/nogroup (65534); /work is its empty mount point
grep -q '^nobody:x:65534:' "$ROOT/etc/passwd" || die "rootfs has no nobody (65534) user"
grep -q '^nogroup:x:65534:' "$ROOT/etc/group" || die "rootfs has no nogroup (65534) group"
install -d -o 65534 -g 65534 -m 0755 "$ROOT/work"
# the service streams files with `tar -x -C /work`; it expects /usr/bin/tar
[[ -e $ROOT/usr/bin/tar ]] || ln -s /bin/tar "$ROOT/usr/bin/tar"
for c in sh bash tar sleep python3 node gcc g++; do
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin sh -c "command -v $c" >/dev/null \
        || die "rootfs lacks $c"
done
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
