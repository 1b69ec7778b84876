#!/usr/bin/env bash
# The local executor's cgroup checks on a cgroup v2 kernel. CI hosts here are cgroup v1 (and
# their /dev/kvm cannot run a stock kernel), so a Debian bookworm VM with only the unified
# hierarchy boots under QEMU's software emulation, with the release binary and
# tests/cgroup-v2/checks.py shared in over 9p, and runs every check in one boot.
#
# Usage: .ci/cgroup-v2-vm.sh [BINARY]      (as root; BINARY defaults to target/release/execbox)
#        .ci/cgroup-v2-vm.sh --image-only  (build or check the cached image, boot nothing: .ci/run
#                                           does this beside the cargo build)
# Env:   EXECBOX_DEBIAN_MIRROR   mirror for the image build instead of this machine's apt sources
#        EXECBOX_VM_TIMEOUT      seconds the guest may run before it counts as hung (default 900)
#
# The image (kernel, initrd, ext4 root) is cached in target/cgroup-v2-vm/ and rebuilt when it is
# missing or its recipe (suite, packages, init) changes. The root disk is opened with
# snapshot=on, so a boot never changes it. Exits non-zero when the image cannot be built, the
# guest does not finish, or any check fails; the guest's console is printed as it runs.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=bookworm
PACKAGES=linux-image-amd64,initramfs-tools,python3,kmod,procps,util-linux,e2fsprogs,iproute2
IMAGE_SIZE=2G
CACHE=target/cgroup-v2-vm
CHECKS=tests/cgroup-v2/checks.py
IMAGE_ONLY=false
if [[ ${1:-} == --image-only ]]; then IMAGE_ONLY=true; shift; fi
BIN=${1:-target/release/execbox}
TIMEOUT=${EXECBOX_VM_TIMEOUT:-900}

die() { echo "cgroup-v2-vm: error: $*" >&2; exit 1; }
say() { echo "cgroup-v2-vm: $*" >&2; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }'; }

# PID 1 of the guest: mount what the checks need, run the shared check script, record its exit
# code on the share and power off. Baked into the image (the share is not mounted yet when the
# kernel starts init); the checks themselves stay on the host side, so editing them needs no
# rebuild.
read -r -d '' INIT <<'EOF' || true
#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
modprobe -q 9pnet_virtio
modprobe -q 9p
mkdir -p /mnt/host
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 host /mnt/host
ip link set lo up
hostname execbox-v2vm
echo "execbox-vm: init up at $(cut -d' ' -f1 /proc/uptime) s, kernel $(uname -r)"
if [ -f /mnt/host/checks.py ]; then
    python3 -u /mnt/host/checks.py
    rc=$?
else
    echo "execbox-vm: no /mnt/host/checks.py (is the 9p share mounted?)"
    rc=2
fi
echo "$rc" >/mnt/host/exit-code
sync
echo "execbox-vm: checks exited $rc at $(cut -d' ' -f1 /proc/uptime) s; powering off"
echo o >/proc/sysrq-trigger
sleep 30
EOF

recipe=$(printf '%s\n' "$SUITE" "$PACKAGES" "$IMAGE_SIZE" "$INIT" | sha256sum | cut -c1-16)

# --- prerequisites -------------------------------------------------------------

