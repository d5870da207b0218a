# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=dash disable=SC3043
# shellcheck disable=SC2034,SC2154
# The sid stage end to end through QEMU 11.1 (sourced by guest/sid.sh).
#
# One nested guest (guest/sid-nested-init; TCG inside TCG, about two minutes
# to its /init) serves every scenario here: QEMU starts it with four
# scsi-block disks, each with its own pr-manager-helper:
#   target 0: nexus 1 (LU A)  our helper as root         (rs-root)
#   target 1: nexus 2 (LU A)  our helper, -u nobody -g disk (rs-user)
#   target 2: nexus 5 (LU B)  sid's C helper as root      (c-root)
#   target 3: nexus 6 (LU B)  sid's C helper, -u nobody -g disk (c-user)
#   target 4: map mpsrc (LU C, nexus a and b)  our helper as root (rs-root)
#   target 5: nexus D1 (LU D)  our helper with the PR ioctl executor, -u
#             nobody -g disk, no capability at all (rs-ioctl)
#   target 6: map mpisrc (LU F, nexus F1 and F2)  the same helper
# sid.e2e.NAME: the nested guest's sg_persist cycle on that disk; the device
# is read directly (observer nexus) after each PR OUT.
# sid.migrate.plain.{rs,c}: the nested guest holds a type 5 reservation on
# targets 1 and 3; QEMU migrates it (QMP migrate) to a second QEMU started
# with -incoming whose targets 1 and 3 are nexus 4 and 8, through helpers of
# their own (the destination host's). migrate-pr moves the reservation:
# the destination nexus must hold it with the key, the source nexus must be
# fenced, and the guest must go on writing and reading on the destination.
# sid.migrate.mpath: in the same migration, target 4 moves from the map
# mpsrc (nexus a, b) to the map mpdst (nexus c, d), served by our helper as
# root on both sides (rs-root, rs-root-dst): both destination paths must be
# registered and one of them hold the reservation, both source paths must
# be unregistered and fenced.
# sid.migrate.ioctl: likewise target 5 moves from nexus D1 to D2, and
# target 6 from the map mpisrc (F1, F2) to the map mpidst (F3, F4), through
# helpers that use the kernel's PR ioctls and hold no capability (rs-ioctl,
# rs-ioctl-dst): QEMU's READ RESERVATION, REGISTER and PREEMPT become
# IOC_PR_READ_RESERVATION, IOC_PR_REGISTER and IOC_PR_PREEMPT (per path).

e2e_now() { cut -d. -f1 /proc/uptime; }

# qmp SOCKET COMMAND...: QMP commands (JSON, one per argument) after the
# capabilities handshake; prints the replies.
qmp() {
    local s=$1
    shift
    {
        echo '{"execute":"qmp_capabilities"}'
        for c in "$@"; do echo "$c"; done
        sleep 2
    } | timeout 60 socat -t 5 - "UNIX-CONNECT:$s" 2>&1 | tr -d '\r'
}

# l2_qemu NAME TARGET-SPEC... [-- EXTRA...]: start QEMU 11.1 with the nested
# guest; TARGET-SPEC is DEVICE@HELPER-SOCKET-NAME for targets 0, 1, ...
# Console /tmp/nested-NAME.log, commands through the pipe /tmp/ctl-NAME,
# QMP /tmp/qmp-NAME.sock; pid in L2PID_NAME.
l2_qemu() {
    local name=$1 t=0 args="" spec
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        spec=$1
        args="$args -object pr-manager-helper,id=pr$t,path=/run/pr-${spec#*@}.sock"
        args="$args -blockdev node-name=disk$t,driver=host_device,filename=${spec%@*},pr-manager=pr$t"
        args="$args -device scsi-block,id=sd$t,drive=disk$t,bus=scsi0.0,channel=0,scsi-id=$t,lun=0"
        t=$((t + 1))
        shift
    done
    [ "${1:-}" = -- ] && shift
    rm -f "/tmp/nested-$name.log" "/tmp/ctl-$name.in" "/tmp/ctl-$name.out" "/tmp/qmp-$name.sock"
    mkfifo "/tmp/ctl-$name.in" "/tmp/ctl-$name.out"
    cat "/tmp/ctl-$name.out" >/dev/null &
    # shellcheck disable=SC2086
    qemu-system-x86_64 -accel tcg -m 256 -smp 1 -nodefaults -display none -no-reboot \
        -qmp "unix:/tmp/qmp-$name.sock,server=on,wait=off" \
        -device virtio-scsi-pci,id=scsi0 $args \
        -serial "file:/tmp/nested-$name.log" -serial "pipe:/tmp/ctl-$name" \
        -kernel "/usr/lib/modules/$(uname -r)/vmlinuz" -initrd /tmp/l2.initrd \
        -append "console=ttyS0 panic=-1 loglevel=4 mitigations=off tier.disks=$t" \
        "$@" </dev/null >"/tmp/qemu-$name.out" 2>&1 &
    eval "L2PID_$name=$!"
}

