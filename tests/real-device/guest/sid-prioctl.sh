# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=dash disable=SC3043
# shellcheck disable=SC2034,SC2154
# The sid stage's PR ioctl executor against SG_IO on LU E (sourced by
# guest/sid.sh, after sid.helpers).
#
# LU E (lu4): nexus E1, E2 this host's two initiators (E2 the second node of
# the PREEMPT and CLEAR scenarios), E3, E4 the paths of the map pe-map, E5 the
# observer (sid_state 4). Helpers, all ours, all started as root with
# -u nobody -g disk, -v:
#   pe-sg    --executor sg_io (keeps CAP_SYS_RAWIO), --seccomp log
#   pe-io    --executor pr_ioctl (no capability), --seccomp kill: a system
#            call outside the allowlist would end it
#   pe-ior   --executor pr_ioctl with aptpl_zero = "refuse", --seccomp log
#   pe-auto  --executor auto, started by setpriv as nobody:disk with no
#            capability at all (so no CAP_SYS_RAWIO), --seccomp log
# Each prioctl.diff.* scenario runs once through pe-sg and once through pe-io
# (the LU reset before each) from the same nexus, and compares exit status,
# SCSI status, sense and payload of every command (PRGENERATION masked) and
# the device state after each PR OUT. Where the ioctls answer otherwise by
# design (docs/executors.md), the ioctl's answer is required to be the
# documented one, and both are shown as @@INFO prioctl.design lines.

PE_HELPER=/usr/local/bin/rs-pr-helper

# pe_start NAME ARGS...: our helper on /run/pr-NAME.sock, -v, as root with
# -u nobody -g disk and ARGS; sets HELPER_PID_NAME (sid_pid NAME).
pe_start() {
    local name=$1 i=0
    shift
    rm -f "/run/pr-$name.sock"
    # shellcheck disable=SC2068
    "$PE_HELPER" -v $@ -u nobody -g disk -k "/run/pr-$name.sock" >"/tmp/helper-$name.log" 2>&1 &
    eval "HELPER_PID_$(echo "$name" | tr -- - _)=$!"
    while [ $i -lt 100 ] && [ ! -S "/run/pr-$name.sock" ]; do
        usleep 100000
        i=$((i + 1))
    done
    [ -S "/run/pr-$name.sock" ]
}

# pe_nx DEVICE: the E nexus (E1..E5) of one of LU E's nodes.
pe_nx() {
    local n d
    for n in 1 2 3 4 5; do
        eval "d=\$PATHE$n; s=\$SGE$n"
        [ "$1" = "$d" ] || [ "$1" = "$s" ] && { echo "E$n"; return; }
    done
    echo ""
}

# pe_touched EN: a PR OUT went through EN: the other nexuses may hold a unit
# attention (drained before their next command, as lib.sh does).
pe_touched() {
    local n
    for n in 1 2 3 4 5; do [ "E$n" = "$1" ] || eval "DIRTYE$n=1"; done
}

# pe_drain EN...: consume the unit attentions pending on each dirty E nexus
# with READ KEYS (sg_persist exits 6 on one). With lib.sh's TEST UNIT READY
# the SG_IO side still met PR unit attentions here, which sd retries inside
# the ioctls.
pe_drain() {
    local x i dirty d
    for x in "$@"; do
        eval "dirty=\$DIRTY$x; d=\$SG$x"
        [ "$dirty" = 1 ] || continue
        i=0
        while [ $i -lt 6 ] && ! sg_persist -n -i -k "$d" >/dev/null 2>&1; do i=$((i + 1)); done
        eval "DIRTY$x=0"
    done
}

# pe_file: where backend $B's normalized replies of this scenario go.
pe_file() { echo "$RES/$PE_SIDE/${SCEN#*.}"; }

