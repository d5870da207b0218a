#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The Debian package, as a host would use it: build it with cargo-deb, install
# it with dpkg -i beside qemu-system-common, start the installed helper as the
# installed unit's ExecStart says (options from the installed
# /etc/default/qemu-pr-helper-rs, identity and capabilities as the unit gives
# them, the socket from systemd-socket-activate as the .socket unit passes it),
# send commands with the installed client, then dpkg --purge it and check that
# nothing is left and that QEMU's /usr/bin/qemu-pr-helper was never touched.
#
# Needs root, cargo-deb (cargo install cargo-deb --locked), and Debian's
# qemu-system-common, systemd and util-linux (setpriv). Refuses to run if the
# package is already installed: that installation is not ours to remove.
set -euo pipefail
cd "$(dirname "$0")/../.."

pkg=qemu-pr-helper-rs
c_helper=/usr/bin/qemu-pr-helper
unit=/usr/lib/systemd/system/$pkg.service

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"
dpkg -s "$pkg" >/dev/null 2>&1 && fail "$pkg is installed already; not touching it"
[ -x "$c_helper" ] || fail "QEMU's $c_helper is not installed (qemu-system-common)"
command -v systemd-socket-activate >/dev/null || fail "systemd-socket-activate missing"

work=$(mktemp -d)
daemon=
cleanup() {
    if [ -n "$daemon" ]; then
        kill "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
    fi
    if dpkg -s "$pkg" >/dev/null 2>&1; then
        echo "== cleaning up: dpkg --purge $pkg"
        dpkg --purge "$pkg" >/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

c_helper_sum() { sha256sum "$c_helper" | cut -d' ' -f1; }
# The backups of the user databases (/etc/passwd- ...) that creating the
# package's system user may leave are not the package's files.
snapshot() {
    find /etc /usr /var/lib/systemd -xdev 2>/dev/null |
        grep -Ev '^/etc/(passwd|group|shadow|gshadow)-$' | LC_ALL=C sort
}
c_sum=$(c_helper_sum)
snapshot >"$work/before"

echo "== cargo deb"
deb=$(cargo deb 2>"$work/cargo-deb.log" | tail -n1) || {
    cat "$work/cargo-deb.log" >&2
    fail "cargo deb"
}
[ -f "$deb" ] || fail "cargo deb printed no package path: $deb"
echo "   $deb"

echo "== dpkg -i"
dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || {
    cat "$work/dpkg.log" >&2
    fail "dpkg -i"
}
for path in \
    /usr/libexec/$pkg/qemu-pr-helper \
    /usr/bin/qemu-pr-client \
    /usr/share/man/man8/$pkg.8.gz \
    /usr/share/man/man1/qemu-pr-client.1.gz \
    /usr/share/man/man5/qemu-pr-helper.toml.5.gz \
    /usr/share/bash-completion/completions/qemu-pr-client \
    "$unit" \
    /usr/lib/systemd/system/$pkg.socket \
    /etc/default/$pkg \
    /usr/share/doc/$pkg/examples/$pkg-multipath.conf \
    /usr/share/doc/$pkg/examples/$pkg-pr-ioctl.conf \
    /usr/lib/sysusers.d/$pkg.conf \
    /usr/share/doc/$pkg/docs/deployments.md \
    /usr/share/doc/$pkg/copyright; do
    [ -e "$path" ] || fail "not installed: $path"
done
# The units and files are config/'s as the repository ships them (which
# tests/systemd_units.rs runs as shipped).
for pair in \
    "config/$pkg.service $unit" \
    "config/$pkg.socket /usr/lib/systemd/system/$pkg.socket" \
    "config/$pkg.default /etc/default/$pkg" \
    "config/$pkg-multipath.conf /usr/share/doc/$pkg/examples/$pkg-multipath.conf" \
    "config/$pkg-pr-ioctl.conf /usr/share/doc/$pkg/examples/$pkg-pr-ioctl.conf" \
    "config/$pkg.sysusers /usr/lib/sysusers.d/$pkg.conf" \
    "config/qemu-pr-helper.toml /usr/share/doc/$pkg/examples/qemu-pr-helper.toml"; do
    # shellcheck disable=SC2086 # two words
    cmp $pair || fail "installed file differs from config/: $pair"
done
[ "$(dpkg -S "$c_helper" | cut -d: -f1)" = qemu-system-common ] ||
    fail "$c_helper no longer belongs to qemu-system-common"
[ "$(c_helper_sum)" = "$c_sum" ] || fail "$c_helper changed"
# The multipath drop-in's user (-u qemu-pr-helper -g disk), made by the
# postinst from the sysusers.d file: a system user of its own in group disk,
# no home, no login.
user=$(getent passwd qemu-pr-helper) || fail "postinst did not create the user qemu-pr-helper"
IFS=: read -r _ _ uid gid _ home shell <<<"$user"
[ "$gid" = "$(getent group disk | cut -d: -f3)" ] || fail "qemu-pr-helper's group is not disk: $user"
[ "$uid" -lt 1000 ] || fail "qemu-pr-helper is not a system user: $user"
[ "$home" = /nonexistent ] && [ "$shell" = /usr/sbin/nologin ] || fail "qemu-pr-helper: $user"
grep -q -- "-u qemu-pr-helper -g disk" /usr/share/doc/$pkg/examples/$pkg-multipath.conf ||
    fail "the drop-in does not run as qemu-pr-helper:disk"
zcat /usr/share/man/man8/$pkg.8.gz | grep "^\.TH QEMU-PR-HELPER-RS 8" >/dev/null ||
    fail "the helper's man page is not $pkg(8)"
# Both man pages are QEMU's and ours, side by side.
man -w qemu-pr-helper >/dev/null 2>&1 && { man -w $pkg >/dev/null || fail "man -w $pkg"; }
# The configuration file's page, found by its name.
if command -v man >/dev/null; then
    man -w 5 qemu-pr-helper.toml >/dev/null || fail "man -w 5 qemu-pr-helper.toml"
fi

# The installed unit's command line: ExecStart, with $QEMU_PR_HELPER_OPTS as
# the installed /etc/default/qemu-pr-helper-rs sets it (or as a line of it
# would, given as an argument), split into words as systemd splits it.
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[ "$(printf '%s\n' "$exec_start" | wc -l)" = 1 ] || fail "one ExecStart expected: $exec_start"
# Identity and capabilities as the unit gives them: a dynamic user (any
# unused uid), CAP_SYS_RAWIO in the bounding and ambient sets, no_new_privs.
grep -qx "DynamicUser=yes" "$unit" || fail "the unit no longer uses DynamicUser"
grep -qx "CapabilityBoundingSet=CAP_SYS_RAWIO" "$unit" || fail "bounding set changed"
grep -qx "AmbientCapabilities=CAP_SYS_RAWIO" "$unit" || fail "ambient set changed"
# shellcheck disable=SC2054 # the commas are setpriv's capability lists
as_unit=(setpriv --reuid=61999 --regid=61999 --clear-groups
    --bounding-set=-all,+sys_rawio --inh-caps=-all,+sys_rawio
    --ambient-caps=-all,+sys_rawio --no-new-privs --)

sock=$work/pr.sock
start_as_unit() { # [a QEMU_PR_HELPER_OPTS line]
    local QEMU_PR_HELPER_OPTS=
    # shellcheck disable=SC1090
    . /etc/default/$pkg
    [ $# = 0 ] || eval "$1"
    local words
    read -r -a words <<<"${exec_start//\$QEMU_PR_HELPER_OPTS/$QEMU_PR_HELPER_OPTS}"
    [ "${words[0]}" = /usr/libexec/$pkg/qemu-pr-helper ] || fail "ExecStart runs ${words[0]}"
    echo "   ${words[*]}"
    rm -f "$sock"
    systemd-socket-activate -l "$sock" "${as_unit[@]}" "${words[@]}" 2>"$work/helper.log" &
    daemon=$!
    until [ -S "$sock" ]; do
        kill -0 "$daemon" 2>/dev/null || {
            cat "$work/helper.log" >&2
            fail "the helper exited"
        }
        sleep 0.05
    done
}
stop() {
    kill "$daemon"
    wait "$daemon" || {
        cat "$work/helper.log" >&2
        fail "the helper did not exit cleanly"
    }
    daemon=
}
client() { /usr/bin/qemu-pr-client --socket "$sock" "$@"; }
# The socket is root's (as systemd's would be, with group kvm); the daemon
# runs as the dynamic user and never needs to open it.
disk=$work/disk.img
truncate -s 1M "$disk"

echo "== the installed helper, as the installed unit starts it"
start_as_unit
rc=0
client "$disk" >"$work/out" 2>&1 || rc=$?
# A regular file is not a SCSI device: the client says so and sends nothing
# (sg3_utils' 15)...
[ "$rc" = 15 ] || fail "READ KEYS on a file: exit $rc, $(cat "$work/out")"
rc=0
client --emulated "$disk" >"$work/out" 2>&1 || rc=$?
# ...and a helper serving real devices answers ABORTED COMMAND for one (11).
[ "$rc" = 11 ] || fail "READ KEYS on a file with --emulated: exit $rc, $(cat "$work/out")"
grep -q "PR in (Read keys): Aborted command" "$work/out" || fail "$(cat "$work/out")"
grep -q "privileges dropped" "$work/helper.log" || fail "$(cat "$work/helper.log")"
stop

echo "== the installed helper with the installed emulated example"
start_as_unit "QEMU_PR_HELPER_OPTS=\"-c /usr/share/doc/$pkg/examples/emulated.toml\""
client --emulated -o -G -S 0xabc "$disk" >/dev/null
client --emulated -o -R -K 0xabc -T 5 "$disk" >/dev/null
client --emulated -r "$disk" >"$work/out"
grep -q "Key=0xabc" "$work/out" || fail "READ RESERVATION: $(cat "$work/out")"
grep -q "EMULATED DEVICE" "$work/helper.log" || fail "$(cat "$work/helper.log")"
stop

echo "== dpkg --purge"
dpkg --purge "$pkg" >"$work/dpkg.log" 2>&1 || {
    cat "$work/dpkg.log" >&2
    fail "dpkg --purge"
}
! dpkg -s "$pkg" >/dev/null 2>&1 || fail "$pkg still known to dpkg"
# The system user qemu-pr-helper stays, as Debian's system users do (files
# may still be its own); it adds no file.
snapshot >"$work/after"
if ! diff "$work/before" "$work/after" >"$work/left"; then
    cat "$work/left" >&2
    fail "the purge left the file system different from before the install"
fi
[ "$(c_helper_sum)" = "$c_sum" ] || fail "$c_helper changed"
[ "$(dpkg -S "$c_helper" | cut -d: -f1)" = qemu-system-common ] ||
    fail "$c_helper no longer belongs to qemu-system-common"
echo "== the package installs, serves and purges cleanly"