# l2_use NAME: later l2 commands go to that QEMU's nested guest.
l2_use() { L2NAME=$1; }
# The nested guest's marker lines (anything glued before a marker dropped).
l2_log() { tr -d '\r' <"/tmp/nested-$L2NAME.log" 2>/dev/null | grep '@@NESTED' | sed 's/^.*@@NESTED //'; }

# l2_wait_ready LIMIT: until the nested guest serves commands.
l2_wait_ready() {
    local t0 pid
    t0=$(e2e_now)
    eval "pid=\$L2PID_$L2NAME"
    while ! l2_log | grep -q '^ready'; do
        kill -0 "$pid" 2>/dev/null || { echo "@@INFO sid qemu $L2NAME exited: $(head -c 600 "/tmp/qemu-$L2NAME.out")"; return 1; }
        [ $(($(e2e_now) - t0)) -lt "$1" ] || return 1
        sleep 2
    done
    echo "@@INFO sid nested guest ($L2NAME) $(l2_log | grep '^ready' | head -1) (+$(($(e2e_now) - t0))s)"
}

# l2 LIMIT VERB TARGET [ARGS...]: one command in the nested guest; sets
# L2RC and L2OUT.
L2N=0
l2() {
    local lim=$1 id line t0
    shift
    L2N=$((L2N + 1))
    id=c$L2N
    L2RC=none
    L2OUT=""
    timeout 20 sh -c "echo '$id $*' >/tmp/ctl-$L2NAME.in" || { L2OUT="could not send [$*]"; return 1; }
    t0=$(e2e_now)
    while :; do
        # Only a whole line: it ends with " ##".
        line=$(l2_log | grep "^$id .* ##\$" | head -1 | sed 's/ ##$//')
        [ -n "$line" ] && break
        if [ $(($(e2e_now) - t0)) -ge "$lim" ]; then
            L2OUT="no answer to [$*] within ${lim}s"
            return 1
        fi
        usleep 300000
    done
    L2RC=$(echo "$line" | sed -n 's/^[^ ]* rc=\([0-9]*\).*/\1/p')
    L2OUT=$(echo "$line" | cut -d' ' -f3-)
}

# l2_step LABEL WANT_RC VERB TARGET [ARGS...]
l2_step() {
    local label=$1 want=$2
    shift 2
    l2 300 "$@"
    echo "@@INFO $SCEN nested $label rc=$L2RC $(echo "$L2OUT" | cut -c1-200)"
    [ "$L2RC" = "$want" ] || fail "nested $label [$*]: expected rc=$want, got rc=$L2RC: $L2OUT"
}

