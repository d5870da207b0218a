# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=dash disable=SC3043
# shellcheck disable=SC2154,SC2034
# Scenarios, run once per backend (see lib.sh). Keys: this host 0x1111 (or
# 0xa1/0xb2 per path), the other node 0x3333 (nexus 3, driven directly).

# Replies that may legitimately differ between our helper and the C helper:
# "scenario-name|reason", one per line.
ALLOW_DIFF="
multipath|Debian's C helper is built without libmpathpersist: on a dm-multipath device it passes REGISTER to the active path only, ours registers every path
"

# Replies of the emulated device (emu) that may differ from LIO's (rs, the
# helper under test passing LIO's replies through): "scenario|step|reason",
# one per line; the scenario may be a shell pattern. Masked everywhere, not
# listed: PRGENERATION, and in READ FULL STATUS the relative target port
# identifiers (LIO: one port per tcm_loop nexus; emulator: port 1) and the
# SAS addresses of the TransportIDs (compared by nexus).
EMU_DIFF="
reserve-type*|release-wrong-type|RELEASE of another type: the emulator answers ILLEGAL REQUEST / INVALID RELEASE OF PERSISTENT RESERVATION as SPC-4 says, LIO RESERVATION CONFLICT
alloc-length|alloc-s-c|READ FULL STATUS cut by the allocation length (12 bytes): the emulator keeps ADDITIONAL LENGTH at the full list and returns the first bytes of the first descriptor as SPC-4 says, LIO counts only the descriptors that fit (0) and returns the header alone
alloc-length|alloc-c-4|PR IN with an allocation length below 8: SPC-4 allows it and the emulator returns the first bytes, LIO answers INVALID FIELD IN CDB
"
# emu_allowed SCENARIO STEP: the reason when the difference is allowed.
emu_allowed() {
    echo "$EMU_DIFF" | while IFS='|' read -r sc st why; do
        [ -n "$sc" ] || continue
        # shellcheck disable=SC2254
        case "$1" in $sc) [ "$st" = "$2" ] && echo "$why" ;; esac
    done
}

# Scenarios expected to fail for a known, documented reason:
# "backend.scenario|reason", one per line. Reported as XFAIL (with their
# details), not counted as failures; one that passes asks to be removed.
KNOWN_FAIL="
"

. /etc/tier-path-failures.sh

