# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=dash disable=SC3043
# Variables set through eval (SGn, PATHn, HELPER_PID_x) look unassigned:
# shellcheck disable=SC2034,SC2154
# The sid stack (guest side), sourced by guest/sid-init after lib.sh.
#
# Two RAM-backed LUs, each behind its own tcm_loop I_T nexuses:
#   LU A (lu0): nexus 1, 2  this host's paths (nested disks d0, d1)
#               nexus 3     observer: the device state is read here
#               nexus 4     the migration destination of d1
#   LU B (lu1): nexus 5, 6  this host's paths (nested disks d2, d3)
#               nexus 7     observer
#               nexus 8     the migration destination of d3
#   LU A        nexus 9     libvirt's domain (its guest boots beside the
#                           other: QEMU locks the disks it opens)
#   LU C (lu2): nexus a, b  the source map of a migration on dm-multipath
#                           (nested disk d4, map mpsrc)
#               nexus c, d  its destination map (mpdst)
#               nexus e     observer
#               nexus f     libvirt's second domain (as shipped), after the
#                           maps are gone
#   LU D (lu3): nexus D1    the nested guest's disk d5 through the PR ioctl
#                           executor (our helper with no capability)
#               nexus D2    its migration destination
#               nexus D3    observer
#   LU E (lu4): nexus E1-E4 the PR ioctl executor against SG_IO, on the same
#               nexus E5    LU (sid-prioctl.sh); E5 observer
#   LU F (lu5): nexus F1, F2 the map mpisrc (nested disk d6, PR ioctls)
#               nexus F3, F4 its migration destination, the map mpidst
#               nexus F5    observer
# Our helper (rs-pr-helper) always runs with --seccomp log and -v (every
# command logged); sid.seccomp-log at the end requires that the kernel
# recorded no seccomp event of it over the whole stage.

SID_LIMIT_L2=${SID_LIMIT_L2:-900}