# e2e_registered NEXUS... KEY: the device state with KEY registered on each
# NEXUS (sorted, as dev_state prints it).
e2e_registered() {
    local k out="" n
    eval "k=\${$#}"
    while [ $# -gt 1 ]; do out="$out${out:+ }$1:$k"; shift; done
    echo "$out"
}

# e2e_held NEXUS... KEY: as e2e_registered with a type 5 reservation held
# through any one of the nexuses: the alternatives, |-separated.
e2e_held() {
    local k all alt="" n
    eval "k=\${$#}"
    all=$(e2e_registered "$@")
    for n in $all; do
        alt="$alt${alt:+|}$(echo " $all " | sed "s/ $n / $n:R5 /; s/^ //; s/ \$//")"
    done
    echo "$alt"
}

# e2e_no_caps NAME: the helper NAME holds no capability in any set.
e2e_no_caps() {
    local pid set v
    pid=$(sid_pid "$1")
    for set in CapInh CapPrm CapEff CapBnd CapAmb; do
        v=$(awk -v s="$set:" '$1 == s {print $2}' "/proc/$pid/status" 2>/dev/null)
        [ "$v" = 0000000000000000 ] || fail "helper $1 (pid $pid): $set [$v], want 0000000000000000"
    done
    echo "@@INFO $SCEN helper $1: $(grep -E '^(Uid|Gid|Cap[A-Za-z]*|NoNewPrivs|Seccomp):' "/proc/$pid/status" | tr -s '\t ' ' ' | tr '\n' ';')"
}

# e2e_cycle NAME TARGET KEY LU NEXUS...: the sg_persist cycle on one disk
# (a map: every path's nexus). READ FULL STATUS must succeed, or with
# E2E_RFS=refused get ILLEGAL REQUEST (sg_persist exit 5), as the PR ioctl
# executor answers it; with E2E_NOCAPS=HELPER that helper must hold no
# capability.
e2e_cycle() {
    local name=$1 t=$2 k=$3 lu=$4 nx
    shift 4
    nx=$*
    begin "e2e.$name" || return 0
    l2_step register 0 sgp "$t" -o -G -S "$k"
    # shellcheck disable=SC2086
    sid_expect "$lu" register "$(e2e_registered $nx "$k")"
    l2_step read-keys 0 sgp "$t" -i -k
    echo "$L2OUT" | grep -q "${k#0x}" || fail "nested READ KEYS did not list $k"
    l2_step reserve 0 sgp "$t" -o -R -K "$k" -T 5
    # shellcheck disable=SC2086
    sid_expect "$lu" reserve "$(e2e_held $nx "$k")"
    l2_step read-reservation 0 sgp "$t" -i -r
    echo "$L2OUT" | grep -q "${k#0x}" || fail "nested READ RESERVATION did not show $k"
    if [ "${E2E_RFS:-}" = refused ]; then
        l2_step read-full-status-refused 5 sgp "$t" -i -s
        echo "$L2OUT" | grep -qi "illegal request" || fail "nested READ FULL STATUS: want Illegal Request, got: $L2OUT"
    else
        l2_step read-full-status 0 sgp "$t" -i -s
        echo "$L2OUT" | grep -q "${k#0x}" || fail "nested READ FULL STATUS did not show $k"
    fi
    l2_step report-capabilities 0 sgp "$t" -i -c
    # With migrate-pr (on from machine type 11.0) QEMU masks SIP_C and ATP_C.
    case "$L2OUT" in
    *"(SIP_C): 0 "*"(ATP_C): 0 "*) ;;
    *) fail "REPORT CAPABILITIES in the nested guest: want SIP_C 0 and ATP_C 0 (migrate-pr), got: $L2OUT" ;;
    esac
    l2_step write 0 write "$t"
    l2_step release 0 sgp "$t" -o -L -K "$k" -T 5
    # shellcheck disable=SC2086
    sid_expect "$lu" release "$(e2e_registered $nx "$k")"
    l2_step unregister 0 sgp "$t" -o -G -K "$k" -S 0
    l2_step read-keys-after 0 sgp "$t" -i -k
    sid_expect "$lu" unregister "-"
    [ -n "${E2E_NOCAPS:-}" ] && e2e_no_caps "$E2E_NOCAPS"
    end
}

# sid_map_dev NAME: /dev/dm-N of the device-mapper map NAME.
sid_map_dev() {
    local d
    for d in /sys/block/dm-*; do
        [ "$(cat "$d/dm/name" 2>/dev/null)" = "$1" ] && { echo "/dev/${d##*/}"; return 0; }
    done
    return 1
}

# sid_maps: the two dm-multipath maps of LU C (mpsrc over nexus a and b,
# mpdst over c and d), made with dmsetup as multipathd would make them
# (uuid mpath-...): multipathd is not running yet, and sid_maps_remove takes
# them away before it starts (it would adopt them).
# sid_map NAME UUID NEXUS NEXUS: a two-path map NAME over those nexuses.
sid_map() {
    local size p1 p2
    eval "p1=\$PATH$3 p2=\$PATH$4"
    size=$(cat "/sys/block/${p1#/dev/}/size")
    p1=$(cat "/sys/block/${p1#/dev/}/dev")
    p2=$(cat "/sys/block/${p2#/dev/}/dev")
    DM_DISABLE_UDEV=1 dmsetup create --noudevsync -u "mpath-$2" "$1" \
        --table "0 $size multipath 0 0 1 1 service-time 0 2 1 $p1 1 $p2 1" || return 1
    echo "@@INFO sid map $1 $(sid_map_dev "$1") over $p1 $p2 (nexus $3 $4)"
}