# pe_step LABEL WANT_SG WANT_IO ARGS... DEVICE: one command through helper
# $B from DEVICE's nexus; its answer recorded (PRGENERATION masked in PR IN
# data other than REPORT CAPABILITIES). WANT_* is the client's exit status
# through the SG_IO and the ioctl helper (x: any; the comparison decides).
pe_step() {
    local label=$1 want dev nx st sense payload
    [ "$PE_SIDE" = sg ] && want=$2 || want=$3
    shift 3
    eval "dev=\${$#}"
    nx=$(pe_nx "$dev")
    [ -n "$nx" ] && pe_drain "$nx"
    OUT=$(qemu-pr-client --socket "/run/pr-$B.sock" --json "$@" 2>/tmp/client.err)
    RC=$?
    [ $RC = 0 ] || [ -n "$OUT" ] || OUT="stderr: $(head -c 300 /tmp/client.err | tr '\n' ' ')"
    case " $* " in *" -o "*) [ -n "$nx" ] && pe_touched "$nx" ;; esac
    st=$(json_field status)
    sense=$(sense_hex)
    payload=$(json_field payload)
    case " $* " in
    *" -c "*) ;;
    *" -i "*) [ ${#payload} -ge 8 ] && payload="xxxxxxxx${payload#????????}" ;;
    esac
    echo "$label rc=$RC status=$st sense=$sense payload=$payload" >>"$(pe_file)"
    [ "$want" = x ] || [ "$RC" = "$want" ] || fail "$PE_SIDE step $label: ran [$*] expected exit $want, got $RC: $OUT"
}

# pe_state LABEL: the device state (READ FULL STATUS through E5) recorded as
# a step of its own, compared like the answers.
pe_state() { echo "state-$1 $(sid_state 4)" >>"$(pe_file)"; }

# pe_design LABEL LINE: step LABEL answers otherwise through the ioctls by
# design; through them it must answer LINE ("rc=.. status=.. sense=..
# payload=..", as recorded).
pe_design() { PE_DESIGN="$PE_DESIGN$1|$2
"; }

# pe_reset: LU E without registrations, reservation or pending unit
# attention (sg_persist through the observer E5).
pe_reset() {
    local n
    pe_drain E5
    sg_persist -n -o -I -S 0xfeed "$SGE5" >/dev/null 2>&1
    sg_persist -n -o -C -K 0xfeed "$SGE5" >/dev/null 2>&1
    for n in 1 2 3 4 5; do eval "DIRTYE$n=1"; done
    pe_drain E1 E2 E3 E4
    [ "$(sid_state 4)" = "-" ] || fail "reset: LU E still has registrations: $(sid_state 4)"
}

# pe_diff NAME FUNCTION [IO_HELPER]: prioctl.diff.NAME runs FUNCTION through
# pe-sg, then through IO_HELPER (pe-io), and compares.
pe_diff() {
    begin "prioctl.diff.$1" || return 0
    PE_DESIGN=""
    mkdir -p "$RES/sg" "$RES/io"
    for PE_SIDE in sg io; do
        B=pe-sg
        [ $PE_SIDE = io ] && B=${3:-pe-io}
        : >"$(pe_file)"
        pe_reset
        "$2"
    done
    pe_compare
    pe_reset
    end
}

# pe_compare: the two sides step by step; a difference fails unless the step
# is a design one whose ioctl answer is the documented one.
pe_compare() {
    local f=${SCEN#*.} n sg io label want
    n=$(wc -l <"$RES/sg/$f")
    [ "$n" = "$(wc -l <"$RES/io/$f")" ] || fail "the two sides ran $n and $(wc -l <"$RES/io/$f") steps"
    paste -d '\n' "$RES/sg/$f" "$RES/io/$f" | while read -r sg && read -r io; do
        label=${sg%% *}
        want=$(echo "$PE_DESIGN" | sed -n "s/^$label|//p" | head -1)
        if [ -n "$want" ]; then
            echo "@@INFO prioctl.design $f $label sg_io: ${sg#* } | pr_ioctl: ${io#* }"
            [ "${io#* }" = "$want" ] || fail "$label through the ioctls: got [${io#* }], documented [$want]"
        elif [ "$sg" = "$io" ]; then
            echo "@@INFO prioctl.same $f $sg"
        else
            fail "$label differs: sg_io [${sg#* }] pr_ioctl [${io#* }]"
        fi
    done >/tmp/pe-compare.out
    grep '^@@INFO' /tmp/pe-compare.out
    grep -q '^@@DETAIL' /tmp/pe-compare.out && { SCEN_FAIL=1; grep '^@@DETAIL' /tmp/pe-compare.out; }
    return 0
}

# The sense a refusal carries (fixed format, sense-key specific bytes 15..17).
PE_BAD_CDB_SA=700005000000000a00000000240000cc0001
PE_BAD_SPEC_I_PT=700005000000000a000000002600008b0014
PE_BAD_ALL_TG_PT=700005000000000a000000002600008a0014
PE_BAD_APTPL0=700005000000000a00000000260000880014
PE_BAD_SCOPE=700005000000000a00000000240000cf0002
# REPORT CAPABILITIES through the ioctls (docs/executors.md: 00 08 01 81 ea 01 00 00).
PE_CAPS=00080181ea010000

# ---------------------------------------------------------------- scenarios
# Each runs with $B the helper and $PE_SIDE sg or io.

pe_sc_register() {
    pe_step register-aptpl 0 0 -o -G -Z -S 0xe1 "$PATHE1"
    pe_state register-aptpl
    pe_step read-keys 0 0 -i -k "$PATHE1"
    pe_step rekey 0 0 -o -G -Z -K 0xe1 -S 0xe11 "$PATHE1"
    pe_state rekey
    pe_step wrong-key 24 24 -o -G -Z -K 0xbad -S 0xe2 "$PATHE1"
    pe_state wrong-key
    pe_step second 0 0 -o -G -Z -S 0xe2 "$PATHE2"
    pe_step read-keys-two 0 0 -i -k "$PATHE1"
    pe_step read-keys-short 0 0 -i -k -l c "$PATHE1"
    pe_step read-keys-one 0 0 -i -k -l 10 "$PATHE1"
    pe_step unregister 0 0 -o -G -Z -K 0xe11 -S 0 "$PATHE1"
    pe_state unregister
}

# APTPL=0: runs with APTPL=1 through the ioctls (aptpl_zero = "persist"),
# with an INFO line; REPORT CAPABILITIES through the observer shows it.
pe_sc_aptpl0() {
    local before ptpl
    before=$(grep -c 'REGISTER with APTPL=0 runs with APTPL=1' "/tmp/helper-$B.log")
    pe_step register 0 0 -o -G -S 0xe1 "$PATHE1"
    pe_state register
    pe_drain E5
    ptpl=$(prin_raw "$SGE5" 02 8)
    echo "@@INFO prioctl.aptpl0 $PE_SIDE: REPORT CAPABILITIES through E5 after REGISTER APTPL=0: $ptpl"
    if [ "$PE_SIDE" = io ]; then
        [ "$(grep -c 'REGISTER with APTPL=0 runs with APTPL=1' "/tmp/helper-$B.log")" = $((before + 1)) ] ||
            fail "no INFO line 'REGISTER with APTPL=0 runs with APTPL=1' for the register"
        # PTPL_A (byte 3, bit 0): the kernel registered with APTPL=1.
        [ $((0x$(echo "$ptpl" | cut -c7-8) & 1)) = 1 ] || fail "PTPL_A is not set after the ioctl register: $ptpl"
    fi
    pe_step ignore 0 0 -o -I -S 0xe2 "$PATHE1"
    pe_state ignore
}

# APTPL=0 with aptpl_zero = "refuse" (helper pe-ior).
pe_sc_aptpl0_refuse() {
    pe_step register 0 19 -o -G -S 0xe1 "$PATHE1"
    pe_design register "rc=19 status=2 sense=$PE_BAD_APTPL0 payload="
    pe_state register
    pe_design state-register "-"
    pe_step ignore 0 19 -o -I -S 0xe1 "$PATHE2"
    pe_design ignore "rc=19 status=2 sense=$PE_BAD_APTPL0 payload="
    pe_state ignore
    pe_design state-ignore "-"
    pe_step register-aptpl 0 0 -o -G -Z -S 0xe3 "$PATHE3"
    pe_state register-aptpl
    pe_design state-register-aptpl "3:0xe3"
}

pe_sc_ignore() {
    pe_step fresh 0 0 -o -I -Z -S 0xe1 "$PATHE1"
    pe_state fresh
    pe_step replace 0 0 -o -I -Z -S 0xe2 "$PATHE1"
    pe_state replace
    pe_step read-keys 0 0 -i -k "$PATHE1"
    pe_step unregister 0 0 -o -I -Z -S 0 "$PATHE1"
    pe_state unregister
}

# RESERVE and RELEASE of each type: READ RESERVATION shows the SCSI type
# (the ioctl's block type mapped back).
pe_sc_reserve() {
    local t
    pe_step register 0 0 -o -G -Z -S 0xe1 "$PATHE1"
    pe_step register-2 0 0 -o -G -Z -S 0xe2 "$PATHE2"
    pe_step read-reservation-none 0 0 -i -r "$PATHE1"
    for t in 1 3 5 6 7 8; do
        pe_step reserve-$t 0 0 -o -R -K 0xe1 -T $t "$PATHE1"
        pe_state reserve-$t
        pe_step read-reservation-$t 0 0 -i -r "$PATHE2"
        pe_step reserve-again-$t 0 0 -o -R -K 0xe1 -T $t "$PATHE1"
        pe_step release-$t 0 0 -o -L -K 0xe1 -T $t "$PATHE1"
        pe_state release-$t
    done
}

# RELEASE with the wrong type, by a non-holder, with a wrong key.
pe_sc_release() {
    pe_step register 0 0 -o -G -Z -S 0xe1 "$PATHE1"
    pe_step register-2 0 0 -o -G -Z -S 0xe2 "$PATHE2"
    pe_step reserve 0 0 -o -R -K 0xe1 -T 5 "$PATHE1"
    pe_step release-wrong-type x x -o -L -K 0xe1 -T 3 "$PATHE1"
    pe_state release-wrong-type
    pe_step release-non-holder 0 0 -o -L -K 0xe2 -T 5 "$PATHE2"
    pe_state release-non-holder
    pe_step release-wrong-key 24 24 -o -L -K 0xbad -T 5 "$PATHE1"
    pe_state release-wrong-key
    pe_step release 0 0 -o -L -K 0xe1 -T 5 "$PATHE1"
    pe_state release
    pe_step read-reservation 0 0 -i -r "$PATHE1"
}

# RESERVATION CONFLICT: the other node's RESERVE, an unregistered nexus.
pe_sc_conflict() {
    pe_step register 0 0 -o -G -Z -S 0xe1 "$PATHE1"
    pe_step register-2 0 0 -o -G -Z -S 0xe2 "$PATHE2"
    pe_step reserve 0 0 -o -R -K 0xe1 -T 3 "$PATHE1"
    pe_step reserve-other 24 24 -o -R -K 0xe2 -T 3 "$PATHE2"
    pe_step reserve-unregistered 24 24 -o -R -K 0xe3 -T 3 "$PATHE3"
    pe_step clear-wrong-key 24 24 -o -C -K 0xe3 "$PATHE2"
    pe_state conflicts
}

pe_sc_clear() {
    pe_step register 0 0 -o -G -Z -S 0xe1 "$PATHE1"
    pe_step register-2 0 0 -o -G -Z -S 0xe2 "$PATHE2"
    pe_step reserve 0 0 -o -R -K 0xe1 -T 5 "$PATHE1"
    pe_step clear 0 0 -o -C -K 0xe2 "$PATHE2"
    pe_state clear
    pe_step read-keys 0 0 -i -k "$PATHE1"
}

# PREEMPT from the second nexus: RESERVATION KEY its own, SERVICE ACTION
# RESERVATION KEY the key preempted (swapped keys would conflict).
pe_sc_preempt() {
    pe_step register 0 0 -o -G -Z -S 0xe1 "$PATHE1"
    pe_step register-2 0 0 -o -G -Z -S 0xe2 "$PATHE2"
    pe_step reserve 0 0 -o -R -K 0xe1 -T 5 "$PATHE1"
    pe_step preempt 0 0 -o -P -K 0xe2 -S 0xe1 -T 5 "$PATHE2"
    pe_state preempt
    pe_step read-reservation 0 0 -i -r "$PATHE2"
    pe_step preempt-unheld x x -o -P -K 0xe2 -S 0xe9 -T 5 "$PATHE2"
    pe_state preempt-unheld
}

pe_sc_preempt_abort() {
    pe_step register 0 0 -o -G -Z -S 0xe1 "$PATHE1"
    pe_step register-2 0 0 -o -G -Z -S 0xe2 "$PATHE2"
    pe_step reserve 0 0 -o -R -K 0xe1 -T 6 "$PATHE1"
    pe_step preempt-abort 0 0 -o -A -K 0xe2 -S 0xe1 -T 6 "$PATHE2"
    pe_state preempt-abort
    pe_step read-reservation 0 0 -i -r "$PATHE2"
}

# What the ioctls cannot carry, and REPORT CAPABILITIES.
pe_sc_refusals() {
    pe_step register 0 0 -o -G -Z -S 0xe1 "$PATHE1"
    pe_step reserve 0 0 -o -R -K 0xe1 -T 5 "$PATHE1"
    # SCOPE other than LU_SCOPE (the client's --scope, beyond sg_persist).
    pe_step reserve-scope x 5 -o -R -K 0xe1 -T 5 --scope 1 "$PATHE1"
    pe_design reserve-scope "rc=5 status=2 sense=$PE_BAD_SCOPE payload="
    pe_step release-scope x 5 -o -L -K 0xe1 -T 5 --scope 1 "$PATHE1"
    pe_design release-scope "rc=5 status=2 sense=$PE_BAD_SCOPE payload="
    pe_step preempt-scope x 5 -o -P -K 0xe1 -S 0xe1 -T 5 --scope 2 "$PATHE1"
    pe_design preempt-scope "rc=5 status=2 sense=$PE_BAD_SCOPE payload="
    pe_state scope
    pe_design state-scope "1:0xe1:R5"
    pe_step report-capabilities 0 0 -i -c "$PATHE1"
    pe_design report-capabilities "rc=0 status=0 sense= payload=$PE_CAPS"
    pe_step read-full-status 0 5 -i -s "$PATHE1"
    pe_design read-full-status "rc=5 status=2 sense=$PE_BAD_CDB_SA payload="
    pe_step spec-i-pt x 19 -o -G -Z -S 0xe2 -X "sas,$(echo "$INITE2" | sed 's/^naa\.//')" "$PATHE1"
    pe_design spec-i-pt "rc=19 status=2 sense=$PE_BAD_SPEC_I_PT payload="
    pe_state spec-i-pt
    pe_design state-spec-i-pt "1:0xe1:R5"
    pe_step all-tg-pt x 19 -o -G -Y -Z -S 0xe3 "$PATHE3"
    pe_design all-tg-pt "rc=19 status=2 sense=$PE_BAD_ALL_TG_PT payload="
    pe_state all-tg-pt
    pe_design state-all-tg-pt "1:0xe1:R5"
    pe_step replace-lost x 5 -o -z -S 0xe1 -T 5 "$PATHE1"
    pe_design replace-lost "rc=5 status=2 sense=$PE_BAD_CDB_SA payload="
    pe_step register-move x 5 -o -M -K 0xe1 -S 0xe4 -T 5 -Q 1 -X "sas,$(echo "$INITE4" | sed 's/^naa\.//')" "$PATHE1"
    pe_design register-move "rc=5 status=2 sense=$PE_BAD_CDB_SA payload="
    pe_state register-move
    pe_design state-register-move "1:0xe1:R5"
}

# ------------------------------------------------------------ the daemon
# pe_caps NAME: the capability lines of helper NAME's /proc status.
pe_caps() { grep -E '^(Uid|Gid|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' "/proc/$(sid_pid "$1")/status" | tr '\t' ' '; }

# prioctl.caps: the pr_ioctl daemon holds nothing while it serves; its
# multipathd relay is root's uid with no capability; the first command on
# the device is logged as going through pr_ioctl.
pe_check_caps() {
    local pid relay line c
    begin prioctl.caps || return 0
    pid=$(sid_pid pe-io)
    qemu-pr-client --socket /run/pr-pe-io.sock -i -k "$PATHE1" >/dev/null 2>&1 ||
        fail "READ KEYS through pe-io failed"
    pe_caps pe-io | sed 's/^/@@INFO prioctl.caps pe-io /'
    for c in CapInh CapPrm CapEff CapBnd CapAmb; do
        line=$(grep "^$c:" "/proc/$pid/status" | awk '{print $2}')
        [ "$line" = 0000000000000000 ] || fail "$c of the pr_ioctl daemon is $line"
    done
    [ "$(awk '/^Uid:/ {print $2 $3 $4 $5}' "/proc/$pid/status")" = 65534655346553465534 ] ||
        fail "the daemon's uids are $(grep ^Uid: "/proc/$pid/status")"
    relay=$(sed -n 's/.*multipathd relay started.* pid=\([0-9]*\).*/\1/p' /tmp/helper-pe-io.log | head -1)
    [ -n "$relay" ] || relay=$(sed -n 's/.*pid=\([0-9]*\).*multipathd relay started.*/\1/p' /tmp/helper-pe-io.log | head -1)
    if [ -z "$relay" ] || [ ! -r "/proc/$relay/status" ]; then
        fail "no multipathd relay in the log: $(grep -i relay /tmp/helper-pe-io.log | head -2)"
    else
        grep -E '^(Name|PPid|Uid|CapPrm|CapEff|CapBnd|CapAmb):' "/proc/$relay/status" | tr '\t' ' ' |
            sed 's/^/@@INFO prioctl.caps relay /'
        [ "$(awk '/^Uid:/ {print $2 $3 $4 $5}' "/proc/$relay/status")" = 0000 ] ||
            fail "the relay's uids are $(grep ^Uid: "/proc/$relay/status")"
        [ "$(awk '/^CapPrm:/ {print $2}' "/proc/$relay/status")" = 0000000000000000 ] ||
            fail "the relay's CapPrm is $(grep ^CapPrm: "/proc/$relay/status")"
        [ "$(awk '/^PPid:/ {print $2}' "/proc/$relay/status")" = "$pid" ] ||
            fail "the relay $relay is not the daemon's child"
    fi
    line=$(grep 'first command on this device' /tmp/helper-pe-io.log | head -1)
    echo "@@INFO prioctl.caps first command: ${line#*interface: }"
    echo "$line" | grep -q 'executor="\{0,1\}pr_ioctl' || fail "the first command's log line: [$line]"
    end
}

# prioctl.auto: --executor auto, started by setpriv as nobody:disk with no
# capability in any set, picks the PR ioctls on kernel 7.2 and says why.
pe_check_auto() {
    local pid line i=0
    begin prioctl.auto || return 0
    rm -f /run/pr-pe-auto.sock
    # The socket's directory must be writable by nobody.
    mkdir -p /run/pe-auto
    chown nobody /run/pe-auto
    # util-linux's setpriv by its path: busybox sh prefers its own applet.
    /usr/bin/setpriv --reuid=65534 --regid="$(getent group disk | cut -d: -f3)" --clear-groups \
        --inh-caps=-all --ambient-caps=-all --bounding-set=-all \
        "$PE_HELPER" -v --seccomp log --executor auto -k /run/pe-auto/pr.sock >/tmp/helper-pe-auto.log 2>&1 &
    pid=$!
    HELPER_PID_pe_auto=$pid
    while [ $i -lt 100 ] && [ ! -S /run/pe-auto/pr.sock ]; do
        usleep 100000
        i=$((i + 1))
    done
    [ -S /run/pe-auto/pr.sock ] || fail "did not start: $(head -c 400 /tmp/helper-pe-auto.log)"
    pe_caps pe-auto | sed 's/^/@@INFO prioctl.auto /'
    [ "$(awk '/^CapPrm:/ {print $2}' "/proc/$pid/status")" = 0000000000000000 ] ||
        fail "CapPrm of the auto helper: $(grep ^CapPrm: "/proc/$pid/status")"
    qemu-pr-client --socket /run/pe-auto/pr.sock --json -o -G -Z -S 0xea "$PATHE1" >/tmp/pe-auto.out 2>&1 ||
        fail "REGISTER through auto: $(head -c 300 /tmp/pe-auto.out)"
    pe_touched E1
    [ "$(sid_state 4)" = "1:0xea" ] || fail "after REGISTER through auto: $(sid_state 4)"
    qemu-pr-client --socket /run/pe-auto/pr.sock --json -i -k "$PATHE1" >/tmp/pe-auto.out 2>&1 ||
        fail "READ KEYS through auto: $(head -c 300 /tmp/pe-auto.out)"
    grep -q '"payload":"[0-9a-f]\{8\}0000000800000000000000ea"' /tmp/pe-auto.out ||
        fail "READ KEYS through auto: $(head -c 300 /tmp/pe-auto.out)"
    line=$(grep 'first command on this device' /tmp/helper-pe-auto.log | head -1)
    echo "@@INFO prioctl.auto first command: ${line#*interface: }"
    echo "$line" | grep -q 'executor="\{0,1\}pr_ioctl' || fail "auto did not take pr_ioctl: [$line]"
    echo "$line" | grep -q 'no CAP_SYS_RAWIO' || fail "auto did not say why: [$line]"
    grep -m1 'daemon:.*executor="\{0,1\}auto' /tmp/helper-pe-auto.log | sed 's/^.*daemon: /@@INFO prioctl.auto start: /'
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pe_reset
    end
}

# ------------------------------------------------------------ multipath
# prioctl.mpath: the map pe-map over E3 and E4 through pe-io; REGISTER with
# E3 offline, RESERVE, RELEASE with the holder offline: what docs/executors.md says
# the ioctls do (no move without READ FULL STATUS, said once in the log).
pe_map_make() {
    local size a b
    size=$(cat "/sys/block/${PATHE3#/dev/}/size")
    a=$(cat "/sys/block/${PATHE3#/dev/}/dev")
    b=$(cat "/sys/block/${PATHE4#/dev/}/dev")
    DM_DISABLE_UDEV=1 dmsetup create --noudevsync -u mpath-36001405tiersidpe pe-map \
        --table "0 $size multipath 0 0 1 1 service-time 0 2 1 $a 1 $b 1" || return 1
    PE_MAP=""
    for d in /sys/block/dm-*; do
        [ "$(cat "$d/dm/name" 2>/dev/null)" = pe-map ] && PE_MAP=/dev/${d##*/}
    done
    [ -n "$PE_MAP" ] || return 1
    echo "@@INFO prioctl.mpath map pe-map $PE_MAP over E3 ($a) and E4 ($b)"
}
pe_map_remove() {
    local n=0
    while [ $n -lt 30 ] && ! DM_DISABLE_UDEV=1 dmsetup remove --noudevsync pe-map 2>/dev/null; do
        dmsetup info pe-map >/dev/null 2>&1 || break
        sleep 1
        n=$((n + 1))
    done
}
pe_path_state() { echo "$2" >"/sys/block/${1#/dev/}/device/state"; }

pe_mp() {
    local label=$1 want=$2 warns
    shift 2
    pe_drain E3 E4
    OUT=$(qemu-pr-client --socket /run/pr-pe-io.sock --json "$@" "$PE_MAP" 2>/tmp/client.err)
    RC=$?
    for n in 1 2 3 4 5; do eval "DIRTYE$n=1"; done
    echo "@@INFO prioctl.mpath $label rc=$RC $(echo "$OUT" | cut -c1-200)"
    [ "$RC" = "$want" ] || fail "$label through the map: exit $RC, want $want: $OUT $(head -c 200 /tmp/client.err)"
}

pe_check_mpath() {
    local warns
    begin prioctl.mpath || return 0
    pe_reset
    if ! pe_map_make; then
        fail "dmsetup could not make pe-map"
        end
        return
    fi
    # Both paths up: REGISTER reaches both.
    pe_mp register 0 -o -G -S 0xe5
    sid_expect 4 "register on the map" "3:0xe5 4:0xe5"
    pe_mp read-keys 0 -i -k
    # E4 offline: a key change reaches E3 only, E4 keeps the old key.
    pe_path_state "$PATHE4" offline
    pe_mp rekey-e4-down 0 -o -G -K 0xe5 -S 0xe6
    pe_path_state "$PATHE4" running
    DIRTYE4=1
    sid_expect 4 "key change with E4 offline" "3:0xe6 4:0xe5"
    # E4 back with its old key: set it right directly, as multipathd would.
    pe_drain E4
    sg_persist -n -o -I -Z -S 0xe6 "$SGE4" >/dev/null 2>&1 || fail "sg_persist could not re-register E4"
    pe_touched E4
    sid_expect 4 "E4 re-registered" "3:0xe6 4:0xe6"
    # RESERVE on the map: one path takes it.
    pe_mp reserve 0 -o -R -K 0xe6 -T 5
    sid_expect 4 "reserve on the map" "3:0xe6:R5 4:0xe6|3:0xe6 4:0xe6:R5"
    pe_mp read-reservation 0 -i -r
    pe_mp read-full-status 5 -i -s
    pe_mp read-full-status-again 5 -i -s
    # The holder's path offline: RELEASE is GOOD on the live path (a
    # non-holder's no-op) and the reservation stays where it is.
    holder=$(holder_of "$(sid_state 4)")
    eval "hp=\$PATHE$holder"
    pe_path_state "$hp" offline
    pe_mp release-holder-down 0 -o -L -K 0xe6 -T 5
    pe_path_state "$hp" running
    eval "DIRTYE$holder=1"
    sid_expect 4 "RELEASE with the holder's path offline" "$( [ "$holder" = 3 ] && echo "3:0xe6:R5 4:0xe6" || echo "3:0xe6 4:0xe6:R5")"
    # Both up: RELEASE through every path releases it.
    pe_mp release 0 -o -L -K 0xe6 -T 5
    sid_expect 4 "RELEASE with both paths up" "3:0xe6 4:0xe6"
    pe_mp unregister 0 -o -G -K 0xe6 -S 0
    sid_expect 4 "unregister on the map" "-"
    warns=$(grep -c 'READ FULL STATUS has no PR ioctl' /tmp/helper-pe-io.log)
    [ "$warns" = 1 ] || fail "the READ FULL STATUS limitation was logged $warns times, want once"
    grep -m1 'READ FULL STATUS has no PR ioctl' /tmp/helper-pe-io.log | sed 's/^.*multipath: /@@INFO prioctl.mpath log: /'
    grep -iE 'left in place|not move|cannot move' /tmp/helper-pe-io.log | head -2 | cut -c1-300 |
        sed 's/^/@@INFO prioctl.mpath log: /'
    pe_map_remove
    dmsetup info pe-map >/dev/null 2>&1 && fail "pe-map could not be removed"
    pe_reset
    end
}

# ------------------------------------------------------------ bench
# READ KEYS repeated over one connection through each helper, and with SG_IO
# in the client itself; three rounds of 100, the helpers in turn within each
# round, so that the load of the machine falls on both alike. Information
# only: one @@BENCHREP line per run, the ratio pr_ioctl / sg_io per round.
pe_rep() {
    if [ "$1" = direct ]; then
        qemu-pr-client --direct --repeat 100 -i -k "$PATHE1" >/dev/null 2>/tmp/repeat.err
    else
        qemu-pr-client --socket "/run/pr-$1.sock" --repeat 100 -i -k "$PATHE1" >/dev/null 2>/tmp/repeat.err
    fi
    line=$(grep '^repeat ' /tmp/repeat.err)
    if [ -z "$line" ]; then
        echo "@@BENCHREP prioctl.read-keys-$1 failed: $(head -c 200 /tmp/repeat.err | tr '\n' ' ')"
        PE_MED=""
        return
    fi
    echo "@@BENCHREP prioctl.read-keys-$1 round=$2 ${line#repeat via=* }"
    PE_MED=$(echo "$line" | sed -n 's/.*median_us=\([0-9.]*\).*/\1/p')
}
pe_bench() {
    local r sg io ratios=""
    for r in 1 2 3; do
        pe_rep direct $r
        pe_rep pe-sg $r
        sg=$PE_MED
        pe_rep pe-io $r
        io=$PE_MED
        [ -n "$sg" ] && [ -n "$io" ] &&
            ratios="$ratios $(awk -v a="$io" -v b="$sg" 'BEGIN {printf "%.2f", a / b}')"
    done
    echo "@@BENCH prioctl.read-keys ratio pr_ioctl/sg_io per round:$ratios (READ KEYS round trip, median of 100 each)"
    return 0
}

# ------------------------------------------------------------ main
PE_NAMES="sid.prioctl.start sid.prioctl.caps sid.prioctl.diff.register sid.prioctl.diff.aptpl0
sid.prioctl.diff.aptpl0-refuse sid.prioctl.diff.ignore sid.prioctl.diff.reserve
sid.prioctl.diff.release sid.prioctl.diff.conflict sid.prioctl.diff.clear
sid.prioctl.diff.preempt sid.prioctl.diff.refusals sid.prioctl.auto sid.prioctl.mpath
sid.prioctl.bench sid.prioctl.diff.preempt-abort sid.prioctl.seccomp-kill"

sid_prioctl() {
    local pid err=""
    # The helpers start when any scenario of this file runs (--only NAME).
    [ -z "$ONLY" ] || case "$PE_NAMES" in *"$ONLY"*) ;; *) return 0 ;; esac
    printf '[executor]\nkind = "pr_ioctl"\naptpl_zero = "refuse"\n' >/tmp/pe-refuse.toml
    pe_start pe-sg --seccomp log --executor sg_io || err="pe-sg did not start: $(head -c 300 /tmp/helper-pe-sg.log)"
    pe_start pe-io --seccomp kill --executor pr_ioctl || err="$err pe-io did not start: $(head -c 300 /tmp/helper-pe-io.log)"
    pe_start pe-ior --seccomp log -c /tmp/pe-refuse.toml || err="$err pe-ior did not start: $(head -c 300 /tmp/helper-pe-ior.log)"
    grep -m1 'daemon:.*executor=' /tmp/helper-pe-io.log | sed 's/^.*daemon: /@@INFO prioctl pe-io: /'
    if begin prioctl.start; then
        [ -z "$err" ] || fail "$err"
        end
    fi
    [ -z "$err" ] || return 0
    pe_check_caps
    pe_diff register pe_sc_register
    pe_diff aptpl0 pe_sc_aptpl0
    pe_diff aptpl0-refuse pe_sc_aptpl0_refuse pe-ior
    pe_diff ignore pe_sc_ignore
    pe_diff reserve pe_sc_reserve
    pe_diff release pe_sc_release
    pe_diff conflict pe_sc_conflict
    pe_diff clear pe_sc_clear
    pe_diff preempt pe_sc_preempt
    pe_diff refusals pe_sc_refusals
    pe_check_auto
    pe_check_mpath
    if begin prioctl.bench; then
        pe_bench
        end
    fi
    # PREEMPT AND ABORT between tcm_loop nexuses hangs kernel 7.2 as it hangs
    # 6.1 (through SG_IO and through the ioctl alike: the command never
    # completes, and LU E with it): it runs only when asked for by name
    # (--only prioctl.diff.preempt-abort), last.
    case "$ONLY" in
    *preempt-abort*) pe_diff preempt-abort pe_sc_preempt_abort ;;
    *) echo "@@RESULT sid.prioctl.diff.preempt-abort SKIP hangs tcm_loop on this kernel; --only prioctl.diff.preempt-abort runs it" ;;
    esac
    # prioctl.seccomp-kill: pe-io ran every command above with --seccomp kill.
    if begin prioctl.seccomp-kill; then
        pid=$(sid_pid pe-io)
        kill -0 "$pid" 2>/dev/null || fail "pe-io (--seccomp kill) is gone: $(tail -c 300 /tmp/helper-pe-io.log)"
        qemu-pr-client --socket /run/pr-pe-io.sock -i -k "$PATHE1" >/dev/null 2>&1 || fail "pe-io does not answer READ KEYS"
        pe_caps pe-io | sed 's/^/@@INFO prioctl.seccomp-kill pe-io /'
        n=$(dmesg | grep 'type=1326' | grep -c 'rs-pr-helper')
        [ "$n" = 0 ] || fail "$n seccomp records of our helper: $(dmesg | grep 'type=1326' | grep rs-pr-helper | head -2 | cut -c1-200)"
        end
    fi
    for pid in $(sid_pid pe-sg) $(sid_pid pe-io) $(sid_pid pe-ior); do kill "$pid" 2>/dev/null; done
    return 0
}
