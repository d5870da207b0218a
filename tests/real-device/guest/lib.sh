# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=dash disable=SC3043
# Variables set through eval (DIRTYn, SGn, HELPER_PID_x) look unused/unassigned:
# shellcheck disable=SC2034,SC2154
# Helpers for the guest scenarios (busybox ash). Sourced by /init.
#
# Backends ($B):
#   direct  sg_persist run on the device itself (baseline: what the LU does)
#   rs      qemu-pr-client -> the helper under test  (/run/pr-rs.sock)
#   c       qemu-pr-client -> the C reference helper (/run/pr-c.sock)
#   emu     qemu-pr-client -> the helper under test with its emulated device
#           (/run/pr-emu.sock, initiator = "uid"): the regular file $EMU_LU
#           stands in for the LU, and nexus N is the client running as uid N
#           (user nexusN), so the three nexuses are LIO's three.
# Device state is read with sg_raw/sg_persist directly on /dev/sgN; for emu,
# where there is no device, with the client as nexus 1.

RES=/tmp/res        # per backend, per scenario: normalized replies to compare
mkdir -p $RES

# ------------------------------------------------------------ result marks
SCEN=""
SCEN_FAIL=0
# begin NAME: start scenario NAME; returns 1 (skip it) when --only excludes it.
begin() {
    SCEN=$PFX$1
    SCEN_FAIL=0
    SCEN_NOTE=""
    SCEN_T0=$(cut -d. -f1 /proc/uptime)
    if [ -n "$ONLY" ]; then
        case "$SCEN" in *"$ONLY"*) ;; *) SCEN=""; return 1 ;; esac
    fi
    return 0
}
fail() {
    echo "@@DETAIL $SCEN $*"
    SCEN_FAIL=1
}
note() { SCEN_NOTE="$SCEN_NOTE $*"; }
end() {
    [ -n "$SCEN" ] || return 0
    SCEN_NOTE="$SCEN_NOTE ($(($(cut -d. -f1 /proc/uptime) - SCEN_T0))s)"
    known=$(echo "$KNOWN_FAIL" | sed -n "s/^$SCEN|//p")
    if [ $SCEN_FAIL = 0 ] && [ -n "$known" ]; then
        echo "@@RESULT $SCEN PASS$SCEN_NOTE (listed in KNOWN_FAIL: remove it)"
    elif [ $SCEN_FAIL = 0 ]; then
        echo "@@RESULT $SCEN PASS$SCEN_NOTE"
    elif [ -n "$known" ]; then
        echo "@@RESULT $SCEN XFAIL$SCEN_NOTE known: $known"
    else
        echo "@@RESULT $SCEN FAIL$SCEN_NOTE"
    fi
    SCEN=""
}

# ------------------------------------------------------------ multipathd
# mpd ARGS...: one multipathd client command; its reply, on one line, in
# MPD_OUT. Each command word's first reply of each kind is shown once as
# @@INFO, naming multipathd as $MPD_LABEL says (its version).
MPD_SEEN=" "
MPD_LABEL=multipathd
mpd() {
    MPD_OUT=$(timeout 30 multipathd "$@" 2>&1 | tr '\n' ' ' | sed 's/ *$//')
    _seen="$1=$(echo "$MPD_OUT" | tr -c 'a-zA-Z0-9\n' _)"
    case "$MPD_SEEN" in
    *" $_seen "*) ;;
    *)
        MPD_SEEN="$MPD_SEEN$_seen "
        echo "@@INFO $MPD_LABEL: [$*] answered [$MPD_OUT]"
        ;;
    esac
}

# ------------------------------------------------------------ device truth
hexof() { od -An -v -tx1 "$1" | tr -d ' \n'; }