# sid_maps: the maps of LU C (mpsrc over nexus a and b, mpdst over c and
# d) and of LU F (mpisrc over F1 and F2, mpidst over F3 and F4: through the
# PR ioctls), made with dmsetup as multipathd would make them (uuid
# mpath-...): multipathd is not running yet, and sid_maps_remove takes them
# away before it starts (it would adopt them).
sid_maps() {
    sid_map mpsrc 36001405tiersidsrc a b || return 1
    sid_map mpdst 36001405tiersiddst c d || return 1
    sid_map mpisrc 36001405tiersidisrc F1 F2 || return 1
    sid_map mpidst 36001405tiersididst F3 F4 || return 1
    MPSRC=$(sid_map_dev mpsrc) && MPDST=$(sid_map_dev mpdst) || return 1
    MPISRC=$(sid_map_dev mpisrc) && MPIDST=$(sid_map_dev mpidst) || return 1
}

sid_maps_remove() {
    local m n
    for m in mpsrc mpdst mpisrc mpidst; do
        n=0
        while [ $n -lt 30 ] && ! DM_DISABLE_UDEV=1 dmsetup remove --noudevsync "$m" 2>/dev/null; do
            dmsetup info "$m" >/dev/null 2>&1 || break
            sleep 1
            n=$((n + 1))
        done
    done
}

# sid_need NAME: the helper NAME (rs-root ...) runs, started if not yet.
sid_need() {
    local pid bin
    pid=$(sid_pid "$1")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && return 0
    case $1 in rs-*) bin=/usr/local/bin/rs-pr-helper ;; *) bin=/usr/bin/qemu-pr-helper ;; esac
    case $1 in
    rs-ioctl*) sid_start "$1" "$bin" user "--executor pr_ioctl" ;;
    *) sid_start "$1" "$bin" "$(echo "$1" | cut -d- -f2)" ;;
    esac
}

# helper_log_cmds NAME: our helper's log lines about commands (-v).
helper_log_cmds() {
    grep -iE 'PERSISTENT|PR (IN|OUT)|service action|sa=|REGISTER|RESERVE|PREEMPT|READ ' "/tmp/helper-$1.log" 2>/dev/null
}

