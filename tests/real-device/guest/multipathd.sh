# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=dash disable=SC3043
# Variables set through eval (PATHn, SGn, DIRTYn, HELPER_PID_x) look unused/unassigned:
# shellcheck disable=SC2034,SC2154
# The multipathd boot (MODE=multipathd, sourced by /init after lib.sh): our
# helper beside Debian's own multipathd and udev, as in production. Five
# tcm_loop I_T nexuses to the one LU:
#   nexus 1     the observer: in no map (blacklisted); the device state is
#               read here (READ FULL STATUS), never through a helper; the
#               path failure checks also make it the other cluster node
#               (sg_persist straight to it)
#   nexus 2, 3  this host's paths: multipathd's map; the destination map of
#               the migration check
#   nexus 4, 5  the source host's paths in the migration check
# Every check runs twice: the helper as root ("root"), and started as root
# with -u nobody -g disk ("user"). Results are mpd.CHECK.PASS.

KNOWN_FAIL="
"
B=mpd
DIRTY4=1
DIRTY5=1
mkdir -p "$RES/mpd" "$RES/mpd.masked"

# The lib.sh helpers know three nexuses; this boot has five and two maps.
nexus_of() {
    case "$1" in
    "$PATH1" | "$SG1") echo 1 ;;
    "$PATH2" | "$SG2") echo 2 ;;
    "$PATH3" | "$SG3") echo 3 ;;
    "$PATH4" | "$SG4") echo 4 ;;
    "$PATH5" | "$SG5") echo 5 ;;
    "$SRC") echo 4 5 ;;
    *) echo 2 3 ;;
    esac
}
touched() {
    for x in 1 2 3 4 5; do
        case " $* " in *" $x "*) ;; *) eval "DIRTY$x=1" ;; esac
    done
}
drain() {
    [ $# -gt 0 ] || set -- 1 2 3 4 5
    for x in "$@"; do
        eval "dirty=\$DIRTY$x; d=\$SG$x"
        [ "$dirty" = 1 ] || continue
        i=0
        while [ $i -lt 5 ] && ! sg_turs "$d" >/dev/null 2>&1; do i=$((i + 1)); done
        eval "DIRTY$x=0"
    done
}

# map_dev NAME: /dev/dm-N of the device-mapper map NAME.
map_dev() {
    for d in /sys/block/dm-*; do
        [ "$(cat "$d/dm/name" 2>/dev/null)" = "$1" ] && { echo "/dev/${d##*/}"; return 0; }
    done
    return 1
}

# mpd (lib.sh) names multipathd so in its @@INFO lines.
MPD_LABEL="multipathd 0.9.4"

# expect_prkey WHEN WANT: multipathd's key for the map is WANT (0x... or none).
expect_prkey() {
    mpd getprkey map "$MAPNAME"
    case "$MPD_OUT" in
    "$2" | "$2:"*) ;;
    *) fail "multipathd getprkey after $1: want [$2], got [$MPD_OUT]" ;;
    esac
}

# expect_prstatus WHEN registered|unregistered
expect_prstatus() {
    mpd getprstatus map "$MAPNAME"
    case "$2:$MPD_OUT" in
    registered:registered | registered:set | registered:1) ;;
    unregistered:unregistered | unregistered:unset | unregistered:0) ;;
    *) fail "multipathd getprstatus after $1: want $2, got [$MPD_OUT]" ;;
    esac
}