EMU_LU=/tmp/lu.img
# emu N ARGS...: one command through the emulating helper as nexus N (uid N)
# on $EMU_LU; sets RC and OUT as pr_cmd does.
emu() {
    _en=$1
    shift
    # busybox su takes no arguments after -c's: they go in the environment
    # (none contains a space).
    # shellcheck disable=SC2016
    OUT=$(EMU_ARGS="$*" su -s /bin/sh "nexus$_en" -c \
        'exec /usr/bin/qemu-pr-client --socket /run/pr-emu.sock --emulated --json $EMU_ARGS '"$EMU_LU" 2>/tmp/client.err)
    RC=$?
    [ $RC = 0 ] || [ -n "$OUT" ] || OUT="stderr: $(head -c 300 /tmp/client.err | tr '\n' ' ')"
}

# prin_raw DEV SA ALLOC: PR IN sent straight to DEV; prints the reply in hex.
prin_raw() {
    if [ "$B" = emu ]; then
        case $2 in 00) _f=-k ;; 01) _f=-r ;; 02) _f=-c ;; *) _f=-s ;; esac
        emu "$(nexus_of "$1")" -i $_f --alloc-length "$(printf %x "$3")"
        [ $RC = 0 ] || return 1
        json_field payload
        return 0
    fi
    rm -f /tmp/prin.bin
    sg_raw -R -r "$3" -o /tmp/prin.bin "$1" 5e "$2" 00 00 00 00 00 \
        "$(printf %02x $(($3 >> 8)))" "$(printf %02x $(($3 & 255)))" 00 >/dev/null 2>&1 || return 1
    hexof /tmp/prin.bin
}