# TransportID of nexus 3's initiator (tcm_loop speaks SAS) and its relative target port, for
# REGISTER AND MOVE.
TID3_LIO=sas,${INIT3#naa.}
RTPI3_LIO=3
# ... and on the emulated device (uid 3's SAS address, the one target port).
TID3_EMU=sas,5000000100000003
RTPI3_EMU=1

sc_register() {
    begin "$B.register" || return 0
    reset_lu
    step register 0 -o -G -S 0x1111 "$PATH1"
    expect_state register "1:0x1111"
    step register-wrong-key 24 -o -G -K 0x9999 -S 0x2222 "$PATH1"
    expect_state register-wrong-key "1:0x1111"
    step change-key 0 -o -G -K 0x1111 -S 0x1212 "$PATH1"
    expect_state change-key "1:0x1212"
    step unregister 0 -o -G -K 0x1212 -S 0 "$PATH1"
    expect_state unregister "-"
    end
}

sc_register_ignore() {
    begin "$B.register-ignore" || return 0
    reset_lu
    step register 0 -o -G -S 0x1111 "$PATH1"
    step register-ignore 0 -o -I -S 0x2222 "$PATH1"
    expect_state register-ignore "1:0x2222"
    step register-ignore-unreg 0 -o -I -S 0 "$PATH1"
    expect_state register-ignore-unreg "-"
    end
}

sc_reserve() {
    for t in 1 3 5 6 7 8; do
        begin "$B.reserve-type$t" || continue
        reset_lu
        step register 0 -o -G -S 0x1111 "$PATH1"
        step reserve 0 -o -R -K 0x1111 -T $t "$PATH1"
        expect_state reserve "1:0x1111:R$t"
        step read-reservation 0 -i -r "$PATH1"
        step reserve-again 0 -o -R -K 0x1111 -T $t "$PATH1"
        # LIO answers RESERVATION CONFLICT here (SPC-4 would have CHECK
        # CONDITION, INVALID RELEASE OF PERSISTENT RESERVATION).
        step release-wrong-type 24 -o -L -K 0x1111 -T $((t == 1 ? 3 : 1)) "$PATH1"
        expect_state release-wrong-type "1:0x1111:R$t"
        step release 0 -o -L -K 0x1111 -T $t "$PATH1"
        expect_state release "1:0x1111"
        end
    done
}

sc_clear() {
    begin "$B.clear" || return 0
    reset_lu
    step register 0 -o -G -S 0x1111 "$PATH1"
    other -o -G -S 0x3333
    step reserve 0 -o -R -K 0x1111 -T 1 "$PATH1"
    expect_state reserve "1:0x1111:R1 3:0x3333"
    step clear 0 -o -C -K 0x1111 "$PATH1"
    expect_state clear "-"
    end
}

sc_preempt() {
    begin "$B.preempt" || return 0
    reset_lu
    other -o -G -S 0x3333
    other -o -R -K 0x3333 -T 1
    step register 0 -o -G -S 0x1111 "$PATH1"
    step preempt 0 -o -P -K 0x1111 -S 0x3333 -T 1 "$PATH1"
    expect_state preempt "1:0x1111:R1"
    other -o -G -S 0x3333
    step preempt-registration 0 -o -P -K 0x1111 -S 0x3333 -T 1 "$PATH1"
    expect_state preempt-registration "1:0x1111:R1"
    end
}

sc_register_move() {
    begin "$B.register-move" || return 0
    reset_lu
    step register 0 -o -G -S 0x1111 "$PATH1"
    step reserve 0 -o -R -K 0x1111 -T 1 "$PATH1"
    step move 0 -o -M -K 0x1111 -S 0x4444 -T 1 -X "$TID3" -Q "$RTPI3" "$PATH1"
    expect_state move "1:0x1111 3:0x4444:R1"
    reset_lu
    step register-2 0 -o -G -S 0x1111 "$PATH1"
    step reserve-2 0 -o -R -K 0x1111 -T 3 "$PATH1"
    step move-unreg 0 -o -M -K 0x1111 -S 0x4444 -T 3 -X "$TID3" -Q "$RTPI3" -U "$PATH1"
    expect_state move-unreg "3:0x4444:R3"
    end
}

# Every PR IN service action; through a helper the payload must equal what
# the device returns to sg_raw on the same nexus.
sc_prin() {
    begin "$B.pr-in" || return 0
    reset_lu
    step register 0 -o -G -S 0x1111 "$PATH1"
    other -o -G -S 0x3333
    step reserve 0 -o -R -K 0x1111 -T 5 "$PATH1"
    for sa in 0:read-keys:-k 1:read-reservation:-r 2:report-capabilities:-c 3:read-full-status:-s; do
        n=${sa%%:*}
        l=${sa#*:}
        f=${l#*:}
        l=${l%:*}
        step "$l" 0 -i "$f" "$PATH1"
        if [ "$B" != direct ] && [ "$RC" = 0 ]; then
            got=$(json_field payload)
            want=$(prin_raw "$SG1" "0$n" 8192)
            [ "$got" = "$want" ] || fail "$l: payload [$got] differs from the device's own reply [$want]"
        fi
    done
    # --status: the same state in one table; the other node's TransportID
    # reads back as -X spells it.
    if [ "$B" != direct ]; then
        drain 1
        pr_cmd --status "$PATH1"
        [ "$RC" = 0 ] || fail "--status: exit $RC: $OUT"
        for want in '"source":"READ FULL STATUS"' '"key":"0x1111","holder":true' \
            '"key":"0x3333","holder":false' "\"transport_id_text\":\"$TID3\""; do
            case $OUT in *"$want"*) ;; *) fail "--status: no [$want] in $OUT" ;; esac
        done
    fi
    expect_state pr-in "1:0x1111:R5 3:0x3333"
    end
}

sc_alloc_length() {
    begin "$B.alloc-length" || return 0
    reset_lu
    step register 0 -o -G -S 0x1111 "$PATH1"
    other -o -G -S 0x3333
    step reserve 0 -o -R -K 0x1111 -T 1 "$PATH1"
    # LIO refuses REPORT CAPABILITIES with less than 8 bytes (CHECK CONDITION,
    # INVALID FIELD IN CDB, exit 5): the sense must come through unchanged.
    # Allocation lengths are hex, as with sg_persist: c = 12 bytes.
    for c in k:8:0 k:c:0 r:8:0 r:c:0 s:c:0 c:4:5; do
        f=${c%%:*}
        a=${c#*:}
        w=${a#*:}
        a=${a%:*}
        step "alloc-$f-$a" "$w" -i "-$f" --alloc-length "$a" "$PATH1"
        if [ "$B" != direct ] && [ "$RC" = 0 ]; then
            # The device may send less than asked (LIO puts no partial
            # descriptor into READ FULL STATUS): compare with its own reply.
            p=$(json_field payload)
            case $f in k) n=00 ;; r) n=01 ;; c) n=02 ;; s) n=03 ;; esac
            d=$(prin_raw "$SG1" "$n" $((0x$a)))
            [ "$p" = "$d" ] || fail "alloc-$f-$a: payload [$p], the device itself answers [$d]"
            [ ${#p} -le $((0x$a * 2)) ] || fail "alloc-$f-$a: payload is $((${#p} / 2)) bytes, more than 0x$a"
        fi
    done
    end
}

sc_conflict() {
    begin "$B.conflict" || return 0
    reset_lu
    other -o -G -S 0x3333
    other -o -R -K 0x3333 -T 3
    step register 0 -o -G -S 0x1111 "$PATH1"
    step reserve-held-elsewhere 24 -o -R -K 0x1111 -T 1 "$PATH1"
    step release-not-holder 0 -o -L -K 0x1111 -T 3 "$PATH1"
    step read-reservation 0 -i -r "$PATH1"
    step unregistered-path-reserve 24 -o -R -K 0x1111 -T 3 "$PATH2"
    expect_state conflict "1:0x1111 3:0x3333:R3"
    end
}

sc_wrong_key() {
    begin "$B.wrong-key" || return 0
    reset_lu
    step register 0 -o -G -S 0x1111 "$PATH1"
    step reserve-wrong-key 24 -o -R -K 0x9999 -T 1 "$PATH1"
    step clear-wrong-key 24 -o -C -K 0x9999 "$PATH1"
    step preempt-wrong-key 24 -o -P -K 0x9999 -S 0x1111 -T 1 "$PATH1"
    expect_state wrong-key "1:0x1111"
    end
}

# Two clients, one per path of this host, race for one reservation.
sc_contend() {
    begin "$B.contend" || return 0
    for round in 1 2 3; do
        reset_lu
        step "register-a-$round" 0 -o -G -S 0xa1 "$PATH1"
        step "register-b-$round" 0 -o -G -S 0xb2 "$PATH2"
        drain 1 2
        (pr_cmd -o -R -K 0xa1 -T 1 "$PATH1"; echo "$RC" >/tmp/rc.a) &
        pa=$!
        (pr_cmd -o -R -K 0xb2 -T 1 "$PATH2"; echo "$RC" >/tmp/rc.b) &
        pb=$!
        wait $pa $pb
        touched 1 2
        ra=$(cat /tmp/rc.a)
        rb=$(cat /tmp/rc.b)
        case "$ra-$rb" in
        0-24) expect_state "round $round (path 1 won)" "1:0xa1:R1 2:0xb2" ;;
        24-0) expect_state "round $round (path 2 won)" "1:0xa1 2:0xb2:R1" ;;
        *) fail "round $round: exit codes $ra and $rb, want one 0 and one 24 (state $(dev_state))" ;;
        esac
    done
    end
}