# sid_nexus I LU [P]: tcm_loop I_T nexus I (initiator naa.50014050000001II)
# to lu LU; sets PATHi, SGi (as guest/init's make_nexus does). With P (a hex
# letter) the nexus is named PI in capitals (PATHD1 for P=d, I=1) and its
# names carry P, so each LU can number its nexuses from 1 again; the
# initiator's last hex digit, which dev_state prints, is still I.
sid_nexus() {
    local c=/sys/kernel/config/target i=$1 t host n blk sg tw iw
    tw=naa.500140500000000$i
    iw=naa.50014050000001$i$i
    if [ -n "${3:-}" ]; then
        tw=naa.50014050000$3${3}00$i
        iw=naa.5001405000$3${3}00$i$i
        i=$(echo "$3" | tr a-f A-F)$1
    fi
    t=$c/loopback/$tw/tpgt_1
    mkdir -p "$t/lun/lun_0" || return 1
    echo "$iw" >"$t/nexus" || return 1
    ln -s "$c/core/rd_mcp_0/lu$2" "$t/lun/lun_0/lu$2" || return 1
    host=$(cut -d: -f1 "$t/address")
    host=${host#host}
    n=0
    blk=""
    while [ $n -lt 200 ]; do
        blk=$(ls /sys/bus/scsi/devices/"$host":0:*:0/block 2>/dev/null | head -1)
        sg=$(ls /sys/bus/scsi/devices/"$host":0:*:0/scsi_generic 2>/dev/null | head -1)
        [ -n "$blk" ] && [ -n "$sg" ] && [ -e "/dev/$blk" ] && [ -e "/dev/$sg" ] && break
        n=$((n + 1))
        usleep 50000
    done
    [ -n "$blk" ] || { echo "@@ERROR no disk for nexus $i (host $host)"; return 1; }
    # As udev sets them up: root:disk 0660.
    chgrp disk "/dev/$blk" "/dev/$sg" && chmod 0660 "/dev/$blk" "/dev/$sg" || return 1
    eval "PATH$i=/dev/$blk SG$i=/dev/$sg INIT$i=$iw DIRTY$i=1"
    echo "@@INFO sid nexus $i: lu$2 host$host /dev/$blk /dev/$sg"
}

sid_setup() {
    local c=/sys/kernel/config/target m l
    for m in configfs target_core_mod tcm_loop sd_mod sg dm_multipath scsi_dh_alua; do
        modprobe "$m" || { echo "@@ERROR modprobe $m failed"; return 1; }
    done
    mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config || return 1
    # 64 MiB each; a unit serial number gives udev a WWID (multipathd).
    for l in 0 1 2 3 4 5; do
        mkdir -p "$c/core/rd_mcp_0/lu$l" || return 1
        echo rd_pages=16384 >"$c/core/rd_mcp_0/lu$l/control"
        echo "tiersid$l" >"$c/core/rd_mcp_0/lu$l/wwn/vpd_unit_serial" || return 1
        echo 1 >"$c/core/rd_mcp_0/lu$l/enable" || return 1
    done
    for m in 1 2 3 4; do sid_nexus $m 0 || return 1; done
    for m in 5 6 7 8; do sid_nexus $m 1 || return 1; done
    sid_nexus 9 0 || return 1
    for m in a b c d e f; do sid_nexus $m 2 || return 1; done
    for m in 1 2 3; do sid_nexus $m 3 d || return 1; done
    for m in 1 2 3 4 5; do sid_nexus $m 4 e || return 1; done
    for m in 1 2 3 4 5; do sid_nexus $m 5 f || return 1; done
}

# sid_versions: the stack this boot ran, as @@INFO lines.
sid_versions() {
    echo "@@INFO sid kernel $(uname -r)"
    sed 's/^/@@INFO sid package /' /opt/tier/versions
    echo "@@INFO sid $(qemu-system-x86_64 --version | head -1)"
    echo "@@INFO sid $(multipath -h 2>&1 | grep -m1 -i "multipath-tools" || echo "multipath: no version line")"
    echo "@@INFO sid sg_persist $(sg_persist -V 2>&1 | head -1)"
    echo "@@INFO sid rs-pr-helper $(rs-pr-helper -V 2>&1 | head -1)"
}

# sid_start NAME BINARY root|user [ARGS]: a helper on /run/pr-NAME.sock, as
# root or started as root with -u nobody -g disk, with ARGS (one word list).
# Ours: --seccomp log, -v.
sid_start() {
    local extra=""
    rm -f "/run/pr-$1.sock"
    case "$2" in *rs-pr-helper) extra="--seccomp log -v" ;; esac
    [ "$3" = user ] && extra="$extra -u nobody -g disk"
    extra="$extra ${4:-}"
    # shellcheck disable=SC2086
    "$2" $extra -k "/run/pr-$1.sock" >"/tmp/helper-$1.log" 2>&1 &
    eval "HELPER_PID_$(echo "$1" | tr -- - _)=$!"
    i=0
    while [ $i -lt 100 ] && [ ! -S "/run/pr-$1.sock" ]; do
        usleep 100000
        i=$((i + 1))
    done
    [ -S "/run/pr-$1.sock" ]
}
sid_pid() { eval "echo \$HELPER_PID_$(echo "$1" | tr -- - _)"; }

# sid_state LU: the device state of LU A (0), B (1), C (2), D (3), E (4) or
# F (5), read directly through its observer nexus (3, 7, e, D3, E5 or F5), as lib.sh's
# dev_state prints it (a nexus D1 shows as 1).
sid_state() {
    local n=3
    [ "$1" = 1 ] && n=7
    [ "$1" = 2 ] && n=e
    [ "$1" = 3 ] && n=D3
    [ "$1" = 4 ] && n=E5
    [ "$1" = 5 ] && n=F5
    eval "DIRTY$n=1"
    STATE_NEXUS=$n dev_state
}

