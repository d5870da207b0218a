#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The Debian sid stack of the real-device tier (`run.sh --boots sid`).
#
# The Debian 12 boots prove the helper against kernel 6.1, QEMU 7.2 and
# multipath-tools 0.9.4; users run newer stacks. This boot runs the same
# kind of checks on Debian sid: its kernel, QEMU, multipath-tools, sg3-utils,
# udev and libvirt, taken from the same Debian mirror as the host's own apt
# configuration, through a private apt configuration (the host's apt sources
# are never changed).
#
# A sid root is made with mmdebstrap (--variant=minbase) into an ext4 image,
# cached under tests/real-device/.cache/sid/ keyed by the package versions
# (a later run on the same machine with the same versions reuses it), and
# booted with the host's QEMU under TCG, -drive ...,snapshot=on, the sid
# kernel and a small busybox initramfs that mounts the image and hands over
# to guest/sid-init. The binaries under test and the guest scripts ride in
# that initramfs, so the image does not change from run to run.
#
# Usage: tests/real-device/sid.sh [--helper PATH] [--client PATH]
#            [--only NAME] [--timeout SECS]
# Writes the console to $WORK/sid.log (WORK defaults to tests/real-device/work)
# with the marker lines of run.sh. Exit status: 0 the boot finished (results
# are in the log), 1 the stage could not run (a package sid cannot provide
# and no cache holds is named).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=$HERE/.cache/sid
WORK=${WORK:-$HERE/work}
HELPER=$REPO/target/release/qemu-pr-helper
CLIENT=$REPO/target/release/qemu-pr-client
ONLY=""
LIMIT=2400
while [ $# -gt 0 ]; do
    case "$1" in
    --helper) HELPER=$2; shift 2 ;;
    --client) CLIENT=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --timeout) LIMIT=$2; shift 2 ;;
    *) echo "sid.sh: unknown option $1" >&2; exit 1 ;;
    esac
done

say() { printf '[real-device] sid: %s\n' "$*"; }
# fail_stage TEXT: the stage cannot run; recorded as a failed result.
fail_stage() {
    mkdir -p "$WORK"
    printf '@@RESULT sid.stack FAIL %s\n' "$*" | tee "$WORK/sid.log"
    exit 1
}

# Packages of the stack; the image is rebuilt when any version changes, or
# when IMAGE_RECIPE (bump it when the way the image is made changes).
IMAGE_RECIPE=2
PKGS=(qemu-system-x86 qemu-system-common multipath-tools sg3-utils udev kmod
    libvirt-daemon libvirt-clients libvirt-daemon-driver-qemu libvirt-daemon-system
    busybox-static socat procps xz-utils)

# ------------------------------------------------------- host packages
# What this script runs on the host (Debian 12), from the host's own apt
# configuration: the stage can run alone, before or without run.sh.
HOST_PKGS=(mmdebstrap cpio e2fsprogs xz-utils qemu-system-x86 jq)
host_missing=()
for p in "${HOST_PKGS[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || host_missing+=("$p")
done
if [ ${#host_missing[@]} -gt 0 ]; then
    say "installing on the host: ${host_missing[*]}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${host_missing[@]}"; } >/dev/null 2>&1 ||
        fail_stage "apt-get install ${host_missing[*]} failed"
fi

# ------------------------------------------------------------ private apt
# The mirror is the host's own (its first URIs line, or its sources.list);
# everything apt keeps for sid lives under $CACHE/apt.
APT=$CACHE/apt
mirror_uri() {
    local u=""
    if [ -r /etc/apt/sources.list.d/debian.sources ]; then
        u=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$u" ] && [ -r /etc/apt/sources.list ]; then
        u=$(awk '$1 == "deb" && $2 ~ /^http/ {print $2; exit}' /etc/apt/sources.list)
    fi
    echo "$u"
}
URI=$(mirror_uri)
[ -n "$URI" ] || fail_stage "no Debian mirror in the host's apt configuration"
mkdir -p "$APT/etc" "$APT/lists/partial" "$APT/cache/archives/partial" "$CACHE/debs"
: >"$APT/empty"
cat >"$APT/etc/sid.sources" <<EOF
Types: deb
URIs: $URI
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# The mirror's sid Release file can be past its Valid-Until for this
# machine's clock.
APTO=(-o "Dir::Etc::sourcelist=$APT/empty" -o "Dir::Etc::sourceparts=$APT/etc"
    -o "Dir::State::lists=$APT/lists" -o "Dir::Cache=$APT/cache"
    -o "Dir::State::status=$APT/empty" -o Acquire::Check-Valid-Until=false)
ONLINE=1
if ! apt-get "${APTO[@]}" -qq update >"$CACHE/apt-update.log" 2>&1; then
    ONLINE=0
    say "apt-get update for sid failed (offline?): $(tail -1 "$CACHE/apt-update.log")"
fi
candidate() {
    apt-cache "${APTO[@]}" policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}'
}