# The same LU through dm-multipath over paths 1 and 2. A helper that knows
# multipath registers the key on every path and sends RESERVE/RELEASE to a
# path that makes them take effect. Without that knowledge (sg_persist, and
# Debian's C helper, built without libmpathpersist) dm-multipath forwards each
# ioctl to whichever path it picks, so only the first REGISTER is checked.
# Through our helper, each item of the multipath acceptance list is checked
# on the device itself (READ FULL STATUS has one registration per nexus).
sc_multipath() {
    [ "$B" = emu ] && return 0   # the emulator has no paths
    begin "$B.multipath" || return 0
    reset_lu
    if [ "$B" != rs ]; then
        step register 0 -o -G -S 0x1111 "$MPATH"
        expect_state register "1:0x1111|2:0x1111"
        note "(not multipath-aware: one path registered, rest not checked)"
        reset_lu
        end
        return 0
    fi
    # (a) REGISTER registers both paths.
    step register 0 -o -G -S 0x1111 "$MPATH"
    expect_state register "1:0x1111 2:0x1111"
    # (b) Write Exclusive - Registrants Only: both paths write, the other
    # node conflicts.
    step reserve 0 -o -R -K 0x1111 -T 5 "$MPATH"
    expect_state reserve "1:0x1111:R5 2:0x1111|1:0x1111 2:0x1111:R5"
    write_expect 1 0 "reserve type 5"
    write_expect 2 0 "reserve type 5"
    write_expect 3 24 "reserve type 5"
    step read-keys 0 -i -k "$MPATH"
    step read-reservation 0 -i -r "$MPATH"
    step read-full-status 0 -i -s "$MPATH"
    step release 0 -o -L -K 0x1111 -T 5 "$MPATH"
    expect_state release "1:0x1111 2:0x1111"
    step reserve-1 0 -o -R -K 0x1111 -T 1 "$MPATH"
    step clear 0 -o -C -K 0x1111 "$MPATH"
    expect_state clear "-"
    # (c) One PREEMPT from the other node removes both paths' registrations.
    step register-c 0 -o -G -S 0x1111 "$MPATH"
    step reserve-c 0 -o -R -K 0x1111 -T 5 "$MPATH"
    other -o -G -S 0x3333
    other -o -P -K 0x3333 -S 0x1111 -T 5
    expect_state "preempt by the other node" "3:0x3333:R5"
    reset_lu
    # (d) RELEASE releases when the holder is the other path.
    step register-d 0 -o -G -S 0x1111 "$MPATH"
    on_nexus 2 -o -R -K 0x1111 -T 1
    expect_state "reserve directly through path 2" "1:0x1111 2:0x1111:R1"
    step release-d 0 -o -L -K 0x1111 -T 1 "$MPATH"
    expect_state "release of path 2's reservation" "1:0x1111 2:0x1111"
    # (e) A path offline before the command: the other path serves it.
    # Path 1 is the one tried first, so it is the one taken offline.
    drain 1 2
    echo offline >"/sys/block/${PATH1#/dev/}/device/state"
    step reserve-e 0 -o -R -K 0x1111 -T 5 "$MPATH"
    step read-keys-e 0 -i -k "$MPATH"
    echo running >"/sys/block/${PATH1#/dev/}/device/state"
    expect_state "reserve with path 1 offline" "1:0x1111 2:0x1111:R5"
    step release-e 0 -o -L -K 0x1111 -T 5 "$MPATH"
    expect_state release-e "1:0x1111 2:0x1111"
    reset_lu
    # (f) REGISTER refused on one path (registered there with another key):
    # the path that accepted it is rolled back.
    on_nexus 2 -o -G -S 0x2222
    step register-f 24 -o -G -S 0x1111 "$MPATH"
    expect_state "register refused on path 2" "2:0x2222"
    reset_lu
    # (g) Unregistering through the map removes both registrations.
    step register-g 0 -o -G -S 0x1111 "$MPATH"
    expect_state register-g "1:0x1111 2:0x1111"
    step unregister 0 -o -G -K 0x1111 -S 0 "$MPATH"
    expect_state unregister "-"
    end
}