# Unit attentions: LIO queues one on the other I_T nexuses when a PR OUT
# (PREEMPT, CLEAR, RELEASE ...) changes their state, and hands it to the next
# command through that nexus. They are consumed with TEST UNIT READY before a
# command goes through a nexus that another nexus's PR OUT may have touched,
# so that both helpers and the baseline see the same device. Exec is slow
# under TCG (~0.1 s per dynamically linked program): only dirty nexuses are
# drained.
DIRTY1=1
DIRTY2=1
DIRTY3=1
nexus_of() {
    case "$1" in
    "$PATH1" | "$SG1") echo 1 ;;
    "$PATH2" | "$SG2") echo 2 ;;
    "$PATH3" | "$SG3") echo 3 ;;
    *) echo 1 2 ;;
    esac
}
# touched N...: a PR OUT went through nexus N...; the others may hold a UA.
touched() {
    for x in 1 2 3; do
        case " $* " in *" $x "*) ;; *) eval "DIRTY$x=1" ;; esac
    done
}
# drain [N...]: consume pending UAs on the given (default: all) dirty nexuses.
drain() {
    [ $# -gt 0 ] || set -- 1 2 3
    for x in "$@"; do
        eval "dirty=\$DIRTY$x; d=\$SG$x"
        [ "$dirty" = 1 ] || continue
        i=0
        if [ "$B" = emu ]; then
            # The emulated device reports a unit attention on PR commands only.
            while [ $i -lt 5 ]; do
                emu "$x" -i -k
                [ $RC = 0 ] && break
                i=$((i + 1))
            done
        else
            while [ $i -lt 5 ] && ! sg_turs "$d" >/dev/null 2>&1; do i=$((i + 1)); done
        fi
        eval "DIRTY$x=0"
    done
}

# dev_state: one word per registration, sorted: NEXUS:KEY, plus :RTYPE on the
# reservation holder(s), from READ FULL STATUS; "-" when nothing is registered.
# NEXUS is 1, 2 (this host's paths) or 3 (the other node). Read through
# nexus $STATE_NEXUS (default 1), which must be up.
dev_state() {
    _sn=${STATE_NEXUS:-1}
    drain "$_sn"
    eval "_sd=\$SG$_sn"
    h=$(prin_raw "$_sd" 03 4096) || { echo "ERROR(read full status failed)"; return; }
    echo "$h" | awk '
    function hv(s,  i, v) { v = 0; for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1; return v }
    function key(s) { sub(/^0+/, "", s); return "0x" (s == "" ? "0" : s) }
    {
        h = $0; addl = hv(substr(h, 9, 8)); off = 8; n = 0
        while (off + 24 <= 8 + addl && 2 * (off + 24) <= length(h)) {
            k = key(substr(h, 2 * off + 1, 16))
            fl = hv(substr(h, 2 * (off + 12) + 1, 2)); st = hv(substr(h, 2 * (off + 13) + 1, 2))
            tl = hv(substr(h, 2 * (off + 20) + 1, 8)); tid = substr(h, 2 * (off + 24) + 1, 2 * tl)
            e = substr(tid, 24, 1) ":" k
            if (fl % 2 == 1) e = e ":R" (st % 16)
            out[n++] = e; off += 24 + tl
        }
        for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (out[j] < out[i]) { t = out[i]; out[i] = out[j]; out[j] = t }
        s = ""; for (i = 0; i < n; i++) s = s (i ? " " : "") out[i]
        print (s == "" ? "-" : s)
    }'
}

# holder_of STATE: the first nexus marked as reservation holder in STATE
# (as dev_state prints it).
holder_of() {
    echo "$1" | tr ' ' '\n' | sed -n 's/^\([0-9]\):[^:]*:R.*/\1/p' | head -1
}

# expect_state WHEN WANT[|ALTERNATIVE...]
expect_state() {
    got=$(dev_state)
    old_ifs=$IFS
    IFS='|'
    for w in $2; do
        if [ "$got" = "$w" ]; then IFS=$old_ifs; return 0; fi
    done
    IFS=$old_ifs
    fail "device state after $1: expected [$2] got [$got]"
}

# reset_lu: no registrations, no reservation, no pending unit attention.
reset_lu() {
    drain
    if [ "$B" = emu ]; then
        emu 1 -o -I -S 0xfeed
        emu 1 -o -C -K 0xfeed
    else
        sg_persist -n -o -I -S 0xfeed "$SG1" >/dev/null 2>&1
        sg_persist -n -o -C -K 0xfeed "$SG1" >/dev/null 2>&1
    fi
    touched 1
    drain
    st=$(dev_state)
    [ "$st" = "-" ] || fail "reset: LU still has registrations: $st"
}

# Direct actions of the other cluster node (nexus 3), via sg_persist.
other() {
    drain 3
    if [ "$B" = emu ]; then
        emu 3 "$@"
        [ $RC = 0 ] || fail "other node: $* failed: $OUT"
        touched 3
        return
    fi
    sg_persist -n "$@" "$SG3" >/tmp/other.out 2>&1 || fail "other node: sg_persist $* failed: $(tail -1 /tmp/other.out)"
    touched 3
}

# on_nexus N ARGS...: sg_persist straight to nexus N (this host's paths).
on_nexus() {
    n=$1
    shift
    drain "$n"
    eval "d=\$SG$n"
    sg_persist -n "$@" "$d" >/tmp/nexus.out 2>&1 || fail "nexus $n: sg_persist $* failed: $(tail -1 /tmp/nexus.out)"
    touched "$n"
}

# write_expect N WANT_RC WHEN: WRITE(10) of one block at LBA 0 straight to
# nexus N; sg_raw exits 0 on GOOD, 24 on RESERVATION CONFLICT.
write_expect() {
    [ -f /tmp/block ] || dd if=/dev/zero of=/tmp/block bs=512 count=1 2>/dev/null
    drain "$1"
    eval "d=\$SG$1"
    sg_raw -s 512 -i /tmp/block "$d" 2a 00 00 00 00 00 00 00 01 00 >/tmp/write.out 2>&1
    rc=$?
    [ "$rc" = "$2" ] || fail "write through nexus $1 after $3: sg_raw exit $rc, want $2: $(tr '\n' ' ' </tmp/write.out | cut -c1-200)"
}

# ---------------------------------------------------------------- backends
# pr_cmd ARGS... DEVICE: one PR command through backend $B; sets RC and OUT.
# RC is sg3_utils' exit status, from the client as from sg_persist (0 GOOD,
# 24 RESERVATION CONFLICT, 6 UNIT ATTENTION, 5 ILLEGAL REQUEST, ...; the
# client's own 37/38: helper unreachable / broke the protocol).
pr_cmd() {
    if [ "$B" = direct ]; then
        direct_cmd "$@"
        return
    fi
    if [ "$B" = emu ]; then
        # The same arguments without the device, as the device's nexus.
        eval "_d=\${$#}"
        _a=""
        _i=1
        for _x in "$@"; do
            [ $_i -lt $# ] && _a="$_a $_x"
            _i=$((_i + 1))
        done
        # shellcheck disable=SC2086
        emu "$(nexus_of "$_d")" $_a
        return
    fi
    OUT=$(qemu-pr-client --socket "/run/pr-$B.sock" --json "$@" 2>/tmp/client.err)
    RC=$?
    [ $RC = 0 ] || [ -n "$OUT" ] || OUT="stderr: $(head -c 300 /tmp/client.err | tr '\n' ' ')"
}

# The client's options and exit statuses are sg_persist's (hex keys and
# allocation lengths, TransportIDs as sas,ADDR, sg3_utils' exit values): the
# same arguments run as they are.
direct_cmd() {
    args=$*
    # shellcheck disable=SC2086
    sg_persist -n $args >/tmp/direct.out 2>&1
    RC=$?
    OUT=$(tr '\n' ' ' </tmp/direct.out)
}

# json_field NAME: value of "NAME":... from $OUT (numbers or strings).
json_field() {
    echo "$OUT" | sed -n "s/.*\"$1\":\"\{0,1\}\([0-9A-Za-z_]*\).*/\1/p" | head -1
}

# sense_hex: the sense bytes from $OUT ("sense":{"hex":...}, present only
# when there is sense); empty without sense.
sense_hex() {
    echo "$OUT" | sed -n 's/.*"sense":{"hex":"\([0-9a-f]*\)".*/\1/p' | head -1
}

# step LABEL WANT_RC ARGS... DEVICE: run one command; record its normalized
# reply for the rs/c comparison; FAIL when the exit code is not WANT_RC.
step() {
    label=$1
    want=$2
    shift 2
    eval "dev=\${$#}"
    nx=$(nexus_of "$dev")
    # shellcheck disable=SC2086
    drain $nx
    pr_cmd "$@"
    # shellcheck disable=SC2086
    case " $* " in
    *" -o "* | *" --out "*) touched $nx ;;
    esac
    if [ "$B" != direct ]; then
        st=$(json_field status)
        sense=$(sense_hex)
        payload=$(json_field payload)
        case " $* " in
        *" -i "*" -c "* | *" --report-capabilities "*) ;;
        *" -i "* | *" --in "*) [ ${#payload} -ge 8 ] && payload="xxxxxxxx${payload#????????}" ;;
        esac
        echo "$label rc=$RC status=$st sense=$sense payload=$payload" >>"$RES/$B/${SCEN#*.}"
        case " $* " in
        *" -s "*) payload=$(mask_full_status "$payload") ;;
        esac
        echo "$label rc=$RC status=$st sense=$sense payload=$payload" >>"$RES/$B.masked/${SCEN#*.}"
    fi
    if [ "$B" = emu ] && [ -n "$(emu_allowed "${SCEN#*.}" "$label")" ]; then
        want=$RC   # an allowed difference from LIO: compare_emu reports it
    fi
    if [ "$RC" != "$want" ]; then
        fail "step $label: ran [$*] expected exit $want, got $RC: $OUT"
    fi
}

# mask_full_status HEX: a READ FULL STATUS payload with what depends on the
# transport masked in every whole descriptor: the RELATIVE TARGET PORT
# IDENTIFIER (pppp) and a SAS TransportID's address (sas-N, N the nexus: the
# last digit of LIO's initiator names and of the emulator's uid addresses).
mask_full_status() {
    echo "$1" | awk '
    function hv(s,  i, v) { v = 0; for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1; return v }
    {
        h = $0; out = substr(h, 1, 16); off = 8
        while (2 * (off + 24) <= length(h)) {
            d = substr(h, 2 * off + 1, 48)
            tl = hv(substr(d, 41, 8))
            if (2 * (off + 24 + tl) > length(h)) break
            tid = substr(h, 2 * (off + 24) + 1, 2 * tl)
            if (tl == 24 && substr(tid, 2, 1) == "6") tid = substr(tid, 1, 8) "sas-" substr(tid, 24, 1) substr(tid, 25)
            out = out substr(d, 1, 36) "pppp" substr(d, 41) tid
            off += 24 + tl
        }
        print out substr(h, 2 * off + 1)
    }'
}

# start_helper NAME BINARY: start a helper as in production; waits for its
# socket. Group disk, as docs/multipath.md asks for: the helper opens the
# map's path nodes (root:disk 0660) itself.
start_helper() {
    rm -f "/run/pr-$1.sock"
    extra=""
    [ "$1" = emu ] && extra="-c /etc/tier-emu.toml"
    [ -n "$SECCOMP" ] && [ "$2" = /usr/bin/rs-pr-helper ] && extra="$extra --seccomp $SECCOMP"
    # shellcheck disable=SC2086
    "$2" $extra -k "/run/pr-$1.sock" -u nobody -g disk >"/tmp/helper-$1.log" 2>&1 &
    eval "HELPER_PID_$1=$!"
    i=0
    while [ $i -lt 50 ] && [ ! -S "/run/pr-$1.sock" ]; do
        usleep 100000
        i=$((i + 1))
    done
    [ -S "/run/pr-$1.sock" ]
}

# seccomp_log_check: the seccomp log pass (SECCOMP=log) ran our helper with
# its filter logging instead of killing; every system call the filter lacks
# left an audit record (type 1326) in the kernel log. Any record for our
# helper fails, whether or not a scenario would have hit the killing path.
seccomp_log_check() {
    begin "seccomp-log.$MODE" || return 0
    al=$(cat /proc/sys/kernel/seccomp/actions_logged 2>/dev/null)
    case " $al " in
    *" log "*) ;;
    *) fail "/proc/sys/kernel/seccomp/actions_logged is [$al]: log events would not be recorded" ;;
    esac
    dmesg | grep -q 'audit_enabled=1' ||
        fail "audit is off (booted without audit=1?): seccomp events would not be recorded"
    # Audit records reach the kernel log rate-limited; dropped ones could hide an event.
    dmesg | grep -q 'kauditd_printk_skb.*suppressed' &&
        fail "the kernel dropped audit records: $(dmesg | grep 'kauditd_printk_skb.*suppressed' | head -2 | tr '\n' ' ')"
    dmesg | grep 'type=1326' | grep 'rs-pr-helper' >/tmp/seccomp.events
    n=$(wc -l </tmp/seccomp.events)
    if [ "$n" -gt 0 ]; then
        fail "$n seccomp event(s) of our helper in the kernel log"
        sed -n 's/.* syscall=\([0-9]*\) .*/\1/p' /tmp/seccomp.events | sort -n | uniq -c |
            while read -r count nr; do
                name=$(awk -v n="$nr" '$1 == n {print $2; exit}' /etc/syscalls 2>/dev/null)
                fail "system call ${name:-?} ($nr) not in the allowlist, $count event(s)"
            done
        head -3 /tmp/seccomp.events | while read -r line; do fail "kernel: $(echo "$line" | cut -c1-300)"; done
    fi
    note "actions_logged: $al; $n event(s)"
    end
}

# expect_disk_nodes NODE...: each NODE is a block or character device,
# root:disk 0660, as udev makes them.
expect_disk_nodes() {
    local d m disk
    disk=$(awk -F: '$1 == "disk" {print $3}' /etc/group)
    for d in "$@"; do
        # shellcheck disable=SC2012
        m=$(ls -ln "$d" 2>/dev/null | awk '{print $1, $3, $4}')
        case "$m" in
        [bc]"rw-rw----"*" 0 $disk") ;;
        *) fail "$d is [$m] (mode, uid, gid), want rw-rw---- root:disk (0 $disk)" ;;
        esac
    done
}

# expect_pid_alive PID LOG WHEN: the helper PID still runs after WHEN;
# otherwise fail with the end of its LOG.
expect_pid_alive() {
    local pstate
    pstate=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null)
    case "$pstate" in
    "" | Z | X) fail "after $3 our helper (pid $1) is gone; its log: $(tail -c 400 "$2" | tr '\n' ' ')" ;;
    esac
}