sid_e2e() {
    local n ok=1
    begin e2e.boot || return 0
    for h in rs-root rs-user c-root c-user rs-ioctl; do sid_need "$h" || fail "helper $h did not start"; done
    sid_maps || fail "dmsetup could not make the maps of LU C"
    l2_qemu src "$PATH1@rs-root" "$PATH2@rs-user" "$PATH5@c-root" "$PATH6@c-user" "$MPSRC@rs-root" \
        "$PATHD1@rs-ioctl" "$MPISRC@rs-ioctl"
    # libvirt's domain boots its nested guest meanwhile (sid-libvirt.sh).
    case "sid.libvirt.managed" in *"$ONLY"*) sid_libvirt_start ;; esac
    l2_use src
    if ! l2_wait_ready "$SID_LIMIT_L2"; then
        fail "nested guest not ready within ${SID_LIMIT_L2}s; console tail: $(tr -d '\r' <"/tmp/nested-src.log" | tail -5 | tr '\n' '|' | tail -c 600)"
        ok=0
    fi
    if [ $ok = 1 ]; then
        n=$(qmp /tmp/qmp-src.sock '{"execute":"qom-get","arguments":{"path":"/machine/peripheral/sd0","property":"migrate-pr"}}' |
            grep '"return"' | tail -1)
        echo "@@INFO sid scsi-block migrate-pr (qom-get): $n"
        l2 60 ping 0 || { fail "nested guest does not answer: $L2OUT"; ok=0; }
    fi
    end
    [ $ok = 1 ] || { kill "$L2PID_src" 2>/dev/null; sleep 2; sid_maps_remove; return 0; }
    e2e_cycle rs-root 0 0x7001 0 1
    e2e_cycle rs-user 1 0x7002 0 2
    e2e_cycle c-root 2 0x7003 1 5
    e2e_cycle c-user 3 0x7004 1 6
    e2e_cycle rs-mpath 4 0x7005 2 a b
    E2E_RFS=refused
    E2E_NOCAPS=rs-ioctl
    e2e_cycle rs-ioctl 5 0x7006 3 1
    e2e_cycle rs-ioctl-mpath 6 0x7007 5 1 2
    E2E_RFS=""
    E2E_NOCAPS=""
    sid_migrate_plain
    [ "$L2NAME" = dst ] && sid_migrate_fail
    l2 60 off 0 || true
    n=0
    eval "pid=\$L2PID_$L2NAME"
    while [ $n -lt 60 ] && kill -0 "$pid" 2>/dev/null; do sleep 1; n=$((n + 1)); done
    for pid in "$L2PID_src" "${L2PID_dst:-}" "${L2PID_dst2:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null
    done
    for h in rs-root rs-user rs-user-dst rs-root-dst rs-ioctl rs-ioctl-dst; do
        [ -f "/tmp/helper-$h.log" ] || continue
        echo "@@INFO sid helper $h log: $(wc -l <"/tmp/helper-$h.log") lines"
    done
    # The maps go once no QEMU holds them open.
    for pid in "$L2PID_src" "${L2PID_dst:-}" "${L2PID_dst2:-}"; do
        n=0
        while [ -n "$pid" ] && [ $n -lt 30 ] && kill -0 "$pid" 2>/dev/null; do
            sleep 1
            n=$((n + 1))
        done
    done
    sid_maps_remove
}

# sid_write_expect N WANT_RC WHEN: WRITE(10) of one block at LBA 0 straight
# to nexus N; sg_raw exits 0 on GOOD, 24 on RESERVATION CONFLICT. Unit
# attentions (LIO queues one per PR event) are consumed by repeating the
# WRITE: on Linux 7.2 a WRITE through a preempted nexus still met one after
# lib.sh's TEST UNIT READY drain.
sid_write_expect() {
    local d i=0 rc
    [ -f /tmp/block ] || dd if=/dev/zero of=/tmp/block bs=512 count=1 2>/dev/null
    eval "d=\$SG$1"
    while :; do
        sg_raw -s 512 -i /tmp/block "$d" 2a 00 00 00 00 00 00 00 01 00 >/tmp/write.out 2>&1
        rc=$?
        [ "$rc" = 6 ] && [ $i -lt 8 ] || break
        i=$((i + 1))
    done
    [ "$rc" = "$2" ] || fail "write through nexus $1 after $3: sg_raw exit $rc, want $2: $(tr '\n' ' ' </tmp/write.out | cut -c1-200)"
}