# The daemon starts as in production and drops to nobody:disk.
sc_helper_start() {
    begin "$B.helper-start" || return 0
    eval "pid=\$HELPER_PID_$B"
    if [ ! -S "/run/pr-$B.sock" ]; then
        fail "no socket /run/pr-$B.sock; helper log: $(head -c 400 "/tmp/helper-$B.log" | tr '\n' ' ')"
    else
        # The socket exists before the privilege drop: give it a moment.
        i=0
        while [ $i -lt 20 ]; do
            uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
            [ "$uid" = 65534 ] && break
            usleep 100000
            i=$((i + 1))
        done
        cap=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        [ "$uid" = 65534 ] || fail "helper runs as uid [$uid], want 65534 (nobody)"
        note "uid=$uid CapEff=$cap"
    fi
    end
}

# After every scenario the helper must still be running and serving: the
# release build's seccomp filter (default mode kill) let every command of the
# run through on a real device, multipath paths included.
sc_still_alive() {
    begin "$B.still-alive" || return 0
    reset_lu   # the same state for every backend
    eval "pid=\$HELPER_PID_$B"
    pstate=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    case "$pstate" in
    "" | Z | X) fail "helper pid $pid is gone (state [$pstate]); log: $(tail -c 400 "/tmp/helper-$B.log" | tr '\n' ' ')" ;;
    *)
        note "pid $pid state $pstate"
        step alive-read-keys 0 -i -k "$PATH1"
        ;;
    esac
    end
}

