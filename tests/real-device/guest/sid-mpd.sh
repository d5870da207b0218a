# shellcheck shell=dash disable=SC3043
# shellcheck disable=SC2034,SC2154
# The sid stage with multipathd 0.15 owning a map (sourced by guest/sid.sh,
# after the nested guest is gone). udevd (sid's) makes the nodes and runs
# the multipath rules; multipathd makes map over nexus 1 and 2 of LU A
# (reservation_key file); nexus 3 stays the observer. Our helper serves the
# map, as root (.root) and started as root with -u nobody -g disk (.user):
# sid.mpd.register.P: REGISTER through the helper registers both paths and
#   teaches multipathd the key (getprkey) and the status (getprstatus);
# sid.mpd.hold.P: multipathd's getprhold follows RESERVE, RELEASE and the
#   unregistering REGISTER (new in multipath-tools 0.13);
# sid.mpd.unregister.P: unregistering leaves no key anywhere.

MPD_SEEN=" "
# mpd ARGS...: one multipathd client command; the reply in MPD_OUT. Each
# distinct reply to each command word is shown once as @@INFO.
mpd() {
    MPD_OUT=$(timeout 30 multipathd "$@" 2>&1 | tr '\n' ' ' | sed 's/ *$//')
    _seen="$1=$(echo "$MPD_OUT" | tr -c 'a-zA-Z0-9\n' _)"
    case "$MPD_SEEN" in
    *" $_seen "*) ;;
    *)
        MPD_SEEN="$MPD_SEEN$_seen "
        echo "@@INFO sid multipathd $MPD_VER: [$*] answered [$MPD_OUT]"
        ;;
    esac
}

# mpd_expect WHEN COMMAND WANT...: multipathd's reply to "COMMAND map M" is
# one of WANT (a key reply may carry a ":aptpl"-style suffix).
mpd_expect() {
    local when=$1 cmd=$2 w
    shift 2
    mpd "$cmd" map "$SID_MAPNAME"
    for w in "$@"; do
        case "$MPD_OUT" in "$w" | "$w:"*) return 0 ;; esac
    done
    fail "multipathd $cmd after $when: want [$*], got [$MPD_OUT]"
}

sid_mpd_start() {
    local udevd i d
    udevd=/usr/lib/systemd/systemd-udevd
    [ -x $udevd ] || udevd=/lib/systemd/systemd-udevd
    $udevd --daemon >/tmp/udevd.log 2>&1 || return 1
    udevadm trigger --action=add >/dev/null 2>&1
    udevadm settle --timeout=180 || echo "@@INFO sid udevadm settle timed out"
    mkdir -p /etc/multipath
    # One option per line: multipath-tools 0.15 rejects a one-line section.
    cat >/etc/multipath.conf <<CONF
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
    devnode "^(${PATH1#/dev/}|${PATH2#/dev/})\$"
}
CONF
    multipathd -d -s -v3 >/tmp/multipathd.log 2>&1 &
    SID_MPD_PID=$!
    i=0
    SID_MAPNAME=""
    while [ $i -lt 120 ]; do
        for d in /sys/block/dm-*; do
            case "$(cat "$d/dm/uuid" 2>/dev/null)" in mpath-*) SID_MAPNAME=$(cat "$d/dm/name"); SID_MAP=/dev/${d##*/} ;; esac
        done
        [ -n "$SID_MAPNAME" ] && break
        sleep 1
        i=$((i + 1))
    done
    if [ -z "$SID_MAPNAME" ]; then
        tail -30 /tmp/multipathd.log | sed 's/^/@@INFO sid multipathd log: /'
        return 1
    fi
    i=0
    while [ $i -lt 120 ]; do
        [ "$(timeout 10 multipathd show paths format '%m %t %T' 2>/dev/null | grep -c "^$SID_MAPNAME *active *ready")" = 2 ] && break
        sleep 1
        i=$((i + 1))
    done
    udevadm settle --timeout=60
    echo "@@INFO sid multipathd map $SID_MAPNAME $SID_MAP: $(multipathd show paths format '%d %m %t %T' 2>&1 | tr '\n' ';')"
}

# mpd_pr LABEL WANT_RC ARGS...: one command through our helper on the map.
mpd_pr() {
    B=mpd-$P
    mkdir -p "$RES/$B" "$RES/$B.masked"
    step "$@" "$SID_MAP"
}