# start_mpd_helper root|user: our helper on /run/pr-mpd.sock; its log is
# /tmp/helper-mpd.log (kept per start as /tmp/helper-mpd.N.log).
HELPER_STARTS=0
start_mpd_helper() {
    stop_mpd_helper
    rm -f /run/pr-mpd.sock
    HELPER_STARTS=$((HELPER_STARTS + 1))
    extra=""
    [ "$1" = user ] && extra="-u nobody -g disk"
    [ -n "$SECCOMP" ] && extra="$extra --seccomp $SECCOMP"
    # shellcheck disable=SC2086
    rs-pr-helper -k /run/pr-mpd.sock $extra >/tmp/helper-mpd.log 2>&1 &
    HELPER_PID_mpd=$!
    i=0
    while [ $i -lt 50 ] && [ ! -S /run/pr-mpd.sock ]; do
        usleep 100000
        i=$((i + 1))
    done
    # The socket exists before the privilege drop.
    i=0
    while [ "$1" = user ] && [ $i -lt 20 ]; do
        [ "$(awk '/^Uid:/ {print $2}' "/proc/$HELPER_PID_mpd/status" 2>/dev/null)" = 65534 ] && break
        usleep 100000
        i=$((i + 1))
    done
    [ -S /run/pr-mpd.sock ]
}
stop_mpd_helper() {
    [ -n "${HELPER_PID_mpd:-}" ] || return 0
    kill "$HELPER_PID_mpd" 2>/dev/null
    wait "$HELPER_PID_mpd" 2>/dev/null
    cp /tmp/helper-mpd.log "/tmp/helper-mpd.$HELPER_STARTS.log" 2>/dev/null
    HELPER_PID_mpd=""
}
# expect_helper_alive WHEN
expect_helper_alive() {
    expect_pid_alive "$HELPER_PID_mpd" /tmp/helper-mpd.log "$1"
}

# ---------------------------------------------------------------- multipathd
MPD_PID=""
start_mpd() {
    multipathd -d -s >>/tmp/multipathd.log 2>&1 &
    MPD_PID=$!
    i=0
    while [ $i -lt 60 ]; do
        timeout 10 multipathd show daemon >/dev/null 2>&1 && break
        sleep 1
        i=$((i + 1))
    done
    wait_map_ready
}
kill_mpd() {
    kill -9 "$MPD_PID" 2>/dev/null
    wait "$MPD_PID" 2>/dev/null
    MPD_PID=""
}
# wait_map_ready: multipathd shows both paths of the map active and ready.
wait_map_ready() {
    i=0
    while [ $i -lt 60 ]; do
        n=$(timeout 10 multipathd show paths format "%m %t %T" 2>/dev/null | grep -c "^$MAPNAME *active *ready")
        [ "$n" = 2 ] && return 0
        sleep 1
        i=$((i + 1))
    done
    echo "@@INFO multipathd paths: $(timeout 10 multipathd show paths format '%d %m %t %T' 2>&1 | tr '\n' ';')"
    return 1
}

# mpd_reset: an empty LU, and multipathd holding no key for the map.
mpd_reset() {
    reset_lu
    mpd unsetprkey map "$MAPNAME"
    mpd unsetprstatus map "$MAPNAME"
}

# ---------------------------------------------------------------- the checks
# 1. REGISTER through the helper on the map puts the key on every path, and
# multipathd learns it.
mpd_register() {
    begin "mpd.register.$P" || return 0
    mpd_reset
    step register 0 -o -G -S 0x1111 "$MAP"
    expect_state register "2:0x1111 3:0x1111"
    expect_prkey register 0x1111
    expect_prstatus register registered
    end
}