# Performance, information only (never a failure): BENCH_N READ KEYS on
# nexus 1, one program run each (as a VM's first command, or a cluster
# agent's), through backend $B; per-command wall time from /proc/uptime
# (10 ms resolution), read without forking. Prints
# "@@BENCH NAME n=N median_ms=M min_ms=A max_ms=B".
BENCH_N=50
BENCH_NAME=bench
sc_bench() {
    [ "$B" = emu ] && return 0
    [ -z "$ONLY" ] || [ "${BENCH_NAME#*"$ONLY"}" != "$BENCH_NAME" ] || return 0
    reset_lu
    pr_cmd -o -G -S 0x1111 "$PATH1"   # one key to read
    touched 1
    drain 1
    : >/tmp/bench.times
    i=0
    while [ $i -lt $BENCH_N ]; do
        read -r up _ </proc/uptime
        t0=${up%.*}${up#*.}
        if [ "$B" = direct ]; then
            sg_persist -n -i -k "$SG1" >/dev/null 2>&1
        else
            qemu-pr-client --socket "/run/pr-$B.sock" -i -k "$PATH1" >/dev/null 2>&1
        fi
        read -r up _ </proc/uptime
        echo $(((${up%.*}${up#*.} - t0) * 10)) >>/tmp/bench.times
        i=$((i + 1))
    done
    sort -n /tmp/bench.times >/tmp/bench.sorted
    echo "@@BENCH read-keys-$B n=$BENCH_N median_ms=$(sed -n "$((BENCH_N / 2 + 1))p" /tmp/bench.sorted)" \
        "min_ms=$(head -1 /tmp/bench.sorted) max_ms=$(tail -1 /tmp/bench.sorted)"
    bench_repeat
    reset_lu
}

# The same READ KEYS BENCH_REPEAT times from one client process on the same
# block device: over one connection to helper $B, or (B=direct) with SG_IO
# in the client itself. Program start is out of the figure, so the helper's
# median over direct's is the helper's own cost. Prints
# "@@BENCHREP NAME n=N median_us=M p99_us=P min_us=A max_us=B".
BENCH_REPEAT=500
bench_repeat() {
    command -v qemu-pr-client >/dev/null 2>&1 || return 0
    if [ "$B" = direct ]; then
        qemu-pr-client --direct --repeat $BENCH_REPEAT -i -k "$PATH1" >/dev/null 2>/tmp/repeat.err
    else
        qemu-pr-client --socket "/run/pr-$B.sock" --repeat $BENCH_REPEAT -i -k "$PATH1" \
            >/dev/null 2>/tmp/repeat.err
    fi
    line=$(grep '^repeat ' /tmp/repeat.err)
    if [ -n "$line" ]; then
        echo "@@BENCHREP read-keys-$B ${line#repeat via=* }"
    else
        echo "@@BENCHREP read-keys-$B failed: $(head -c 200 /tmp/repeat.err | tr '\n' ' ')"
    fi
}

# QEMU as the client (--with-qemu). Counted: QEMU, paused before the guest
# runs, connects to the helper and negotiates (QMP query-pr-managers reports
# "connected": true). The nested guest that sends PR commands through QEMU
# is in guest/e2e.sh (--with-qemu-boot).
qemu_args() {
    echo "-accel tcg -m 256 -smp 1 -nodefaults -display none -no-reboot" \
        "-object pr-manager-helper,id=pr0,path=/run/pr-$B.sock" \
        "-blockdev node-name=disk0,driver=host_device,filename=$PATH1,pr-manager=pr0" \
        "-device virtio-scsi-pci,id=scsi0 -device scsi-block,drive=disk0,bus=scsi0.0"
}
sc_qemu() {
    [ "$WITH_QEMU" = 1 ] || return 0
    begin "$B.qemu-connect" || return 0
    reset_lu
    # shellcheck disable=SC2046
    (echo '{"execute":"qmp_capabilities"}'; sleep 3
        echo '{"execute":"query-pr-managers"}'; sleep 2
        echo '{"execute":"quit"}') |
        timeout 60 qemu-system-x86_64 $(qemu_args) -S -qmp stdio >/tmp/qmp.out 2>&1
    tr -d '\r\n' </tmp/qmp.out | grep -q '"connected": *true' ||
        fail "QEMU did not report pr0 connected: $(tr '\n' ' ' </tmp/qmp.out | tail -c 400)"
    end
}

scenarios() {
    mkdir -p "$RES/$B" "$RES/$B.masked"
    if [ "$B" = emu ]; then
        TID3=$TID3_EMU RTPI3=$RTPI3_EMU
    else
        TID3=$TID3_LIO RTPI3=$RTPI3_LIO
    fi
    sc_register
    sc_register_ignore
    sc_reserve
    sc_clear
    sc_preempt
    sc_register_move
    sc_prin
    sc_alloc_length
    sc_conflict
    sc_wrong_key
    sc_contend
    sc_multipath
    pf_scenarios
    case $B in rs | c) sc_qemu ;; esac
}

compare() {
    for f in "$RES"/rs/*; do
        [ -f "$f" ] || continue
        n=${f##*/}
        begin "compare.$n" || continue
        if [ ! -f "$RES/c/$n" ]; then
            fail "no C helper result"
        elif ! diff "$RES/c/$n" "$f" >/tmp/diff.out 2>&1; then
            reason=$(echo "$ALLOW_DIFF" | sed -n "s/^$n|//p")
            if [ -n "$reason" ]; then
                note "(differs, allowed: $reason)"
            else
                grep '^[-+][^-+]' /tmp/diff.out | head -20 >/tmp/diff.lines
                while read -r line; do
                    case "$line" in
                    -*) fail "C helper: ${line#-}" ;;
                    +*) fail "ours:     ${line#+}" ;;
                    esac
                done </tmp/diff.lines
            fi
        fi
        end
    done
}

# The emulated device against LIO: every step's exit code, status, sense and
# payload (masked, see EMU_DIFF) through the emulator equals the same step's
# through our helper on the real LU. Steps run in the same order on both, so
# the replies are compared line by line.
compare_emu() {
    for f in "$RES"/emu.masked/*; do
        [ -f "$f" ] || continue
        n=${f##*/}
        begin "compare-emu.$n" || continue
        l="$RES/rs.masked/$n"
        if [ ! -f "$l" ]; then
            fail "no result through LIO"
            end
            continue
        fi
        [ "$(wc -l <"$f")" = "$(wc -l <"$l")" ] || fail "$(wc -l <"$f") steps on the emulator, $(wc -l <"$l") on LIO"
        i=0
        while read -r e; do
            i=$((i + 1))
            r=$(sed -n "${i}p" "$l")
            [ "$e" = "$r" ] && continue
            why=$(emu_allowed "$n" "${e%% *}")
            if [ -n "$why" ]; then
                note "(${e%% *} differs, allowed)"
                echo "@@INFO emu-diff $n ${e%% *}: LIO [${r#* }] emulator [${e#* }]"
            else
                fail "LIO:      $r"
                fail "emulator: $e"
            fi
        done <"$f"
        end
    done
}

