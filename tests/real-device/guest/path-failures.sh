# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=dash disable=SC3043
# Variables set through eval (DIRTYn, PATHn) look unused/unassigned:
# shellcheck disable=SC2034,SC2154
# Path failures under the multipath map dm-0 (main boot, our helper only:
# the C helper is not multipath-aware). A path fails as an operator meets
# it: `echo offline` into its SCSI device state, and `running` brings it
# back. dm-multipath is not told (no multipathd in this boot), so dm still
# lists the path active: the device fails, not dm's view of it. The device
# state is read with READ FULL STATUS through a nexus that is up
# ($STATE_NEXUS), never through the helper. Sourced by scenarios.sh.

# pf_path N offline|running: nexus N's SCSI device state.
pf_path() {
    eval "_p=\$PATH$1"
    echo "$2" >"/sys/block/${_p#/dev/}/device/state" || fail "cannot set ${_p#/dev/} $2"
    eval "DIRTY$1=1"
}

# dm_path_states: "MAJ:MIN STATE " for each path of mpatha, as dm sees it.
dm_path_states() {
    dmsetup status mpatha 2>&1 |
        awk '{for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+:[0-9]+$/) printf "%s %s ", $i, $(i + 1)}'
}

# log_mark / log_expect TEXT PATH: a WARN line of the helper's log written
# since log_mark says TEXT and names PATH.
log_mark() { LOG_MARK=$(wc -l <"/tmp/helper-$B.log"); }
log_expect() {
    tail -n +"$((LOG_MARK + 1))" "/tmp/helper-$B.log" | grep WARN | grep "$1" | grep -q "$2" ||
        fail "helper log: no warning [$1] naming $2; since the mark: $(tail -n +"$((LOG_MARK + 1))" "/tmp/helper-$B.log" | tail -c 400 | tr '\n' ' ')"
}

# log_expect_own ACTION PATH: an audit line since log_mark says the helper
# sent ACTION on its own down PATH, with a reason.
log_expect_own() {
    tail -n +"$((LOG_MARK + 1))" "/tmp/helper-$B.log" | grep "sent by the helper on its own" |
        grep "action=$1 " | grep "path=$2 " | grep -q "reason=" ||
        fail "helper log: no audit line of the helper's own $1 on $2; since the mark: $(tail -n +"$((LOG_MARK + 1))" "/tmp/helper-$B.log" | grep audit | tail -c 600 | tr '\n' ' ')"
}

# The steps' replies are recorded per scenario for the comparison with the
# C helper, which has no counterpart here.
pf_end() {
    rm -f "$RES/$B/${SCEN#*.}" "$RES/$B.masked/${SCEN#*.}"
    STATE_NEXUS=""
    end
}

# 1. RELEASE through the map when the path holding the reservation is
# down, for every reservation type: the reservation is released and the
# other node can reserve. The map moves the reservation to the live path
# first (PREEMPT of its own key, which removes the dead path's
# registration); with an All Registrants type the live path is a holder and
# releases it itself.
pf_release_dead_holder() {
    begin "$B.mpath-release-dead-holder" || return 0
    for t in 1 3 5 6 7 8; do
        STATE_NEXUS=""
        reset_lu
        step "register-$t" 0 -o -G -S 0x1111 "$MPATH"
        step "reserve-$t" 0 -o -R -K 0x1111 -T "$t" "$MPATH"
        st=$(dev_state)
        h=$(holder_of "$st")
        if [ -z "$h" ]; then
            fail "type $t: no reservation holder after RESERVE through the map: [$st]"
            continue
        fi
        live=$((3 - h))
        pf_path "$h" offline
        STATE_NEXUS=3
        log_mark
        step "release-$t" 0 -o -L -K 0x1111 -T "$t" "$MPATH"
        case $t in
        7 | 8) want="1:0x1111 2:0x1111" ;;
        *) want="$live:0x1111" ;;
        esac
        expect_state "RELEASE of type $t with the holder (path $h) offline" "$want"
        case $t in
        7 | 8) ;;
        *)
            log_expect "path was down" "$(eval "echo \${PATH$h#/dev/}")"
            log_expect_own PREEMPT "$(eval "echo \${PATH$live#/dev/}")"
            ;;
        esac
        other -o -G -S 0x3333
        other -o -R -K 0x3333 -T 1
        expect_state "the other node's RESERVE after the RELEASE of type $t" "$want 3:0x3333:R1"
        pf_path "$h" running
    done
    STATE_NEXUS=""
    reset_lu
    pf_end
}

# 2. RESERVE, PREEMPT and CLEAR through the map while the first path is
# down but dm still lists it active: each is done on the live path.
pf_dead_first_path() {
    begin "$B.mpath-dead-first-path" || return 0
    reset_lu
    step register 0 -o -G -S 0x1111 "$MPATH"
    pf_path 1 offline
    STATE_NEXUS=3
    step reserve 0 -o -R -K 0x1111 -T 5 "$MPATH"
    expect_state "RESERVE with path 1 offline" "1:0x1111 2:0x1111:R5"
    step release 0 -o -L -K 0x1111 -T 5 "$MPATH"
    expect_state "RELEASE with path 1 offline" "1:0x1111 2:0x1111"
    other -o -G -S 0x3333
    other -o -R -K 0x3333 -T 1
    step preempt 0 -o -P -K 0x1111 -S 0x3333 -T 5 "$MPATH"
    expect_state "PREEMPT of the other node with path 1 offline" "1:0x1111 2:0x1111:R5"
    step clear 0 -o -C -K 0x1111 "$MPATH"
    expect_state "CLEAR with path 1 offline" "-"
    mm1=$(cat "/sys/block/${PATH1#/dev/}/dev")
    mm2=$(cat "/sys/block/${PATH2#/dev/}/dev")
    dm=$(dm_path_states)
    case "$dm" in
    *"$mm1 A "*"$mm2 A "* | *"$mm2 A "*"$mm1 A "*) note "(dm: $dm)" ;;
    *) fail "dm's view of the paths is [$dm], want both active (A): only the device was to fail" ;;
    esac
    STATE_NEXUS=""
    pf_path 1 running
    reset_lu
    pf_end
}