# The migration with migrate-pr, plain paths (no multipath).
sid_migrate_plain() {
    local k=0x5a5a st t0 s ok=1 srcmark
    begin migrate.plain || return 0
    sid_need rs-user-dst || fail "rs-user-dst did not start"
    sid_need c-user-dst || fail "c-user-dst did not start"
    sid_need rs-root-dst || fail "rs-root-dst did not start"
    sid_need rs-ioctl-dst || fail "rs-ioctl-dst did not start"
    l2_step hold-register-ioctl 0 sgp 5 -o -G -S $k
    l2_step hold-reserve-ioctl 0 sgp 5 -o -R -K $k -T 5
    sid_expect 3 "hold (source, PR ioctls)" "1:$k:R5"
    l2_step hold-register-ioctl-map 0 sgp 6 -o -G -S $k
    l2_step hold-reserve-ioctl-map 0 sgp 6 -o -R -K $k -T 5
    sid_expect 5 "hold (source map, PR ioctls)" "$(e2e_held 1 2 $k)"
    l2_step hold-register-map 0 sgp 4 -o -G -S $k
    l2_step hold-reserve-map 0 sgp 4 -o -R -K $k -T 5
    sid_expect 2 "hold (source map)" "$(e2e_held a b $k)"
    l2_step hold-register-rs 0 sgp 1 -o -G -S $k
    l2_step hold-reserve-rs 0 sgp 1 -o -R -K $k -T 5
    l2_step hold-register-c 0 sgp 3 -o -G -S $k
    l2_step hold-reserve-c 0 sgp 3 -o -R -K $k -T 5
    sid_expect 0 "hold (source)" "2:$k:R5"
    sid_expect 1 "hold (source)" "6:$k:R5"
    srcmark=$(wc -l <"/tmp/helper-rs-user.log")
    l2_qemu dst "$PATH1@rs-root" "$PATH4@rs-user-dst" "$PATH5@c-root" "$PATH8@c-user-dst" \
        "$MPDST@rs-root-dst" "$PATHD2@rs-ioctl-dst" "$MPIDST@rs-ioctl-dst" -- -incoming unix:/tmp/mig.sock
    n=0
    while [ $n -lt 60 ] && [ ! -S /tmp/qmp-dst.sock ]; do sleep 1; n=$((n + 1)); done
    n=0
    while [ $n -lt 60 ] && [ ! -S /tmp/mig.sock ]; do sleep 1; n=$((n + 1)); done
    [ -S /tmp/mig.sock ] || fail "destination QEMU did not listen: $(head -c 400 /tmp/qemu-dst.out)"
    t0=$(e2e_now)
    echo "@@INFO $SCEN migrate: $(qmp /tmp/qmp-src.sock '{"execute":"migrate","arguments":{"uri":"unix:/tmp/mig.sock"}}' | grep -v QMP | tr '\n' ' ' | cut -c1-300)"
    st=""
    while [ $(($(e2e_now) - t0)) -lt 600 ]; do
        st=$(qmp /tmp/qmp-src.sock '{"execute":"query-migrate"}' | sed -n 's/.*"status": *"\([a-z-]*\)".*/\1/p' | tail -1)
        case "$st" in completed | failed | cancelled) break ;; esac
        sleep 3
    done
    echo "@@INFO $SCEN migration $st after $(($(e2e_now) - t0))s"
    [ "$st" = completed ] || { fail "migration ended [$st]: $(head -c 400 /tmp/qemu-dst.out)"; ok=0; }
    if [ $ok = 1 ]; then
        # The destination runs once it has the state; wait for its status.
        n=0
        while [ $n -lt 120 ]; do
            s=$(qmp /tmp/qmp-dst.sock '{"execute":"query-status"}' | sed -n 's/.*"status": *"\([a-z-]*\)".*/\1/p' | tail -1)
            [ "$s" = running ] && break
            sleep 2
            n=$((n + 2))
        done
        echo "@@INFO $SCEN destination status [$s]"
        qmp /tmp/qmp-src.sock '{"execute":"quit"}' >/dev/null
        l2_use dst
        l2 120 ping 0 || fail "the nested guest does not answer on the destination: $L2OUT"
        sid_expect 0 "migration (LU A: ours)" "4:$k:R5"
        sid_expect 1 "migration (LU B: C helper)" "8:$k:R5"
        sid_write_expect 2 24 "migration (source nexus, ours)"
        sid_write_expect 6 24 "migration (source nexus, C helper)"
        sid_write_expect 4 0 "migration (destination nexus, ours)"
        l2_step dst-write-rs 0 write 1
        l2_step dst-write-c 0 write 3
        l2_step dst-read-reservation-rs 0 sgp 1 -i -r
        echo "$L2OUT" | grep -q 5a5a || fail "READ RESERVATION on the destination did not show $k"
        l2_step dst-read-reservation-c 0 sgp 3 -i -r
        echo "$L2OUT" | grep -q 5a5a || fail "READ RESERVATION (C) on the destination did not show $k"
        l2_step dst-release-rs 0 sgp 1 -o -L -K $k -T 5
        l2_step dst-unregister-rs 0 sgp 1 -o -G -K $k -S 0
        l2_step dst-release-c 0 sgp 3 -o -L -K $k -T 5
        l2_step dst-unregister-c 0 sgp 3 -o -G -K $k -S 0
        sid_expect 0 "cleanup" "-"
        sid_expect 1 "cleanup" "-"
    fi
    MIGRATED=$ok
    echo "@@INFO $SCEN source helper (rs-user) log lines during migration: $(($(wc -l <"/tmp/helper-rs-user.log") - srcmark))"
    sed -n "$((srcmark + 1)),\$p" /tmp/helper-rs-user.log | head -20 | sed "s/^/@@INFO $SCEN src-log: /" | cut -c1-300
    head -40 /tmp/helper-rs-user-dst.log | sed "s/^/@@INFO $SCEN dst-log: /" | cut -c1-300
    end
    sid_migrate_mpath
    sid_migrate_ioctl
}