# PREEMPT AND ABORT from one tcm_loop nexus against another hangs Debian's
# 6.1 kernel, so it runs only in a boot of its own (--with-preempt-abort).
preempt_abort() {
    reset_lu
    other -o -G -S 0x3333
    other -o -R -K 0x3333 -T 1
    sg_persist -n -o -G -S 0x1111 "$SG1" >/dev/null 2>&1
    echo "@@INFO pa: sending PREEMPT AND ABORT from nexus 1 against nexus 3"
    timeout 30 sg_persist -n -o -A -K 0x1111 -S 0x3333 -T 1 "$SG1" >/tmp/pa.out 2>&1
    echo "@@INFO pa: exit $? state $(dev_state) $(tr '\n' ' ' </tmp/pa.out)"
}

# prioctl-61.*: the PR ioctl executor on kernel 6.1, which has no
# IOC_PR_READ_RESERVATION (6.19) and lets only CAP_SYS_ADMIN use the PR OUT
# ioctls (6.5). auto: our helper run as nobody (no capability, so no
# CAP_SYS_RAWIO) probes, falls back to SG_IO and says why. pr_ioctl: started
# as root with -u nobody -g disk, it answers what docs/executors.md gives
# for the errno: the read ioctls' EINVAL (ENOTTY) INVALID FIELD IN CDB
# (INVALID COMMAND OPERATION CODE) to READ KEYS, READ RESERVATION and REPORT
# CAPABILITIES, PR OUT's EPERM INVALID COMMAND OPERATION CODE, READ FULL
# STATUS refused before any ioctl; the LU stays untouched.
sc_prioctl_61() {
    local pid i line sense rk
    [ "$HAVE_CLIENT" = 1 ] && [ "$HAVE_HELPER" = 1 ] || return 0
    if begin prioctl-61.auto; then
        mkdir -p /tmp/pe61
        chown nobody /tmp/pe61
        rm -f /tmp/pe61/auto.sock
        # busybox su passes nothing after -c's argument: the command is one string.
        su -s /bin/sh nobody -c 'exec /usr/bin/rs-pr-helper -v --seccomp log --executor auto -k /tmp/pe61/auto.sock' \
            >/tmp/helper-pe61-auto.log 2>&1 &
        pid=$!
        i=0
        while [ $i -lt 50 ] && [ ! -S /tmp/pe61/auto.sock ]; do usleep 100000; i=$((i + 1)); done
        grep -E '^(Uid|CapPrm|CapEff):' "/proc/$pid/status" | tr '\t' ' ' | sed 's/^/@@INFO prioctl-61.auto /'
        [ "$(awk '/^CapPrm:/ {print $2}' "/proc/$pid/status")" = 0000000000000000 ] ||
            fail "the helper holds capabilities: $(grep ^CapPrm: "/proc/$pid/status")"
        OUT=$(qemu-pr-client --socket /tmp/pe61/auto.sock --json -i -k "$PATH1" 2>&1)
        echo "@@INFO prioctl-61.auto READ KEYS: $OUT"
        line=$(grep 'first command on this device' /tmp/helper-pe61-auto.log | head -1)
        echo "@@INFO prioctl-61.auto log: ${line#*interface: }"
        echo "$line" | grep -q 'executor="\{0,1\}sg_io' || fail "auto did not fall back to SG_IO: [$line]"
        echo "$line" | grep -q 'IOC_PR_READ_RESERVATION is refused' || fail "the log does not say why: [$line]"
        kill "$pid" 2>/dev/null
        end
    fi
    if begin prioctl-61.pr_ioctl; then
        rm -f /run/pr-pe61.sock
        /usr/bin/rs-pr-helper -v --executor pr_ioctl -k /run/pr-pe61.sock -u nobody -g disk \
            >/tmp/helper-pe61.log 2>&1 &
        pid=$!
        i=0
        while [ $i -lt 50 ] && [ ! -S /run/pr-pe61.sock ]; do usleep 100000; i=$((i + 1)); done
        B=pe61
        reset_lu
        pr_cmd -i -k "$PATH1"
        sense=$(sense_hex)
        echo "@@INFO prioctl-61.pr_ioctl READ KEYS: $OUT"
        case "$RC:$(echo "$sense" | cut -c25-28)" in
        5:2400) grep -q 'PR ioctl failed errno=22' /tmp/helper-pe61.log || fail "INVALID FIELD IN CDB without EINVAL" ;;
        9:2000) grep -q 'PR ioctl failed errno=25' /tmp/helper-pe61.log || fail "INVALID COMMAND OPERATION CODE without ENOTTY" ;;
        *) fail "READ KEYS: exit $RC, sense [$sense], want ILLEGAL REQUEST 24h/00h (EINVAL) or 20h/00h (ENOTTY)" ;;
        esac
        rk="$RC:$sense"
        pr_cmd -i -r "$PATH1"
        echo "@@INFO prioctl-61.pr_ioctl READ RESERVATION: $OUT"
        [ "$RC:$(sense_hex)" = "$rk" ] || fail "READ RESERVATION: exit $RC [$OUT], want the answer READ KEYS got"
        pr_cmd -i -c "$PATH1"
        echo "@@INFO prioctl-61.pr_ioctl REPORT CAPABILITIES: $OUT"
        [ "$RC:$(sense_hex)" = "$rk" ] || fail "REPORT CAPABILITIES: exit $RC [$OUT], want the answer READ KEYS got"
        pr_cmd -o -G -S 0x6161 "$PATH1"
        echo "@@INFO prioctl-61.pr_ioctl REGISTER: $OUT"
        [ "$RC" = 9 ] && [ "$(sense_hex | cut -c25-28)" = 2000 ] ||
            fail "REGISTER: exit $RC [$OUT], want INVALID COMMAND OPERATION CODE (EPERM: CAP_SYS_ADMIN before 6.5)"
        pr_cmd -i -s "$PATH1"
        [ "$RC" = 5 ] && [ "$(sense_hex)" = 700005000000000a00000000240000cc0001 ] ||
            fail "READ FULL STATUS: exit $RC [$OUT], want INVALID FIELD IN CDB at byte 1, bit 4"
        expect_state "the pr_ioctl commands" "-"
        line=$(grep 'PR ioctls do not work on this device' /tmp/helper-pe61.log | head -1)
        echo "@@INFO prioctl-61.pr_ioctl log: ${line#*interface: }"
        [ -n "$line" ] || fail "no warning that the PR ioctls do not work on this device"
        grep -E '^(Uid|CapPrm|CapEff|CapBnd):' "/proc/$pid/status" | tr '\t' ' ' | sed 's/^/@@INFO prioctl-61.pr_ioctl /'
        [ "$(awk '/^CapPrm:/ {print $2}' "/proc/$pid/status")" = 0000000000000000 ] ||
            fail "the pr_ioctl helper holds capabilities: $(grep ^CapPrm: "/proc/$pid/status")"
        kill "$pid" 2>/dev/null
        end
    fi
    return 0
}