# 3 and 4. A key change and an unregister through the map while path 2 is
# down: the live path changes, the answer is GOOD, and the helper's log
# names the dead path and what it still holds (no multipathd in this boot
# to register the map's key on it when it returns; the multipathd boot
# checks that).
pf_register_dead_path() {
    begin "$B.mpath-register-dead-path" || return 0
    reset_lu
    step register 0 -o -G -S 0x1111 "$MPATH"
    pf_path 2 offline
    log_mark
    step key-change 0 -o -G -K 0x1111 -S 0x2222 "$MPATH"
    expect_state "key change with path 2 offline" "1:0x2222 2:0x1111"
    log_expect "during the key change" "${PATH2#/dev/}"
    pf_path 2 running
    # What the log asks for, done by hand.
    on_nexus 2 -o -I -S 0x2222
    expect_state "path 2 given the map's key" "1:0x2222 2:0x2222"
    pf_path 2 offline
    log_mark
    step unregister 0 -o -G -K 0x2222 -S 0 "$MPATH"
    expect_state "unregister with path 2 offline" "2:0x2222"
    log_expect "during the unregister" "${PATH2#/dev/}"
    pf_path 2 running
    reset_lu
    pf_end
}

# 3b. A key change through the map while the path holding the reservation
# is down: that path still holds it with the old key, so the map moves it
# to the live path with the new key (PREEMPT, RK = new, SARK = old), and a
# RELEASE with the new key then frees the LU for the other node.
pf_key_change_dead_holder() {
    begin "$B.mpath-key-change-dead-holder" || return 0
    STATE_NEXUS=""
    reset_lu
    step register 0 -o -G -S 0x1111 "$MPATH"
    step reserve 0 -o -R -K 0x1111 -T 5 "$MPATH"
    h=$(holder_of "$(dev_state)")
    if [ -z "$h" ]; then
        fail "no reservation holder after RESERVE through the map: [$(dev_state)]"
        pf_end
        return 0
    fi
    live=$((3 - h))
    pf_path "$h" offline
    STATE_NEXUS=3
    step key-change 0 -o -G -K 0x1111 -S 0x2222 "$MPATH"
    expect_state "key change with the holder (path $h) offline" "$live:0x2222:R5"
    step release 0 -o -L -K 0x2222 -T 5 "$MPATH"
    expect_state "RELEASE with the new key" "$live:0x2222"
    other -o -G -S 0x3333
    other -o -R -K 0x3333 -T 1
    expect_state "the other node's RESERVE" "$live:0x2222 3:0x3333:R1"
    STATE_NEXUS=""
    pf_path "$h" running
    reset_lu
    pf_end
}

# 5. Another host (nexus 3) holds the reservation with the key this map
# is registered with: QEMU's migrate-pr registers one key on the source
# and the destination, and some clusters use one key per cluster. A key is
# no evidence of whose the reservation is, and this helper never took it,
# so the map's RELEASE (both paths up, and either one down) is a
# non-holder's RELEASE: GOOD, and the other host keeps its reservation and
# its registration; a key change with a path down leaves the reservation
# where it is. The helper says in its log why it left it.
pf_other_host_same_key() {
    begin "$B.mpath-other-host-same-key" || return 0
    STATE_NEXUS=""
    reset_lu
    step register 0 -o -G -S 0x1111 "$MPATH"
    other -o -G -S 0x1111
    other -o -R -K 0x1111 -T 5
    held="1:0x1111 2:0x1111 3:0x1111:R5"
    expect_state "the other node reserves with the map's key" "$held"
    STATE_NEXUS=3
    log_mark
    step release-paths-up 0 -o -L -K 0x1111 -T 5 "$MPATH"
    expect_state "RELEASE through the map, both paths up" "$held"
    log_expect "left in place" mpatha
    # (step and on_nexus set d: the loop has a name of its own.)
    for down in 1 2; do
        pf_path $down offline
        step "release-path$down-down" 0 -o -L -K 0x1111 -T 5 "$MPATH"
        expect_state "RELEASE through the map with path $down offline" "$held"
        pf_path $down running
    done
    write_expect 3 0 "the other node writes after the map's RELEASEs"
    pf_path 2 offline
    step key-change 0 -o -G -K 0x1111 -S 0x2222 "$MPATH"
    expect_state "key change with path 2 offline" "1:0x2222 2:0x1111 3:0x1111:R5"
    pf_path 2 running
    STATE_NEXUS=""
    reset_lu
    pf_end
}

pf_scenarios() {
    [ "$B" = rs ] || return 0
    pf_release_dead_holder
    pf_dead_first_path
    pf_register_dead_path
    pf_key_change_dead_holder
    pf_other_host_same_key
}