# 2. A path that lost its registration, removed and added back, gets the key
# again from multipathd.
mpd_readd() {
    begin "mpd.path-readd.$P" || return 0
    mpd_reset
    step register 0 -o -G -S 0x1111 "$MAP"
    on_nexus 3 -o -G -K 0x1111 -S 0
    expect_state "unregistering nexus 3 directly" "2:0x1111"
    dev=${PATH3#/dev/}
    mpd del path "$dev"
    [ "$MPD_OUT" = ok ] || fail "multipathd del path $dev: [$MPD_OUT]"
    mpd add path "$dev"
    [ "$MPD_OUT" = ok ] || fail "multipathd add path $dev: [$MPD_OUT]"
    touched 1
    i=0
    while [ $i -lt 30 ] && [ "$(dev_state)" != "2:0x1111 3:0x1111" ]; do
        sleep 1
        i=$((i + 1))
    done
    expect_state "multipathd del path/add path $dev" "2:0x1111 3:0x1111"
    note "(key back after ${i}s)"
    wait_map_ready || fail "path $dev not active again in the map"
    end
}

# 3. Unregistering through the helper removes the key everywhere, multipathd's
# too. A command multipathd does not know (0.9.4 has no setprhold) is logged
# once and never fails the PR command.
mpd_unregister() {
    begin "mpd.unregister.$P" || return 0
    mpd_reset
    step register 0 -o -G -S 0x1111 "$MAP"
    expect_prstatus register registered
    for r in 1 2; do
        step "reserve-$r" 0 -o -R -K 0x1111 -T 5 "$MAP"
        expect_state "reserve-$r" "2:0x1111:R5 3:0x1111|2:0x1111 3:0x1111:R5"
        step "release-$r" 0 -o -L -K 0x1111 -T 5 "$MAP"
        expect_state "release-$r" "2:0x1111 3:0x1111"
    done
    step unregister 0 -o -G -K 0x1111 -S 0 "$MAP"
    expect_state unregister "-"
    expect_prkey unregister none
    expect_prstatus unregister unregistered
    # Each command multipathd 0.9.4 does not know is logged once, though the
    # loop above sent each twice.
    for verb in setprhold unsetprhold; do
        n=$(grep -c "WARN.*command=$verb" /tmp/helper-mpd.log)
        [ "$n" = 1 ] || fail "helper log: $n warnings for $verb, want 1 (logged once): $(grep "command=$verb" /tmp/helper-mpd.log | head -3 | tr '\n' ' ' | cut -c1-400)"
    done
    grep 'setprhold' /tmp/helper-mpd.log | head -1 | cut -c1-300 | sed 's/^/@@INFO helper log: /'
    end
}

# 4. multipathd restarts while the helper runs, and starts only after the
# helper: the next REGISTER works on every path, the helper lives on, and the
# new multipathd knows the key.
mpd_restart() {
    begin "mpd.restart.$P" || return 0
    mpd_reset
    kill_mpd
    start_mpd || fail "multipathd did not come back with the map ready"
    step register-after-restart 0 -o -G -S 0x4444 "$MAP"
    expect_state "register after multipathd restarted" "2:0x4444 3:0x4444"
    expect_helper_alive "multipathd restarted"
    expect_prkey "register after multipathd restarted" 0x4444
    end

    begin "mpd.start-after-helper.$P" || return 0
    mpd_reset
    kill_mpd
    start_mpd_helper "$P" || fail "helper did not start"
    start_mpd || fail "multipathd did not come back with the map ready"
    step register-after-start 0 -o -G -S 0x5555 "$MAP"
    expect_state "register with multipathd started after the helper" "2:0x5555 3:0x5555"
    expect_helper_alive "multipathd started after the helper"
    expect_prkey "register with multipathd started after the helper" 0x5555
    end
}

# 5. QEMU's migrate-pr on multipath: the source map registers K and reserves
# type 5; the destination map registers K and PREEMPTs with RK = SARK = K.
# Both destination paths end registered, holding the type 5 reservation; the
# source paths are fenced.
mpd_migrate() {
    begin "mpd.migrate.$P" || return 0
    reset_lu
    k=0x5a5a
    step src-register 0 -o -G -S $k "$SRC"
    step src-reserve 0 -o -R -K $k -T 5 "$SRC"
    expect_state "source register, reserve" "4:$k:R5 5:$k|4:$k 5:$k:R5"
    step dst-register 0 -o -G -S $k "$DST"
    expect_state "destination register" "2:$k 3:$k 4:$k:R5 5:$k|2:$k 3:$k 4:$k 5:$k:R5"
    step dst-preempt 0 -o -P -K $k -S $k -T 5 "$DST"
    touched 2 3
    expect_state "destination PREEMPT RK=SARK=$k" "2:$k:R5 3:$k|2:$k 3:$k:R5"
    write_expect 4 24 "destination PREEMPT (source path 4 fenced)"
    write_expect 5 24 "destination PREEMPT (source path 5 fenced)"
    write_expect 2 0 "destination PREEMPT (destination path 2)"
    write_expect 3 0 "destination PREEMPT (destination path 3)"
    # Through the map, with dm left only one path, then only the other.
    for keep in 2 3; do
        other_path=$((5 - keep))
        eval "mm=\$MM$other_path"
        dmsetup message "$DST_NAME" 0 fail_path "$mm" || fail "dmsetup fail_path $mm"
        drain "$keep"
        sg_raw -s 512 -i /tmp/block "$DST" 2a 00 00 00 00 00 00 00 01 00 >/tmp/write.out 2>&1
        rc=$?
        [ $rc = 0 ] || fail "WRITE through the destination map on path $keep only: sg_raw exit $rc: $(tr '\n' ' ' </tmp/write.out | cut -c1-200)"
        dmsetup message "$DST_NAME" 0 reinstate_path "$mm" || fail "dmsetup reinstate_path $mm"
    done
    step dst-read-reservation 0 -i -r "$DST"
    p=$(json_field payload)
    if [ "$(echo "$p" | cut -c17-32)" != "0000000000005a5a" ] || [ "$(echo "$p" | cut -c43-44)" != 05 ]; then
        fail "READ RESERVATION through the destination: [$p], want key 0x5a5a type 5"
    fi
    reset_lu
    end
}

# ---------------------------------------------------------------- path failures
# A path of the map fails as an operator meets it (`echo offline` into its
# SCSI device state) and comes back (`running`); multipathd's checker fails
# it in dm and reinstates it. The device state is read on the observer.

# mpd_path N offline|running
mpd_path() {
    eval "_p=\$PATH$1"
    echo "$2" >"/sys/block/${_p#/dev/}/device/state" || fail "cannot set ${_p#/dev/} $2"
    eval "DIRTY$1=1"
}

# wait_dm N active|failed: multipathd shows nexus N's path in that dm state
# (bounded: multipathd's checker runs every second here).
wait_dm() {
    eval "_p=\$PATH$1"
    i=0
    while [ $i -lt 30 ]; do
        timeout 10 multipathd show paths format "%d %t" 2>/dev/null | grep -q "^${_p#/dev/} *$2" && return 0
        sleep 1
        i=$((i + 1))
    done
    fail "multipathd does not show ${_p#/dev/} $2: $(timeout 10 multipathd show paths format '%d %t' 2>&1 | tr '\n' ';')"
    return 1
}

# wait_state WANT WHEN: the device state becomes WANT (multipathd acts on
# its own time), else FAIL.
wait_state() {
    i=0
    while [ $i -lt 40 ] && [ "$(dev_state)" != "$1" ]; do
        sleep 1
        i=$((i + 1))
    done
    expect_state "$2" "$1"
    [ $i -lt 40 ] && note "(after ${i}s)"
}

# mpd_log_expect TEXT PATH: a WARN line of the helper's log since the mark
# says TEXT and names PATH.
mpd_log_mark() { LOG_MARK=$(wc -l </tmp/helper-mpd.log); }
mpd_log_expect() {
    tail -n +"$((LOG_MARK + 1))" /tmp/helper-mpd.log | grep WARN | grep "$1" | grep -q "$2" ||
        fail "helper log: no warning [$1] naming $2: $(tail -n +"$((LOG_MARK + 1))" /tmp/helper-mpd.log | tail -c 400 | tr '\n' ' ')"
}

# mpd_offline_holder: the map's path (2 or 3) that holds the reservation
# goes offline and dm sees it fail; sets h to that path and live to the
# other one. Fails the scenario and returns 1 when neither path holds it.
mpd_offline_holder() {
    st=$(dev_state)
    h=$(holder_of "$st")
    case $h in
    2 | 3) ;;
    *)
        fail "no holder among the map's paths after RESERVE: [$st]"
        return 1
        ;;
    esac
    live=$((5 - h))
    mpd_path "$h" offline
    wait_dm "$h" failed
}