run_all() {
    if [ "$MODE" = preempt-abort ]; then
        preempt_abort
        return 0
    fi
    # The seccomp log pass runs only our helper, without the bench.
    if [ "$SECCOMP" != log ]; then
        B=direct
        scenarios
        sc_bench
    fi
    if [ "$HAVE_CLIENT" != 1 ]; then
        echo "@@RESULT helpers SKIP qemu-pr-client missing: helper scenarios not run"
    fi
    for B in $HELPERS; do
        bin=/usr/bin/$B-pr-helper
        if [ "$B" = emu ]; then
            bin=/usr/bin/rs-pr-helper
            : >"$EMU_LU"
            chmod 0666 "$EMU_LU"
        fi
        start_helper "$B" "$bin" || true
        sc_helper_start
        [ "$HAVE_CLIENT" = 1 ] || continue
        scenarios
        [ "$SECCOMP" = log ] || sc_bench
        sc_still_alive
        eval "kill \$HELPER_PID_$B" 2>/dev/null
    done
    case " $HELPERS " in *" rs "*) case " $HELPERS " in *" c "*)
        [ "$HAVE_CLIENT" = 1 ] && compare ;;
    esac ;; esac
    case " $HELPERS " in *" emu "*)
        [ "$HAVE_CLIENT" = 1 ] && compare_emu ;;
    esac
    [ "$SECCOMP" = log ] || sc_prioctl_61
    return 0
}