# sid_expect LU WHEN WANT[|ALTERNATIVE...]
sid_expect() {
    local got w
    got=$(sid_state "$1")
    for w in $(echo "$3" | tr ' |' '_ '); do
        [ "$got" = "$(echo "$w" | tr _ ' ')" ] && return 0
    done
    fail "device state after $2: expected [$3] got [$got]"
}

# sid.helpers.NAME: the helper started as root or as nobody:disk serves a
# REGISTER / RESERVE / READ / RELEASE / unregister cycle from qemu-pr-client
# on nexus 1; the device is read directly after each PR OUT.
sid_helpers() {
    local name bin mode
    for name in rs-root rs-user c-root c-user; do
        case $name in rs-*) bin=/usr/local/bin/rs-pr-helper ;; *) bin=/usr/bin/qemu-pr-helper ;; esac
        mode=${name#*-}
        begin "helpers.$name" || continue
        if [ ! -x "$bin" ] || [ "$HAVE_CLIENT" != 1 ]; then
            echo "@@RESULT $SCEN SKIP no $bin or no client"
            SCEN=""
            continue
        fi
        sid_start "$name" "$bin" "$mode" || fail "did not start: $(head -c 400 "/tmp/helper-$name.log")"
        B=$name
        mkdir -p "$RES/$B" "$RES/$B.masked"
        STATE_NEXUS=3
        step register 0 -o -G -S 0x1111 "$SG1"
        sid_expect 0 register "1:0x1111"
        step read-keys 0 -i -k "$SG1"
        echo "$OUT" | grep -q 1111 || fail "READ KEYS did not list 0x1111: $OUT"
        step reserve 0 -o -R -K 0x1111 -T 5 "$SG1"
        sid_expect 0 reserve "1:0x1111:R5"
        step read-reservation 0 -i -r "$SG1"
        echo "$OUT" | grep -q 1111 || fail "READ RESERVATION did not show 0x1111: $OUT"
        step report-capabilities 0 -i -c "$SG1"
        step read-full-status 0 -i -s "$SG1"
        step release 0 -o -L -K 0x1111 -T 5 "$SG1"
        step unregister 0 -o -G -K 0x1111 -S 0 "$SG1"
        sid_expect 0 unregister "-"
        pid=$(sid_pid "$name")
        kill -0 "$pid" 2>/dev/null || fail "the helper is gone after the cycle: $(tail -c 400 "/tmp/helper-$name.log")"
        # In user mode the daemon must really run as nobody.
        if [ "$mode" = user ]; then
            uid=$(awk '/^Uid:/ {print $3}' "/proc/$pid/status")
            [ "$uid" = 65534 ] || fail "effective uid $uid, want 65534 (nobody)"
        fi
        end
    done
}

sid_main() {
    sid_versions
    begin setup
    sid_setup || fail "device setup failed"
    end
    [ $SCEN_FAIL = 0 ] || return
    sid_helpers
    . /etc/tier-sid-prioctl.sh
    sid_prioctl
    # The nested guest's initramfs: the cached base and this run's /init.
    cat /opt/tier/l2-base.cpio /opt/tier/l2-init.cpio >/tmp/l2.initrd
    . /etc/tier-sid-e2e.sh
    . /etc/tier-sid-libvirt.sh
    sid_e2e
    sid_libvirt
    . /etc/tier-sid-mpd.sh
    # libvirt as Debian ships it boots its nested guest while multipathd's
    # scenarios (LU A only) run.
    sid_libvirt_shipped_start
    sid_mpd
    sid_libvirt_shipped
    sid_seccomp_check
}

# sid.seccomp-log: our helper ran with --seccomp log all along; the kernel
# must hold no seccomp audit record of it (lib.sh's check, this stage's name).
sid_seccomp_check() {
    MODE=stage
    seccomp_log_check
}
