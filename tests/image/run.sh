#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The KubeVirt image, run as virt-handler's DaemonSet runs its pr-helper
# container (docs/kubevirt.md), without a container runtime: the image's root
# unpacked from its OCI archive, then /entrypoint.sh with the DaemonSet's
# arguments in new mount and pid namespaces, chrooted, as root with every
# capability (privileged), with the DaemonSet's mounts: the pr directory,
# /dev, /etc/multipath, and the host's multipathd socket in the pr directory.
# Checks: the image's files and labels, the socket at KubeVirt's path, a PR
# command through it, the entrypoint's link, the helper's and its multipathd
# relay's privileges from the host's /proc, the relay's address, and a
# command through a multipath map reaching the host's multipathd socket.
# Root only; needs buildah, busybox-static, jq and socat (.ci/run installs
# them) and target/release/qemu-pr-client.
set -euo pipefail
cd "$(dirname "$0")/../.."

((EUID == 0)) || { echo "tests/image/run.sh: run as root" >&2; exit 1; }
for tool in jq socat losetup unshare chroot; do
    command -v "$tool" >/dev/null || { echo "tests/image/run.sh: $tool is missing" >&2; exit 1; }
done
start=$(date +%s)
fail() {
    [[ -s ${work:-}/helper.log ]] && sed 's/^/helper: /' "$work/helper.log" >&2
    echo "FAIL: $*" >&2
    exit 1
}

echo "-- build"
dist/kubevirt/build.sh
cargo build --release --quiet --bin qemu-pr-client
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
archive=target/kubevirt/qemu-pr-helper-rs-$version.oci.tar
client=$PWD/target/release/qemu-pr-client