# ----------------------------------------------------------- image choice
MISSING=()
LIST=""
if [ "$ONLINE" = 1 ]; then
    KIMG=$(apt-cache "${APTO[@]}" depends linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ {print $2; exit}') || true
    KREL=${KIMG#linux-image-}
    [ -n "$KIMG" ] || MISSING+=(linux-image-amd64)
    KPKGS=()
    [ -n "$KIMG" ] && KPKGS=("linux-binary-$KREL" "linux-modules-$KREL" "linux-base-$KREL")
    for p in "${PKGS[@]}" linux-image-amd64 "${KPKGS[@]}"; do
        v=$(candidate "$p")
        if [ -z "$v" ] || [ "$v" = "(none)" ]; then
            MISSING+=("$p")
        else
            LIST="$LIST$p=$v"$'\n'
        fi
    done
fi
IMG=""
if [ "$ONLINE" = 1 ] && [ ${#MISSING[@]} -eq 0 ]; then
    KEY=$(printf 'recipe=%s\n%s' "$IMAGE_RECIPE" "$LIST" | sha256sum | cut -c1-16)
    IMG=$CACHE/img-$KEY
else
    # Offline, or sid lacks a package: the newest complete image, if any.
    IMG=$(find "$CACHE" -maxdepth 2 -name .complete -printf '%T@ %h\n' 2>/dev/null |
        sort -n | tail -1 | cut -d' ' -f2-)
    if [ -z "$IMG" ]; then
        [ ${#MISSING[@]} -gt 0 ] && fail_stage "sid cannot provide: ${MISSING[*]} (and no cached image)"
        fail_stage "no sid package lists (apt-get update failed) and no cached image"
    fi
    [ ${#MISSING[@]} -gt 0 ] && say "sid cannot provide ${MISSING[*]}; using the cached image $(basename "$IMG")"
fi

# ------------------------------------------------------------ image build
# build_image: mmdebstrap the root, add the kernel's modules (vmlinuz
# included, for the nested guest), the nested guest's base initramfs, and
# make the ext4 image. Everything in $IMG: root.ext4, vmlinuz, busybox,
# boot-modules/ (what the boot initramfs loads to reach the image) and
# versions.
build_image() {
    local tmp=$CACHE/build root inc deb f kver m
    rm -rf "$tmp"
    mkdir -p "$tmp"
    root=$tmp/root
    inc=$(IFS=,; echo "${PKGS[*]}")
    say "mmdebstrap sid (minbase + ${PKGS[*]}); several minutes"
    # Maintainer scripts stop daemons with start-stop-daemon, which scans
    # /proc (and waits on whatever the host runs); mmdebstrap 1.3 replaces
    # only /sbin's, sid's dpkg ships it in /usr/bin: a no-op while installing.
    # shellcheck disable=SC2016
    mmdebstrap --variant=minbase --mode=root --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        --aptopt='Acquire::Check-Valid-Until "false"' --aptopt='APT::Install-Recommends "false"' \
        --essential-hook='f="$1/usr/bin/start-stop-daemon"; if [ -f "$f" ]; then mv "$f" "$f.REAL"; printf "#!/bin/sh\nexit 0\n" >"$f"; chmod 0755 "$f"; fi' \
        --customize-hook='f="$1/usr/bin/start-stop-daemon"; if [ -e "$f.REAL" ]; then mv "$f.REAL" "$f"; fi' \
        --include="$inc" sid "$root" "deb $URI sid main" >"$tmp/mmdebstrap.log" 2>&1 ||
        fail_stage "mmdebstrap failed: $(grep -E '^E:' "$tmp/mmdebstrap.log" | head -3 | tr '\n' ' ')"
    for p in "${PKGS[@]}"; do
        chroot "$root" dpkg-query -W "$p" >/dev/null 2>&1 || fail_stage "sid root lacks $p after mmdebstrap"
    done
    # The kernel: downloaded (kept in $CACHE/debs), unpacked into the root,
    # not installed (no initramfs generator runs).
    for p in "${KPKGS[@]}"; do
        deb=$(find "$CACHE/debs" -name "${p}_*.deb" -print -quit)
        if [ -z "$deb" ]; then
            (cd "$CACHE/debs" && apt-get "${APTO[@]}" -qq download "$p" 2>&1 | grep -v unsandboxed || true)
            deb=$(find "$CACHE/debs" -name "${p}_*.deb" -print -quit)
            [ -n "$deb" ] || fail_stage "apt-get download $p failed"
        fi
        dpkg -x "$deb" "$root"
    done
    kver=$KREL
    [ -f "$root/usr/lib/modules/$kver/vmlinuz" ] || fail_stage "no vmlinuz in linux-binary-$kver"
    chroot "$root" depmod "$kver" || fail_stage "depmod $kver failed"
    mkdir -p "$tmp/out/boot-modules"
    # Modules the boot initramfs loads to mount the image (.ko.xz
    # decompressed: busybox insmod reads plain ELF only).
    : >"$tmp/out/boot-modules/order"
    chroot "$root" modprobe -a -S "$kver" --show-depends virtio_blk ext4 |
        awk '$1 == "insmod" {print $2}' | while read -r f; do
        m=$(basename "$f")
        m=${m%%.ko*}
        grep -qx "$m" "$tmp/out/boot-modules/order" && continue
        xz -dc "$root$f" >"$tmp/out/boot-modules/$m.ko"
        echo "$m" >>"$tmp/out/boot-modules/order"
    done
    # The nested guest's initramfs, without its /init (guest/sid-nested-init
    # is appended per run): busybox, sg3-utils, virtio-scsi.
    local l2=$tmp/l2
    mkdir -p "$l2"/{bin,dev,proc,sys,tmp,etc,lib/modules,usr/bin}
    cp "$root/usr/bin/busybox" "$l2/bin/busybox"
    for b in sg_persist sg_raw sg_turs sg_inq; do
        cp "$root/usr/bin/$b" "$l2/usr/bin/$b"
        chroot "$root" ldd "/usr/bin/$b" | awk '/=> \// {print $3} /^[ \t]*\/[^ ]+ \(/ {print $1}' |
            while read -r f; do
                mkdir -p "$l2$(dirname "$f")"
                cp -L "$root$f" "$l2$f" 2>/dev/null || cp -L "$root$(chroot "$root" readlink -f "$f")" "$l2$f"
            done
    done
    : >"$l2/etc/modules.order"
    chroot "$root" modprobe -a -S "$kver" --show-depends virtio_scsi sd_mod sg |
        awk '$1 == "insmod" {print $2}' | while read -r f; do
        m=$(basename "$f")
        m=${m%%.ko*}
        grep -qx "$m" "$l2/etc/modules.order" && continue
        xz -dc "$root$f" >"$l2/lib/modules/$m.ko"
        echo "$m" >>"$l2/etc/modules.order"
    done
    mkdir -p "$root/opt/tier"
    (cd "$l2" && find . | cpio -o -H newc --quiet) >"$root/opt/tier/l2-base.cpio"
    cp "$root/usr/lib/modules/$kver/vmlinuz" "$tmp/out/vmlinuz"
    cp "$root/usr/bin/busybox" "$tmp/out/busybox"
    {
        echo "kernel $kver"
        chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' "${PKGS[@]}" linux-libc-dev 2>/dev/null || true
        for p in "${KPKGS[@]}"; do
            printf '%s %s\n' "$p" "$(candidate "$p")"
        done
    } >"$tmp/out/versions"
    cp "$tmp/out/versions" "$root/opt/tier/versions"
    # Room for what the stage writes (the image is booted with snapshot=on).
    local mb
    mb=$(du -sm "$root" | cut -f1)
    say "mkfs.ext4 -d ($mb MiB of files)"
    mkfs.ext4 -q -F -L sid -d "$root" "$tmp/out/root.ext4" "$((mb + mb / 4 + 256))M" ||
        fail_stage "mkfs.ext4 -d failed"
    rm -rf "$root" "$l2"
    # Only the current image is kept.
    find "$CACHE" -maxdepth 1 -name 'img-*' -type d -exec rm -rf {} +
    mv "$tmp/out" "$IMG"
    touch "$IMG/.complete"
    rm -rf "$tmp"
}
if [ ! -e "$IMG/.complete" ]; then
    T=$(date +%s)
    build_image
    say "sid image built in $(($(date +%s) - T))s"
fi
say "sid image $(basename "$IMG"): $(grep -E '^(kernel|qemu-system-x86|multipath-tools|libvirt-daemon) ' "$IMG/versions" | tr '\n' ' ')"

# ------------------------------------------------------- boot initramfs
# Per run: the boot initramfs with the binaries under test and the guest
# scripts under /payload, copied into the (snapshot) root before switch_root.
R=$WORK/sid-initramfs
rm -rf "$R"
mkdir -p "$R"/{bin,dev,proc,sys,newroot,lib/modules,etc}
cp "$IMG/busybox" "$R/bin/busybox"
cp "$IMG"/boot-modules/*.ko "$R/lib/modules/"
cp "$IMG/boot-modules/order" "$R/etc/modules.order"
install -m 0755 "$HERE/guest/sid-initramfs-init" "$R/init"
P=$R/payload
mkdir -p "$P/etc" "$P/usr/local/bin" "$P/opt/tier"
[ -x "$HELPER" ] && install -m 0755 "$HELPER" "$P/usr/local/bin/rs-pr-helper"
[ -x "$CLIENT" ] && install -m 0755 "$CLIENT" "$P/usr/local/bin/qemu-pr-client"
install -m 0755 "$HERE/guest/sid-init" "$P/etc/tier-sid-init"
install -m 0644 "$HERE/guest/lib.sh" "$P/etc/tier-lib.sh"
install -m 0644 "$HERE/guest/sid.sh" "$P/etc/tier-sid.sh"
install -m 0644 "$HERE/guest/sid-e2e.sh" "$P/etc/tier-sid-e2e.sh"
install -m 0644 "$HERE/guest/sid-mpd.sh" "$P/etc/tier-sid-mpd.sh"
install -m 0644 "$HERE/guest/sid-libvirt.sh" "$P/etc/tier-sid-libvirt.sh"
install -m 0644 "$HERE/guest/sid-prioctl.sh" "$P/etc/tier-sid-prioctl.sh"
# The KubeVirt image (dist/kubevirt/build.sh, which .ci/run runs before the
# tier), its layers unpacked into one root for sid.mpd.image-kubevirt.
IMAGE_ARCHIVE=$(find "$REPO/target/kubevirt" -maxdepth 1 -name 'qemu-pr-helper-rs-*.oci.tar' 2>/dev/null | head -1)
if [ -n "$IMAGE_ARCHIVE" ]; then
    oci=$WORK/sid-image-oci
    iroot=$WORK/sid-image-root
    rm -rf "$oci" "$iroot"
    mkdir -p "$oci" "$iroot"
    tar -xf "$IMAGE_ARCHIVE" -C "$oci"
    blob() { echo "$oci/blobs/${1/://}"; }
    manifest=$(blob "$(jq -r '.manifests[0].digest' "$oci/index.json")")
    for layer in $(jq -r '.layers[].digest' "$manifest"); do
        tar -xf "$(blob "$layer")" -C "$iroot"
    done
    (cd "$iroot" && tar -cf "$P/opt/tier/image-root.tar" .)
    rm -rf "$oci" "$iroot"
    say "KubeVirt image $(basename "$IMAGE_ARCHIVE") goes in (sid.mpd.image-kubevirt)"
fi
L2I=$WORK/sid-l2init
rm -rf "$L2I"
mkdir -p "$L2I"
install -m 0755 "$HERE/guest/sid-nested-init" "$L2I/init"
(cd "$L2I" && echo init | cpio -o -H newc --quiet) >"$P/opt/tier/l2-init.cpio"
if [ -r /usr/include/x86_64-linux-gnu/asm/unistd_64.h ]; then
    awk '/^#define __NR_/ {sub(/^__NR_/, "", $2); print $3, $2}' \
        /usr/include/x86_64-linux-gnu/asm/unistd_64.h >"$P/etc/syscalls"
fi
{
    echo "HAVE_CLIENT=$([ -x "$CLIENT" ] && echo 1 || echo 0)"
    echo "HAVE_HELPER=$([ -x "$HELPER" ] && echo 1 || echo 0)"
    echo "ONLY='$ONLY'"
    echo "MODE='sid'"
    echo "SECCOMP='log'"
    echo "PFX='sid.'"
} >"$P/etc/tier.conf"
(cd "$R" && find . | cpio -o -H newc --quiet) >"$WORK/initrd-sid"

# ------------------------------------------------------------------- boot
# -cpu max: sid's userland may assume more than the qemu64 baseline. audit=1:
# our helper runs with --seccomp log, whose events the kernel then records
# (a backlog room for libvirt's own records besides).
# Two vCPUs (SID_SMP): the two nested guests (QEMU's and libvirt's) boot at
# the same time, each on its own host core.
say "booting sid (limit ${LIMIT}s)"
set +e
timeout --kill-after=5 "$LIMIT" qemu-system-x86_64 -accel tcg -cpu max -m 2048 -smp "${SID_SMP:-2}" \
    -nographic -no-reboot -net none -kernel "$IMG/vmlinuz" -initrd "$WORK/initrd-sid" \
    -drive "file=$IMG/root.ext4,format=raw,if=virtio,snapshot=on" \
    -append "console=ttyS0 panic=-1 quiet audit=1 audit_backlog_limit=8192" </dev/null 2>&1 |
    sed -u -e 's/\r//g' -e 's/^.*\(@@[A-Z]\)/\1/' | tee "$WORK/sid.log" |
    grep --line-buffered -E '^@@(RESULT|DETAIL|INFO|ERROR|BENCH)' | sed -u 's/^/  /'
rc=${PIPESTATUS[0]}
set -e
[ "$rc" = 0 ] || say "qemu exited with status $rc (124 = timed out)"
exit 0