# sid.migrate.ioctl: what the migration did on LU D through the PR ioctls.
sid_migrate_ioctl() {
    local k=0x5a5a
    begin migrate.ioctl || return 0
    [ "${MIGRATED:-0}" = 1 ] || { fail "the migration did not complete (see sid.migrate.plain)"; end; return; }
    sid_expect 3 "migration (LU D: PR ioctls)" "2:$k:R5"
    sid_write_expect D1 24 "migration (source nexus D1 fenced)"
    sid_write_expect D2 0 "migration (destination nexus D2)"
    l2_step dst-write-ioctl 0 write 5
    l2_step dst-read-reservation-ioctl 0 sgp 5 -i -r
    echo "$L2OUT" | grep -q 5a5a || fail "READ RESERVATION through the PR ioctls did not show $k"
    l2_step dst-release-ioctl 0 sgp 5 -o -L -K $k -T 5
    l2_step dst-unregister-ioctl 0 sgp 5 -o -G -K $k -S 0
    sid_expect 3 "cleanup" "-"
    # The map pair of LU F: QEMU's destination commands through mpidst,
    # each sent to its paths through the PR ioctls.
    sid_expect 5 "migration (LU F: maps, PR ioctls)" "$(e2e_held 3 4 $k)"
    sid_write_expect F1 24 "migration (source map path F1 fenced)"
    sid_write_expect F2 24 "migration (source map path F2 fenced)"
    sid_write_expect F3 0 "migration (destination map path F3)"
    sid_write_expect F4 0 "migration (destination map path F4)"
    l2_step dst-write-ioctl-map 0 write 6
    l2_step dst-read-reservation-ioctl-map 0 sgp 6 -i -r
    echo "$L2OUT" | grep -q 5a5a || fail "READ RESERVATION through the map and the PR ioctls did not show $k"
    l2_step dst-release-ioctl-map 0 sgp 6 -o -L -K $k -T 5
    l2_step dst-unregister-ioctl-map 0 sgp 6 -o -G -K $k -S 0
    sid_expect 5 "cleanup (maps)" "-"
    e2e_no_caps rs-ioctl-dst
    grep -E 'executor|PREEMPT|REGISTER|RESERVE|READ RES|APTPL' /tmp/helper-rs-ioctl-dst.log | head -12 |
        sed "s/^/@@INFO $SCEN dst-log: /" | cut -c1-300
    end
}

# sid.migrate.mpath: what the migration above did on LU C's maps.
sid_migrate_mpath() {
    local k=0x5a5a
    begin migrate.mpath || return 0
    [ "${MIGRATED:-0}" = 1 ] || { fail "the migration did not complete (see sid.migrate.plain)"; end; return; }
    sid_expect 2 "migration (LU C: maps)" "$(e2e_held c d $k)"
    sid_write_expect a 24 "migration (source map path a fenced)"
    sid_write_expect b 24 "migration (source map path b fenced)"
    sid_write_expect c 0 "migration (destination map path c)"
    sid_write_expect d 0 "migration (destination map path d)"
    l2_step dst-write-map 0 write 4
    l2_step dst-read-reservation-map 0 sgp 4 -i -r
    echo "$L2OUT" | grep -q 5a5a || fail "READ RESERVATION through the destination map did not show $k"
    l2_step dst-release-map 0 sgp 4 -o -L -K $k -T 5
    l2_step dst-unregister-map 0 sgp 4 -o -G -K $k -S 0
    sid_expect 2 "cleanup" "-"
    grep -E 'PREEMPT|REGISTER|RESERVE|READ RES' /tmp/helper-rs-root-dst.log | head -12 |
        sed "s/^/@@INFO $SCEN dst-log: /" | cut -c1-300
    end
}