work=$(mktemp -d /tmp/qemu-pr-helper-image-test.XXXXXX)
pids=()
loops=()
cleanup() {
    local pid
    # unshare waits for its child whatever it is sent; the child, the
    # helper, is its pid namespace's init, and takes the namespace with it.
    local init
    if [[ -n ${unshare_pid:-} ]] && init=$(cat "/proc/$unshare_pid/task/$unshare_pid/children" 2>/dev/null); then
        for pid in $init; do kill -KILL "$pid" 2>/dev/null || true; done
    fi
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    local dev
    for dev in "${loops[@]}"; do losetup -d "$dev" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

echo "-- unpack"
oci=$work/oci
root=$work/root
mkdir -p "$oci" "$root"
tar -xf "$archive" -C "$oci"
blob() { echo "$oci/blobs/${1/://}"; }
manifest=$(blob "$(jq -r '.manifests[0].digest' "$oci/index.json")")
config=$(blob "$(jq -r '.config.digest' "$manifest")")
for layer in $(jq -r '.layers[].digest' "$manifest"); do
    tar -xf "$(blob "$layer")" -C "$root"
done

echo "-- files and labels"
(cd "$root" && find . -mindepth 1 -printf '%y %m %P\n' | sort -k3) >"$work/files"
cat "$work/files"
diff -u tests/image/expected-files.txt "$work/files" || fail "the image's files are not the expected ones"
[[ $(jq -c '.config.Entrypoint' "$config") == '["/entrypoint.sh"]' ]] || fail "entrypoint"
[[ $(jq -r '.config.Labels["org.opencontainers.image.version"]' "$config") == "$version" ]] || fail "version label"
[[ $(jq -r '.config.Labels["org.opencontainers.image.licenses"]' "$config") == GPL-2.0-or-later ]] || fail "licence label"
jq -r '.config.Labels | to_entries[] | "label \(.key)=\(.value)"' "$config"

echo "-- the host side: pr directory, /etc/multipath, a stand-in multipathd"
pr=$work/host/pr
mkdir -p "$pr" "$work/host/etc-multipath"
# virt-handler bind-mounts the host's multipathd socket at this path: the
# stand-in listens there and records what reaches it.
socat -u "UNIX-LISTEN:$pr/multipathd.socket,fork" "OPEN:$work/multipathd.log,creat,append" &
pids+=($!)
truncate -s 64M "$work/disk.img" "$work/map.img" "$work/path.img"
loop=$(losetup -f --show "$work/disk.img")
loops=("$loop")
map=$(losetup -f --show "$work/map.img")
loops+=("$map")
path=$(losetup -f --show "$work/path.img")
loops+=("$path")
devno() { printf '%d:%d' "0x$(stat -c %t "$1")" "0x$(stat -c %T "$1")"; }
# No device-mapper here: /sys is a stand-in where the second loop device is
# a dm-multipath map whose one path is the third, as sysfs shows a map
# (dm/uuid, dm/name, slaves/NAME/dev); the rest of sysfs is not read.
sys=$work/host/sys
mkdir -p "$sys/dev/block/$(devno "$map")/dm" "$sys/dev/block/$(devno "$map")/slaves/${path#/dev/}" "$sys/devices/image-test"
echo mpath-image-test >"$sys/dev/block/$(devno "$map")/dm/uuid"
echo mpatha >"$sys/dev/block/$(devno "$map")/dm/name"
devno "$path" >"$sys/dev/block/$(devno "$map")/slaves/${path#/dev/}/dev"
echo running >"$sys/devices/image-test/state"
ln -s ../../../../devices/image-test "$sys/dev/block/$(devno "$map")/slaves/${path#/dev/}/device"

echo "-- run /entrypoint.sh as the DaemonSet does"
# The runtime's part: mount points, /proc, /sys, /dev and the volumes.
mkdir -p "$root/proc" "$root/sys" "$root/dev" "$root/etc/multipath" "$root/var/run/kubevirt/daemons/pr"
# The DaemonSet's arguments, and -v (DEBUG) to see the relay's address and
# each command in the log.
# shellcheck disable=SC2016 # expanded by the inner shell
unshare --mount --pid --fork --propagation private /bin/sh -c '
    root=$1 host=$2; shift 2
    mount -t proc proc "$root/proc"
    mount --bind "$host/sys" "$root/sys"
    mount --rbind /dev "$root/dev"
    mount --bind "$host/pr" "$root/var/run/kubevirt/daemons/pr"
    mount --bind "$host/etc-multipath" "$root/etc/multipath"
    exec chroot "$root" "$@"' sh "$root" "$work/host" \
    /entrypoint.sh -k /var/run/kubevirt/daemons/pr/pr-helper.sock -v 2>"$work/helper.log" &
unshare_pid=$!
pids+=("$unshare_pid")

# The socket file may appear before privileges are dropped; the "listening"
# line comes after the filter is installed.
for _ in $(seq 100); do
    [[ -S $pr/pr-helper.sock ]] && grep -q '"listening"' "$work/helper.log" && break
    kill -0 "$unshare_pid" 2>/dev/null || { cat "$work/helper.log" >&2; fail "the helper ended"; }
    sleep 0.1
done
if ! [[ -S $pr/pr-helper.sock ]] || ! grep -q '"listening"' "$work/helper.log"; then
    cat "$work/helper.log" >&2
    fail "no socket at KubeVirt's path"
fi
echo "socket: $pr/pr-helper.sock"

# unshare's child is the namespace's pid 1 (the helper, after the
# entrypoint's exec); its child is the multipathd relay.
helper=$(cat "/proc/$unshare_pid/task/$unshare_pid/children")
helper=${helper%% *}
[[ $(readlink "/proc/$helper/exe") == "$root/usr/bin/qemu-pr-helper" ]] || fail "pid $helper is not the helper"
relay=$(cat /proc/"$helper"/task/*/children | tr ' ' '\n' | sed '/^$/d' | head -n1)
[[ -n $relay ]] || fail "no multipathd relay"

status() { grep -E '^(Uid|Gid|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' "/proc/$1/status"; }
expect() { # pid field value
    local got
    got=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status")
    [[ $got == "$3" ]] || fail "pid $1 $2 is $got, not $3"
}
echo "helper (host pid $helper):"
status "$helper" | sed 's/^/  /'
expect "$helper" Uid 0
expect "$helper" CapEff 0000000000020000
expect "$helper" CapPrm 0000000000020000
expect "$helper" CapBnd 0000000000020000
expect "$helper" CapInh 0000000000000000
expect "$helper" CapAmb 0000000000000000
expect "$helper" NoNewPrivs 1
expect "$helper" Seccomp 2
echo "multipathd relay (host pid $relay):"
status "$relay" | sed 's/^/  /'
expect "$relay" Uid 0
expect "$relay" CapEff 0000000000000000
expect "$relay" CapPrm 0000000000000000
expect "$relay" CapAmb 0000000000000000
expect "$relay" NoNewPrivs 1
expect "$relay" Seccomp 2

echo "-- the entrypoint's link, and the relay's address"
[[ $(readlink "$root/run/multipathd.socket") == /var/run/kubevirt/daemons/pr/multipathd.socket ]] ||
    fail "no link /run/multipathd.socket -> /var/run/kubevirt/daemons/pr/multipathd.socket"
echo "link: /run/multipathd.socket -> $(readlink "$root/run/multipathd.socket")"
grep -q 'multipathd relay started.*/run/multipathd.socket' "$work/helper.log" ||
    { cat "$work/helper.log" >&2; fail "the relay does not use the linked socket"; }
grep 'multipathd relay started' "$work/helper.log"

echo "-- a PR command through KubeVirt's socket"
# No SCSI device here: a loop device. SG_IO reaches the kernel, which
# refuses it (EINVAL), and the helper answers ILLEGAL REQUEST, INVALID FIELD
# IN CDB: the request went through the executor and back (-v: the sense
# follows sg_persist's one line).
answer=$("$client" --socket "$pr/pr-helper.sock" -v -i -k "$loop" 2>&1) && fail "READ KEYS on a loop device succeeded"
echo "$answer"
[[ $answer == *"ILLEGAL REQUEST"*"24h/00h"* ]] || fail "unexpected answer: $answer"
devno=$(devno "$loop")
grep '"command done"' "$work/helper.log" | grep "\"device\":\"$devno\"" | grep -q '"action":"READ KEYS","cdb":"5e00' ||
    { cat "$work/helper.log" >&2; fail "the helper did not log the command on $devno"; }

echo "-- through a multipath map: the relay asks multipathd, through the link"
# A command through a map asks multipathd for dm's path states through the
# relay; the stand-in does not answer, so the path counts as down and the
# command gets NOT READY: what matters is what reached the host's socket.
answer=$("$client" --socket "$pr/pr-helper.sock" -i -k "$map" 2>&1) && fail "READ KEYS through the map succeeded"
echo "$answer"
grep -q 'routing through multipath map' "$work/helper.log" || { cat "$work/helper.log" >&2; fail "the map was not seen"; }
grep -aq 'show paths raw format' "$work/multipathd.log" || fail "nothing reached the host's multipathd socket"
echo "the host's multipathd socket got: $(tr -c '[:print:]' '.' <"$work/multipathd.log")"

echo "-- the log: JSON lines on stderr"
while read -r line; do
    jq -e . >/dev/null <<<"$line" || fail "not a JSON line: $line"
done <"$work/helper.log"
echo "$(wc -l <"$work/helper.log") lines, all JSON"

echo "-- stop (SIGTERM, as the kubelet does)"
kill -TERM "$helper"
wait "$unshare_pid" || fail "the helper exited with status $?"
[[ ! -e $pr/pr-helper.sock ]] || fail "the socket is left behind"
echo "exited 0, socket removed"
echo "ok: image test in $(($(date +%s) - start)) s"