# 6. RELEASE through the map while the path holding the reservation is
# offline: released, the other node (the observer) reserves, and the dead
# path, whose registration the move removed, gets the key back from
# multipathd when it returns.
mpd_release_dead_holder() {
    begin "mpd.release-dead-holder.$P" || return 0
    mpd_reset
    step register 0 -o -G -S 0x1111 "$MAP"
    step reserve 0 -o -R -K 0x1111 -T 1 "$MAP"
    mpd_offline_holder || { end; return 0; }
    eval "hdev=\${PATH$h#/dev/}"
    mpd_log_mark
    step release 0 -o -L -K 0x1111 -T 1 "$MAP"
    expect_state "RELEASE with the holder (path $h) offline" "$live:0x1111"
    mpd_log_expect "path was down" "$hdev"
    on_nexus 1 -o -G -S 0x3333
    on_nexus 1 -o -R -K 0x3333 -T 1
    expect_state "the other node's RESERVE" "1:0x3333:R1 $live:0x1111"
    mpd_path "$h" running
    wait_dm "$h" active
    wait_state "1:0x3333:R1 2:0x1111 3:0x1111" "path $h back: multipathd registers the map's key on it"
    wait_map_ready || fail "the map's paths are not both active again"
    end
}

# 7. A key change through the map while a path is offline: the live path
# takes the new key; the returning path gets the new key from multipathd,
# never the old one, and later commands through the map work.
mpd_key_change_dead_path() {
    begin "mpd.key-change-dead-path.$P" || return 0
    mpd_reset
    step register 0 -o -G -S 0x1111 "$MAP"
    mpd_path 3 offline
    wait_dm 3 failed
    step key-change 0 -o -G -K 0x1111 -S 0x2222 "$MAP"
    expect_state "key change with path 3 offline" "2:0x2222 3:0x1111"
    expect_prkey "key change with path 3 offline" 0x2222
    mpd_path 3 running
    wait_dm 3 active
    wait_state "2:0x2222 3:0x2222" "path 3 back: multipathd registers the new key on it"
    wait_map_ready || fail "the map's paths are not both active again"
    step later-key-change 0 -o -G -K 0x2222 -S 0x4444 "$MAP"
    expect_state "a later key change" "2:0x4444 3:0x4444"
    step later-reserve 0 -o -R -K 0x4444 -T 5 "$MAP"
    expect_state "a later RESERVE" "2:0x4444:R5 3:0x4444|2:0x4444 3:0x4444:R5"
    step later-release 0 -o -L -K 0x4444 -T 5 "$MAP"
    expect_state "a later RELEASE" "2:0x4444 3:0x4444"
    end
}