[[ $(id -u) == 0 ]] || die "must run as root (debootstrap and mkfs need it)"
$IMAGE_ONLY || [[ -x $BIN ]] || die "no binary at $BIN; build it first (cargo build --release)"
[[ -f $CHECKS ]] || die "no check script at $CHECKS"
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
if ((${#need[@]})); then
    command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
    say "installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
        || die "could not install ${need[*]} (apt-get install -y ${need[*]})"
fi

# --- the image, built once -------------------------------------------------------

build_image() {
    # shellcheck source=images/debian-mirror.sh
    . images/debian-mirror.sh
    debian_mirror "$SUITE"
    local root log t
    root=$(mktemp -d /var/tmp/execbox-v2vm-rootfs.XXXXXX)
    log=$root.log
    # debootstrap mounts proc/sys inside the target; never rm -rf through a mount.
    # shellcheck disable=SC2064
    trap "umount_under '$root'; rm -rf --one-file-system '$root' '$log'" EXIT
    say "debootstrap --variant=minbase $SUITE into $root (log $log)"
    t=$EPOCHREALTIME
    if ! debootstrap --variant=minbase --include="$PACKAGES" ${KEYRING:+--keyring="$KEYRING"} \
        "$SUITE" "$root" "$MIRROR" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "debootstrap failed (mirror $MIRROR)"
    fi
    say "debootstrap: $(since "$t")"
    umount_under "$root"
    printf '%s\n' "$INIT" >"$root/sbin/execbox-vm-init"
    chmod 0755 "$root/sbin/execbox-vm-init"
    printf '/dev/vda / ext4 rw 0 1\n' >"$root/etc/fstab"
    : >"$root/etc/resolv.conf"
    rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/man/* "$root"/usr/share/doc/*
    mkdir -p "$CACHE"
    rm -f "$CACHE"/{vmlinuz,initrd.img,rootfs.img,recipe}
    cp "$root"/boot/vmlinuz-* "$CACHE/vmlinuz"
    cp "$root"/boot/initrd.img-* "$CACHE/initrd.img"
    t=$EPOCHREALTIME
    mkfs.ext4 -q -L execbox-v2vm -d "$root" "$CACHE/rootfs.img.tmp" "$IMAGE_SIZE" \
        || die "mkfs.ext4 -d $root failed"
    mv "$CACHE/rootfs.img.tmp" "$CACHE/rootfs.img"
    say "mkfs.ext4: $(since "$t")"
    echo "$recipe" >"$CACHE/recipe"
    umount_under "$root"
    rm -rf --one-file-system "$root" "$log"
    trap - EXIT
}

umount_under() {
    local m
    findmnt -rn -o TARGET | awk -v r="$1/" 'index($0, r) == 1' | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}

t_all=$EPOCHREALTIME
if [[ -f $CACHE/rootfs.img && -f $CACHE/vmlinuz && -f $CACHE/initrd.img && $(cat "$CACHE/recipe" 2>/dev/null) == "$recipe" ]]; then
    say "image cached in $CACHE (recipe $recipe)"
else
    say "building the VM image in $CACHE (recipe $recipe)"
    t=$EPOCHREALTIME
    build_image
    say "image built: $(since "$t")"
fi
$IMAGE_ONLY && exit 0

# --- one boot --------------------------------------------------------------------

share=$(mktemp -d "$CACHE/share.XXXXXX")
trap 'rm -rf "$share"' EXIT
cp "$BIN" "$share/execbox"
cp "$CHECKS" "$share/checks.py"
mkdir "$share/policies"
cp policies/*.toml "$share/policies/"
console=$CACHE/console.log

say "booting (QEMU TCG, 2 vCPUs, 2 GiB; console follows; timeout ${TIMEOUT} s)"
t=$EPOCHREALTIME
set +e
timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 \
    -accel tcg,thread=multi -cpu max -m 2048 -smp 2 \
    -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 quiet loglevel=3 panic=-1 systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all init=/sbin/execbox-vm-init" \
    -drive "file=$CACHE/rootfs.img,if=virtio,format=raw,snapshot=on" \
    -virtfs "local,path=$share,mount_tag=host,security_model=passthrough" \
    -nic none -display none -monitor none -serial stdio -no-reboot \
    </dev/null 2>&1 | sed -u 's/\r$//' | tee "$console"
qemu_rc=${PIPESTATUS[0]}
set -e
say "guest ran $(since "$t") (whole step $(since "$t_all")); console saved in $console"

if [[ ! -f $share/exit-code ]]; then
    ((qemu_rc == 124)) && die "the guest did not finish within ${TIMEOUT} s"
    die "the guest ended without running the checks (qemu exit $qemu_rc); see the console above"
fi
rc=$(cat "$share/exit-code")
[[ $rc == 0 ]] || die "cgroup v2 checks failed (exit $rc); see the console above"
say "all cgroup v2 checks passed"