# sid.migrate.fail: a migration that fails: the nested guest (now on the
# destination of sid.migrate.plain) holds a type 5 reservation through
# nexus 4 and 8; a third QEMU is started with -incoming on nexus 2 and 6 and
# killed while the migration runs (bandwidth limited so that it cannot
# finish first). The source must keep the reservation, the guest must go on
# writing, and the killed destination must have sent nothing.
sid_migrate_fail() {
    local k=0x6b6b st t0 n m1 s
    begin migrate.fail || return 0
    sid_need rs-user-dst2 || fail "rs-user-dst2 did not start"
    sid_need c-user-dst2 || fail "c-user-dst2 did not start"
    l2_step hold-register-rs 0 sgp 1 -o -G -S $k
    l2_step hold-reserve-rs 0 sgp 1 -o -R -K $k -T 5
    l2_step hold-register-c 0 sgp 3 -o -G -S $k
    l2_step hold-reserve-c 0 sgp 3 -o -R -K $k -T 5
    sid_expect 0 "hold (source)" "4:$k:R5"
    sid_expect 1 "hold (source)" "8:$k:R5"
    rm -f /tmp/mig2.sock
    l2_qemu dst2 "$PATH1@rs-root" "$PATH2@rs-user-dst2" "$PATH5@c-root" "$PATH6@c-user-dst2" \
        "$MPSRC@rs-root" "$PATHD1@rs-ioctl" "$MPISRC@rs-ioctl" -- -incoming unix:/tmp/mig2.sock
    n=0
    while [ $n -lt 60 ] && [ ! -S /tmp/mig2.sock ]; do sleep 1; n=$((n + 1)); done
    [ -S /tmp/mig2.sock ] || fail "the third QEMU did not listen: $(head -c 400 /tmp/qemu-dst2.out)"
    qmp /tmp/qmp-dst.sock '{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":4096}}' >/dev/null
    qmp /tmp/qmp-dst.sock '{"execute":"migrate","arguments":{"uri":"unix:/tmp/mig2.sock"}}' >/dev/null
    sleep 5
    st=$(qmp /tmp/qmp-dst.sock '{"execute":"query-migrate"}' | sed -n 's/.*"status": *"\([a-z-]*\)".*/\1/p' | tail -1)
    echo "@@INFO $SCEN before the kill: migration [$st]"
    [ "$st" = active ] || fail "migration not active before the kill: [$st]"
    kill -9 "$L2PID_dst2" 2>/dev/null
    t0=$(e2e_now)
    while [ $(($(e2e_now) - t0)) -lt 120 ]; do
        st=$(qmp /tmp/qmp-dst.sock '{"execute":"query-migrate"}' | sed -n 's/.*"status": *"\([a-z-]*\)".*/\1/p' | tail -1)
        case "$st" in failed | cancelled | completed) break ;; esac
        sleep 2
    done
    echo "@@INFO $SCEN after the kill: migration [$st]"
    [ "$st" = failed ] || fail "migration after the destination was killed: [$st], want failed"
    s=$(qmp /tmp/qmp-dst.sock '{"execute":"query-status"}' | sed -n 's/.*"status": *"\([a-z-]*\)".*/\1/p' | tail -1)
    [ "$s" = running ] || fail "the source QEMU is [$s] after the failed migration, want running"
    sid_expect 0 "failed migration" "4:$k:R5"
    sid_expect 1 "failed migration" "8:$k:R5"
    l2_step write-rs 0 write 1
    l2_step write-c 0 write 3
    l2_step read-reservation-rs 0 sgp 1 -i -r
    echo "$L2OUT" | grep -q 6b6b || fail "READ RESERVATION after the failed migration did not show $k"
    m1=$(grep -c 'command done' /tmp/helper-rs-user-dst2.log)
    [ "$m1" = 0 ] || fail "the killed destination's helper ran $m1 command(s)"
    l2_step release-rs 0 sgp 1 -o -L -K $k -T 5
    l2_step unregister-rs 0 sgp 1 -o -G -K $k -S 0
    l2_step release-c 0 sgp 3 -o -L -K $k -T 5
    l2_step unregister-c 0 sgp 3 -o -G -K $k -S 0
    sid_expect 0 "cleanup" "-"
    sid_expect 1 "cleanup" "-"
    end
}