# 7b. A key change through the map while the path holding the
# reservation is offline: the reservation follows the new key to the live
# path; the returning path gets the new key from multipathd.
mpd_key_change_dead_holder() {
    begin "mpd.key-change-dead-holder.$P" || return 0
    mpd_reset
    step register 0 -o -G -S 0x1111 "$MAP"
    step reserve 0 -o -R -K 0x1111 -T 5 "$MAP"
    mpd_offline_holder || { end; return 0; }
    step key-change 0 -o -G -K 0x1111 -S 0x2222 "$MAP"
    expect_state "key change with the holder (path $h) offline" "$live:0x2222:R5"
    expect_prkey "key change with the holder offline" 0x2222
    mpd_path "$h" running
    wait_dm "$h" active
    want="2:0x2222:R5 3:0x2222"
    [ "$live" = 3 ] && want="2:0x2222 3:0x2222:R5"
    wait_state "$want" "path $h back: multipathd registers the new key on it"
    wait_map_ready || fail "the map's paths are not both active again"
    step release 0 -o -L -K 0x2222 -T 5 "$MAP"
    expect_state "RELEASE with the new key" "2:0x2222 3:0x2222"
    end
}

# 8. Unregistering through the map while a path is offline: GOOD, the live
# path is unregistered, multipathd forgets the key; the dead path keeps its
# registration when it returns (nothing unregisters it), and the helper's
# log names it with the command that removes it.
mpd_unregister_dead_path() {
    begin "mpd.unregister-dead-path.$P" || return 0
    mpd_reset
    step register 0 -o -G -S 0x1111 "$MAP"
    mpd_path 3 offline
    wait_dm 3 failed
    mpd_log_mark
    step unregister 0 -o -G -K 0x1111 -S 0 "$MAP"
    expect_state "unregister with path 3 offline" "3:0x1111"
    expect_prstatus "unregister with path 3 offline" unregistered
    mpd_log_expect "during the unregister" "${PATH3#/dev/}"
    mpd_path 3 running
    wait_dm 3 active
    expect_state "path 3 back" "3:0x1111"
    on_nexus 3 -o -G -K 0x1111 -S 0
    expect_state "path 3 unregistered as the log says" "-"
    wait_map_ready || fail "the map's paths are not both active again"
    end
}