# mpd_log_pr WHO: the PR commands multipathd logged (-v3) since the last
# call, as @@INFO (what WHO told it).
MPD_MARK=0
mpd_log_pr() {
    sed -n "$((MPD_MARK + 1)),\$p" /tmp/multipathd.log | grep -iE 'pr(key|status|hold)|pathlist' |
        head -12 | cut -c1-200 | sed "s/^/@@INFO sid multipathd log after $1: /"
    MPD_MARK=$(wc -l </tmp/multipathd.log)
}

# sid.mpd.mpathpersist: the same cycle with multipath-tools' own client
# (mpathpersist, libmpathpersist 0.15.1); multipathd must end in the same
# states as after our helper's commands.
sid_mpathpersist() {
    begin mpd.mpathpersist || return 0
    mpd_log_pr "our helper (before mpathpersist)" >/dev/null
    mp() {
        mpathpersist "$@" "$SID_MAP" >/tmp/mpp.out 2>&1 || fail "mpathpersist $*: exit $?: $(tr '\n' ' ' </tmp/mpp.out | cut -c1-200)"
    }
    mp --out --register --param-sark=0x2222
    sid_expect 0 "mpathpersist register" "1:0x2222 2:0x2222"
    mpd_expect "mpathpersist register" getprkey 0x2222
    mpd_expect "mpathpersist register" getprstatus set registered 1
    mp --out --reserve --param-rk=0x2222 --prout-type=5
    mpd_expect "mpathpersist reserve" getprhold set 1
    mp --out --release --param-rk=0x2222 --prout-type=5
    mpd_expect "mpathpersist release" getprhold unset 0
    mp --out --register --param-rk=0x2222 --param-sark=0
    sid_expect 0 "mpathpersist unregister" "-"
    mpd_expect "mpathpersist unregister" getprkey none
    mpd_expect "mpathpersist unregister" getprstatus unset unregistered 0
    mpd_log_pr mpathpersist
    end
}

sid_mpd() {
    local P
    begin mpd.setup || return 0
    MPD_VER=$(dpkg-query -W -f '${Version}' multipath-tools 2>/dev/null)
    sid_mpd_start || fail "udev and multipathd did not set the map up: $(tail -c 600 /tmp/multipathd.log | tr '\n' ';')"
    end
    [ -n "$SID_MAPNAME" ] || return 0
    for P in root user; do
        sid_start "mpd-$P" /usr/local/bin/rs-pr-helper "$P" || echo "@@INFO sid helper mpd-$P did not start"
        begin "mpd.register.$P" && {
            mpd_pr register 0 -o -G -S 0x1111
            sid_expect 0 register "1:0x1111 2:0x1111"
            mpd_expect register getprkey 0x1111
            mpd_expect register getprstatus set registered 1
            end
        }
        begin "mpd.hold.$P" && {
            mpd_expect "register (no reservation)" getprhold unset 0
            mpd_pr reserve 0 -o -R -K 0x1111 -T 5
            mpd_expect reserve getprhold set 1
            mpd_pr release 0 -o -L -K 0x1111 -T 5
            mpd_expect release getprhold unset 0
            mpd_pr reserve-again 0 -o -R -K 0x1111 -T 5
            mpd_expect "reserve again" getprhold set 1
            end
        }
        begin "mpd.unregister.$P" && {
            mpd_pr unregister 0 -o -G -K 0x1111 -S 0
            sid_expect 0 unregister "-"
            mpd_expect unregister getprhold unset 0
            mpd_expect unregister getprkey none
            mpd_expect unregister getprstatus unset unregistered 0
            end
        }
        mpd_log_pr "our helper ($P)"
        pid=$(sid_pid "mpd-$P")
        kill "$pid" 2>/dev/null
        grep -iE 'multipathd|WARN|ERROR' "/tmp/helper-mpd-$P.log" | head -8 | cut -c1-250 | sed "s/^/@@INFO sid helper mpd-$P log: /"
    done
    sid_mpathpersist
    mpd setprhold map "$SID_MAPNAME"
    mpd unsetprhold map "$SID_MAPNAME"
    kill "$SID_MPD_PID" 2>/dev/null
}