# 9. A reservation the helper took through a path that is then removed
# from the map (as when a path is replaced) is still the map's: READ
# RESERVATION through the map shows it, RELEASE through the map moves it to
# the path left and releases it, and the path added back gets the key from
# multipathd. (A reservation taken outside the helper by a nexus that is not
# in the map is no evidence of being this host's: the other-host checks.)
mpd_replaced_path() {
    begin "mpd.replaced-path.$P" || return 0
    mpd_reset
    step register 0 -o -G -S 0x1111 "$MAP"
    step reserve 0 -o -R -K 0x1111 -T 1 "$MAP"
    st=$(dev_state)
    h=$(holder_of "$st")
    case $h in
    2 | 3) ;;
    *)
        fail "no holder among the map's paths after RESERVE: [$st]"
        end
        return 0
        ;;
    esac
    live=$((5 - h))
    eval "gone=\${PATH$h#/dev/}"
    mpd del path "$gone"
    [ "$MPD_OUT" = ok ] || fail "multipathd del path $gone: [$MPD_OUT]"
    step read-reservation 0 -i -r "$MAP"
    p=$(json_field payload)
    if [ "$(echo "$p" | cut -c17-32)" != "0000000000001111" ] || [ "$(echo "$p" | cut -c43-44)" != 01 ]; then
        fail "READ RESERVATION through the map: [$p], want key 0x1111 type 1"
    fi
    step release 0 -o -L -K 0x1111 -T 1 "$MAP"
    expect_state "RELEASE through the map of the removed path's reservation" "$live:0x1111"
    on_nexus 1 -o -G -S 0x3333
    on_nexus 1 -o -R -K 0x3333 -T 1
    expect_state "the other node's RESERVE" "1:0x3333:R1 $live:0x1111"
    mpd add path "$gone"
    [ "$MPD_OUT" = ok ] || fail "multipathd add path $gone: [$MPD_OUT]"
    touched 1
    wait_state "1:0x3333:R1 2:0x1111 3:0x1111" "path $gone added back: multipathd registers the map's key on it"
    wait_map_ready || fail "path $gone not active again in the map"
    end
}

# 10. A path dm has failed while its SCSI device still runs (multipathd
# `fail path`, which also stops its checker from reinstating it): the
# helper reads dm's view from multipathd and tries that path last, so the
# reservation lands on the path dm uses (without that view the path first
# in the map would take it), and a stale key on it does not fail a key
# change through the map.
mpd_dm_failed_path() {
    begin "mpd.dm-failed-path.$P" || return 0
    mpd_reset
    step register 0 -o -G -S 0x1111 "$MAP"
    expect_state register "2:0x1111 3:0x1111"
    # The path the helper tries first when dm's view is not known.
    first=$(printf '%s\n%s\n' "${PATH2#/dev/} 2" "${PATH3#/dev/} 3" | sort | head -1)
    n=${first#* }
    first=${first% *}
    other=$((5 - n))
    mpd fail path "$first"
    [ "$MPD_OUT" = ok ] || fail "multipathd fail path $first: [$MPD_OUT]"
    wait_dm "$n" failed
    mpd show paths raw format %d:%t
    note "(multipathd: $MPD_OUT; $first SCSI state $(cat "/sys/block/$first/device/state"))"
    [ "$(cat "/sys/block/$first/device/state")" = running ] || fail "$first is not running: the check needs only dm to have failed it"
    step reserve 0 -o -R -K 0x1111 -T 5 "$MAP"
    expect_state "RESERVE with $first failed in dm only" "$(
        [ "$other" = 2 ] && echo "2:0x1111:R5 3:0x1111" || echo "2:0x1111 3:0x1111:R5")"
    step release 0 -o -L -K 0x1111 -T 5 "$MAP"
    expect_state "RELEASE" "2:0x1111 3:0x1111"
    # The failed path missed a change (its key is stale): a key change
    # through the map is not failed by it, and leaves it as it was.
    on_nexus "$n" -o -G -K 0x1111 -S 0x7777
    mpd_log_mark
    step key-change 0 -o -G -K 0x1111 -S 0x2222 "$MAP"
    expect_state "key change with $first failed in dm and stale" "$(
        [ "$other" = 2 ] && echo "2:0x2222 3:0x7777" || echo "2:0x7777 3:0x2222")"
    mpd_log_expect "not registered with the map's key" "$first"
    mpd reinstate path "$first"
    [ "$MPD_OUT" = ok ] || fail "multipathd reinstate path $first: [$MPD_OUT]"
    wait_dm "$n" active
    wait_map_ready || fail "the map's paths are not both active again"
    end
}

# 11. Another host holds the reservation with the key this host's map is
# registered with (QEMU's migrate-pr registers one key on both hosts; some
# clusters use one key per cluster). The source map (nexus 4 and 5) is
# that host, through the same helper; the destination map (nexus 2 and 3)
# is this one. A key is no evidence of whose the reservation is: the
# destination's RELEASE is a non-holder's (GOOD, nothing changes), and its
# key change with a path down leaves the reservation where it is. The other
# host keeps its reservation and both its registrations, and writes.
mpd_other_host_same_key() {
    begin "mpd.other-host-same-key.$P" || return 0
    reset_lu
    k=0x5a5a
    step src-register 0 -o -G -S $k "$SRC"
    step src-reserve 0 -o -R -K $k -T 5 "$SRC"
    step dst-register 0 -o -G -S $k "$DST"
    held="2:$k 3:$k 4:$k:R5 5:$k|2:$k 3:$k 4:$k 5:$k:R5"
    expect_state "both hosts registered, the source holds" "$held"
    step dst-release 0 -o -L -K $k -T 5 "$DST"
    expect_state "the destination's RELEASE (both its paths up)" "$held"
    grep -q "left in place" /tmp/helper-mpd.log || fail "helper log: no line saying the reservation was left in place"
    echo offline >"/sys/block/${PATH3#/dev/}/device/state"
    DIRTY3=1
    step dst-release-path-down 0 -o -L -K $k -T 5 "$DST"
    expect_state "the destination's RELEASE with path 3 offline" "$held"
    step dst-key-change 0 -o -G -K $k -S 0x6b6b "$DST"
    expect_state "the destination's key change with path 3 offline" \
        "2:0x6b6b 3:$k 4:$k:R5 5:$k|2:0x6b6b 3:$k 4:$k 5:$k:R5"
    echo running >"/sys/block/${PATH3#/dev/}/device/state"
    write_expect 4 0 "the destination's RELEASEs and key change (source path 4)"
    write_expect 5 0 "the destination's RELEASEs and key change (source path 5)"
    reset_lu
    end
}

# ---------------------------------------------------------------- the boot
mpd_setup() {
    load_modules /etc/modules.order || return 1
    load_modules /etc/modules.mpd || return 1
    make_lu 5b1e5e00-71e2-4c0d-9a11-000000000001 || return 1
    for i in 1 2 3 4 5; do
        make_nexus $i || return 1
    done
    export PATH1 PATH2 PATH3 PATH4 PATH5 SG1 SG2 SG3 SG4 SG5
    for i in 2 3 4 5; do
        eval "d=\$PATH$i"
        eval "MM$i=$(cat "/sys/block/${d#/dev/}/dev")"
    done
    dd if=/dev/zero of=/tmp/block bs=512 count=1 2>/dev/null
}

# The migration's two maps, made with dmsetup before udev and multipathd run
# (multipathd would take over any map with an mpath- uuid).
migrate_maps() {
    size=$(cat "/sys/block/${PATH2#/dev/}/size")
    DM_DISABLE_UDEV=1 dmsetup create --noudevsync -u mpath-36001405tiersrc mpsrc \
        --table "0 $size multipath 0 0 1 1 service-time 0 2 1 $MM4 1 $MM5 1" || return 1
    DM_DISABLE_UDEV=1 dmsetup create --noudevsync -u mpath-36001405tierdst mpdst \
        --table "0 $size multipath 0 0 1 1 service-time 0 2 1 $MM2 1 $MM3 1" || return 1
    SRC=$(map_dev mpsrc) && DST=$(map_dev mpdst) || return 1
    DST_NAME=mpdst
    echo "@@INFO migration: source map $SRC over $MM4 $MM5, destination map $DST over $MM2 $MM3"
}

# udev gives the nodes their owner and mode; multipathd manages nexus 2 and 3.
start_udev_mpd() {
    /lib/systemd/systemd-udevd --daemon >/tmp/udevd.log 2>&1 || return 1
    udevadm trigger --action=add >/dev/null 2>&1
    udevadm settle --timeout=120 || echo "@@INFO udevadm settle timed out"
    cat >/etc/multipath.conf <<EOF
defaults {
    find_multipaths no
    user_friendly_names yes
    reservation_key file
    polling_interval 1
}
blacklist {
    devnode ".*"
}
blacklist_exceptions {
    devnode "^(${PATH2#/dev/}|${PATH3#/dev/})\$"
}
EOF
    multipathd -d -s -v3 >>/tmp/multipathd.log 2>&1 &
    MPD_PID=$!
    i=0
    MAPNAME=""
    while [ $i -lt 60 ]; do
        for d in /sys/block/dm-*; do
            case "$(cat "$d/dm/uuid" 2>/dev/null)" in mpath-*) MAPNAME=$(cat "$d/dm/name") ;; esac
        done
        [ -n "$MAPNAME" ] && break
        sleep 1
        i=$((i + 1))
    done
    if [ -z "$MAPNAME" ]; then
        sed 's/^/@@INFO multipathd: /' /tmp/multipathd.log | tail -40
        dmesg | tail -15 | sed 's/^/@@INFO dmesg: /'
        udevadm info "$PATH2" | sed 's/^/@@INFO udev: /'
        return 1
    fi
    MAP=$(map_dev "$MAPNAME")
    wait_map_ready || return 1
    udevadm settle --timeout=60
    echo "@@INFO multipathd map $MAPNAME $MAP: $(multipathd show paths format '%d %m %t %T' 2>&1 | tr '\n' ';')"
}

mpd_main() {
    mpd_setup || { echo "@@RESULT ${PFX}mpd.setup FAIL device setup failed"; return; }
    # Before udev, the nodes as udev would make them (the migration check's
    # helper drops to nobody:disk and opens the paths itself).
    chgrp disk /dev/sd? && chmod 0660 /dev/sd?
    if migrate_maps; then
        for P in root user; do
            start_mpd_helper $P || echo "@@INFO helper ($P) did not start: $(head -c 300 /tmp/helper-mpd.log)"
            mpd_migrate
            mpd_other_host_same_key
        done
        stop_mpd_helper
    else
        echo "@@RESULT ${PFX}mpd.migrate FAIL dmsetup could not make the maps"
    fi
    DM_DISABLE_UDEV=1 dmsetup remove --noudevsync mpsrc
    DM_DISABLE_UDEV=1 dmsetup remove --noudevsync mpdst

    # udev must be the one that makes the nodes (block and sg) root:disk 0660.
    chgrp root /dev/sd? /dev/sg? && chmod 0600 /dev/sd? /dev/sg?
    begin mpd.udev-multipathd
    start_udev_mpd || fail "udev and multipathd did not set the map up: $(tail -c 600 /tmp/multipathd.log | tr '\n' ';')"
    expect_disk_nodes "$PATH2" "$PATH3" "$SG2" "$SG3" "$MAP"
    end
    if [ -n "$MAPNAME" ]; then
        for P in root user; do
            start_mpd_helper $P || echo "@@INFO helper ($P) did not start: $(head -c 300 /tmp/helper-mpd.log)"
            mpd_register
            mpd_readd
            mpd_unregister
            mpd_restart
            mpd_release_dead_holder
            mpd_key_change_dead_path
            mpd_key_change_dead_holder
            mpd_unregister_dead_path
            mpd_replaced_path
            mpd_dm_failed_path
            stop_mpd_helper
        done
    fi
    # For the record: what this multipathd answers to the helper's commands.
    mpd getprkey map nosuchmap
    mpd setprkey map "$MAPNAME" key 0x9999
    mpd setprstatus map "$MAPNAME"
    mpd setprhold map "$MAPNAME"
    mpd unsetprhold map "$MAPNAME"
    mpd_reset
    kill_mpd
    [ "$SECCOMP" = log ] && seccomp_log_check
    return 0
}
