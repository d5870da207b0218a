# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=dash disable=SC3043
# shellcheck disable=SC2034,SC2154
# The sid stage with multipathd 0.15 owning a map (sourced by guest/sid.sh,
# after the nested guest is gone). udevd (sid's) makes the nodes and runs
# the multipath rules; multipathd makes map over nexus 1 and 2 of LU A
# (reservation_key file); nexus 3 stays the observer. multipathd runs with
# -v4, the level at which it logs every command it gets ("Got request
# [...]"). Our helper serves the map, as root (.root) and started as root
# with -u nobody -g disk (.user):
# sid.mpd.udev-multipathd: udev made the paths, their sg nodes and the map
#   root:disk 0660 (they are root:root 0600 before udev starts), and
#   multipathd shows both paths active and ready (once: no helper in it);
# sid.mpd.register.P: REGISTER through the helper registers both paths and
#   teaches multipathd the key (getprkey) and the status (getprstatus);
# sid.mpd.hold.P: multipathd's getprhold follows RESERVE, RELEASE and the
#   unregistering REGISTER (new in multipath-tools 0.13);
# sid.mpd.unregister.P: unregistering leaves no key anywhere;
# sid.mpd.pathlist.P: after REGISTER the helper tells multipathd which paths
#   it registered, `setprstatus map M pathlist "MAJ:MIN MAJ:MIN"` (the map's
#   two paths by device number), and multipathd registers neither again;
# sid.mpd.path-readd.P: a path unregistered directly, then `del path` and
#   `add path`: multipathd registers the key on it again;
# sid.mpd.restart.P: multipathd killed (SIGKILL) and started again: the
#   next REGISTER (0x4444) registers both paths, the helper lives on, the
#   new multipathd answers 0x4444;
# sid.mpd.start-after-helper.P: the same with the helper started while
#   multipathd is down (0x5555);
# sid.mpd.mpathpersist: the same REGISTER and cycle with multipath-tools' own
#   client (mpathpersist, libmpathpersist 0.15.1); multipathd must end in
#   the same states; the commands it sent and ours are shown side by side.


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

# sid_mpd_state WHO WHEN KEY STATUS HOLD: multipathd's record of the map
# after WHO's WHEN, shown as @@INFO, and required to be KEY, STATUS, HOLD.
sid_mpd_state() {
    local key status hold
    mpd_expect "$1 $2" getprkey "$3"
    key=$MPD_OUT
    mpd_expect "$1 $2" getprstatus "$4"
    status=$MPD_OUT
    mpd_expect "$1 $2" getprhold "$5"
    hold=$MPD_OUT
    echo "@@INFO sid multipathd after $1 $2: getprkey [$key] getprstatus [$status] getprhold [$hold]"
}

# sid_mpd_ready: multipathd shows both paths of the map active and ready.
sid_mpd_ready() {
    local i=0
    while [ $i -lt 120 ]; do
        [ "$(timeout 10 multipathd show paths format '%m %t %T' 2>/dev/null | grep -c "^$SID_MAPNAME *active *ready")" = 2 ] && return 0
        sleep 1
        i=$((i + 1))
    done
    echo "@@INFO sid multipathd paths: $(timeout 10 multipathd show paths format '%d %m %t %T' 2>&1 | tr '\n' ';')"
    return 1
}

# sid_mpd_run: multipathd in the background (-v4, its log appended to
# /tmp/multipathd.log), answering its socket.
sid_mpd_run() {
    local i=0
    multipathd -d -s -v4 >>/tmp/multipathd.log 2>&1 &
    SID_MPD_PID=$!
    while [ $i -lt 60 ]; do
        timeout 10 multipathd show daemon >/dev/null 2>&1 && return 0
        sleep 1
        i=$((i + 1))
    done
    return 1
}

# sid_mpd_kill: multipathd killed with SIGKILL (its map stays).
sid_mpd_kill() {
    kill -9 "$SID_MPD_PID" 2>/dev/null
    wait "$SID_MPD_PID" 2>/dev/null
    SID_MPD_PID=""
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
    : >/tmp/multipathd.log
    sid_mpd_run || echo "@@INFO sid multipathd does not answer"
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
        grep -v 'Got request\|checker\|poll' /tmp/multipathd.log | tail -30 | sed 's/^/@@INFO sid multipathd log: /'
        return 1
    fi
    sid_mpd_ready
    udevadm settle --timeout=60
    echo "@@INFO sid multipathd map $SID_MAPNAME $SID_MAP: $(multipathd show paths format '%d %m %t %T' 2>&1 | tr '\n' ';')"
}

# sid.mpd.udev-multipathd: udev, not this script, made the nodes root:disk
# 0660 (the helper as nobody:disk opens the paths itself).
sid_mpd_nodes() {
    begin mpd.udev-multipathd || return 0
    expect_disk_nodes "$PATH1" "$PATH2" "$SG1" "$SG2" "$SID_MAP"
    sid_mpd_ready || fail "multipathd does not show both paths of $SID_MAPNAME active and ready"
    end
}

# mpd_pr LABEL WANT_RC ARGS...: one command through our helper on the map.
mpd_pr() {
    B=mpd-$P
    mkdir -p "$RES/$B" "$RES/$B.masked"
    step "$@" "$SID_MAP"
}

# sid_mpd_reset: an empty LU, and multipathd holding no key for the map.
sid_mpd_reset() {
    STATE_NEXUS=3
    reset_lu
    mpd unsetprkey map "$SID_MAPNAME"
    mpd unsetprstatus map "$SID_MAPNAME"
}

# mpd_log_pr WHO: the PR commands multipathd logged since the last call, as
# @@INFO (what WHO told it).
MPD_MARK=0
mpd_log_pr() {
    sed -n "$((MPD_MARK + 1)),\$p" /tmp/multipathd.log | grep -v 'client_state_machine\|Got request \[get' |
        grep -E 'Got request \[(un)?setpr|prflag|prhold|keys found|registration for' |
        head -16 | cut -c1-220 | sed "s/^/@@INFO sid multipathd log after $1: /"
    MPD_MARK=$(wc -l </tmp/multipathd.log)
}

# Commands multipathd got since a mark, verbatim (its -v4 "Got request").
mpd_mark() { REQ_MARK=$(wc -l </tmp/multipathd.log); }
mpd_since() { sed -n "$((REQ_MARK + 1)),\$p" /tmp/multipathd.log; }
mpd_requests() { mpd_since | sed -n 's/.*Got request \[\(.*\)\]$/\1/p' | grep -E '^(un)?setpr'; }
# mpd_setprstatus: the last setprstatus multipathd got since the mark (the
# helper may answer the client before multipathd has logged it: 10 s).
mpd_setprstatus() {
    local i=0 got=""
    while [ $i -lt 20 ]; do
        got=$(mpd_requests | grep '^setprstatus ' | tail -1)
        [ -n "$got" ] && break
        usleep 500000
        i=$((i + 1))
    done
    echo "$got"
}

# sid.mpd.pathlist.P: the helper's setprstatus after a REGISTER names the
# two paths it registered by device number, in libmpathpersist's quoting,
# and multipathd, told so, registers neither again.
sid_mpd_pathlist() {
    local got list want sorted n
    begin "mpd.pathlist.$P" || return 0
    sid_mpd_reset
    mpd_mark
    mpd_pr register 0 -o -G -S 0x1111
    sid_expect 0 register "1:0x1111 2:0x1111"
    got=$(mpd_setprstatus)
    OURS_SETPRSTATUS=$got
    echo "@@INFO sid.mpd.pathlist.$P: our helper's commands, as multipathd got them: $(mpd_requests | sed 's/.*/[&]/' | tr '\n' ' ')"
    mpd_since | grep -E 'prflag|keys found|registration for' | head -8 | cut -c1-200 |
        sed "s/^/@@INFO sid.mpd.pathlist.$P: multipathd then: /"
    list=$(echo "$got" | sed -n 's/^setprstatus map [^ ]* pathlist "\(.*\)"$/\1/p')
    want=$(printf '%s\n%s\n' "$MM1" "$MM2" | sort | tr '\n' ' ')
    sorted=$(echo "$list" | tr ' ' '\n' | grep . | sort | tr '\n' ' ')
    if [ -z "$got" ]; then
        fail "multipathd's log shows no setprstatus after the REGISTER"
    elif [ -z "$list" ]; then
        fail "the helper sent no pathlist: [$got]"
    elif [ "$got" != "setprstatus map $SID_MAPNAME pathlist \"$list\"" ]; then
        fail "not the form libmpathpersist sends: [$got]"
    elif [ "$sorted" != "$want" ]; then
        fail "pathlist [$list], want the map's paths as major:minor: [$want]"
    fi
    # Told which paths hold the key, multipathd registers none again.
    n=$(mpd_since | grep -c 'Setting registration for device')
    [ "$n" = 0 ] || fail "multipathd registered $n path(s) again after the helper's setprstatus"
    sid_mpd_state "our helper ($P)" "REGISTER 0x1111" 0x1111 set unset
    mpd_pr unregister 0 -o -G -K 0x1111 -S 0
    sid_expect 0 unregister "-"
    end
}

# sid.mpd.path-readd.P: a path that lost its registration, removed and
# added back, gets the key again from multipathd.
sid_mpd_readd() {
    local dev i
    begin "mpd.path-readd.$P" || return 0
    sid_mpd_reset
    mpd_pr register 0 -o -G -S 0x1111
    on_nexus 2 -o -G -K 0x1111 -S 0
    sid_expect 0 "unregistering nexus 2 directly" "1:0x1111"
    dev=${PATH2#/dev/}
    mpd del path "$dev"
    [ "$MPD_OUT" = ok ] || fail "multipathd del path $dev: [$MPD_OUT]"
    mpd add path "$dev"
    [ "$MPD_OUT" = ok ] || fail "multipathd add path $dev: [$MPD_OUT]"
    DIRTY1=1
    DIRTY2=1
    i=0
    while [ $i -lt 30 ] && [ "$(sid_state 0)" != "1:0x1111 2:0x1111" ]; do
        sleep 1
        i=$((i + 1))
    done
    sid_expect 0 "multipathd del path/add path $dev" "1:0x1111 2:0x1111"
    note "(key back after ${i}s)"
    sid_mpd_ready || fail "path $dev not active again in the map"
    end
}

# expect_helper_alive WHEN: our helper still runs.
expect_helper_alive() {
    expect_pid_alive "$(sid_pid "mpd-$P")" "/tmp/helper-mpd-$P.log" "$1"
}

# sid_mpd_register_after STEP KEY WHEN: after WHEN, a REGISTER of KEY
# through the map reaches both paths, the helper lives on, and multipathd
# knows the key.
sid_mpd_register_after() {
    mpd_pr "$1" 0 -o -G -S "$2"
    sid_expect 0 "register after $3" "1:$2 2:$2"
    expect_helper_alive "$3"
    mpd_expect "register after $3" getprkey "$2"
}

# sid.mpd.restart.P and sid.mpd.start-after-helper.P: multipathd restarts
# while the helper runs, and starts only after the helper: the next
# REGISTER works on every path, the helper lives on, and the new multipathd
# knows the key.
sid_mpd_restart() {
    if begin "mpd.restart.$P"; then
        sid_mpd_reset
        sid_mpd_kill
        { sid_mpd_run && sid_mpd_ready; } || fail "multipathd did not come back with the map ready"
        sid_mpd_register_after register-after-restart 0x4444 "multipathd restarted"
        end
    fi
    if begin "mpd.start-after-helper.$P"; then
        sid_mpd_reset
        sid_mpd_kill
        kill "$(sid_pid "mpd-$P")" 2>/dev/null
        wait "$(sid_pid "mpd-$P")" 2>/dev/null
        cp "/tmp/helper-mpd-$P.log" "/tmp/helper-mpd-$P.1.log"
        sid_start "mpd-$P" /usr/local/bin/rs-pr-helper "$P" || fail "helper did not start"
        { sid_mpd_run && sid_mpd_ready; } || fail "multipathd did not come back with the map ready"
        sid_mpd_register_after register-after-start 0x5555 "multipathd started after the helper"
        end
    fi
}

# sid.mpd.mpathpersist: the same REGISTER and cycle with multipath-tools'
# own client (mpathpersist, libmpathpersist 0.15.1); multipathd must end in
# the same states as after our helper's commands. Its setprstatus and ours
# are shown side by side.
sid_mpathpersist() {
    local got
    begin mpd.mpathpersist || return 0
    mpd_log_pr "our helper (before mpathpersist)" >/dev/null
    mp() {
        mpathpersist "$@" "$SID_MAP" >/tmp/mpp.out 2>&1 || fail "mpathpersist $*: exit $?: $(tr '\n' ' ' </tmp/mpp.out | cut -c1-200)"
    }
    sid_mpd_reset
    mpd_mark
    mp --out --register --param-sark=0x1111
    sid_expect 0 "mpathpersist register" "1:0x1111 2:0x1111"
    got=$(mpd_setprstatus)
    echo "@@INFO sid.mpd.mpathpersist: mpathpersist's commands, as multipathd got them: $(mpd_requests | sed 's/.*/[&]/' | tr '\n' ' ')"
    mpd_since | grep -E 'prflag|keys found|registration for' | head -8 | cut -c1-200 |
        sed "s/^/@@INFO sid.mpd.mpathpersist: multipathd then: /"
    echo "@@INFO sid.mpd.pathlist: for REGISTER 0x1111 on $SID_MAPNAME (paths ${PATH1#/dev/}=$MM1 ${PATH2#/dev/}=$MM2) our helper sent [${OURS_SETPRSTATUS:-not run}], mpathpersist sent [$got]"
    sid_mpd_state mpathpersist "REGISTER 0x1111" 0x1111 set unset
    mp --out --reserve --param-rk=0x1111 --prout-type=5
    mpd_expect "mpathpersist reserve" getprhold set 1
    mp --out --release --param-rk=0x1111 --prout-type=5
    mpd_expect "mpathpersist release" getprhold unset 0
    mp --out --register --param-rk=0x1111 --param-sark=0
    sid_expect 0 "mpathpersist unregister" "-"
    sid_mpd_state mpathpersist unregister none unset unset
    mpd_log_pr mpathpersist
    end
}

sid_mpd() {
    local P
    begin mpd.setup || return 0
    MPD_VER=$(dpkg-query -W -f '${Version}' multipath-tools 2>/dev/null)
    MPD_LABEL="sid multipathd $MPD_VER"
    # udev must be the one that makes the nodes root:disk 0660.
    chgrp root "$PATH1" "$PATH2" "$SG1" "$SG2" && chmod 0600 "$PATH1" "$PATH2" "$SG1" "$SG2"
    sid_mpd_start || fail "udev and multipathd did not set the map up: $(tail -c 600 /tmp/multipathd.log | tr '\n' ';')"
    end
    [ -n "$SID_MAPNAME" ] || return 0
    MM1=$(cat "/sys/block/${PATH1#/dev/}/dev")
    MM2=$(cat "/sys/block/${PATH2#/dev/}/dev")
    sid_mpd_nodes
    for P in root user; do
        sid_start "mpd-$P" /usr/local/bin/rs-pr-helper "$P" || echo "@@INFO sid helper mpd-$P did not start"
        begin "mpd.register.$P" && {
            sid_mpd_reset
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
        sid_mpd_pathlist
        sid_mpd_readd
        sid_mpd_restart
        pid=$(sid_pid "mpd-$P")
        kill "$pid" 2>/dev/null
        cat "/tmp/helper-mpd-$P.1.log" "/tmp/helper-mpd-$P.log" 2>/dev/null | grep -E 'setprstatus|WARN|ERROR' |
            head -4 | cut -c1-250 | sed "s/^/@@INFO sid helper mpd-$P log: /"
    done
    sid_mpathpersist
    sid_image
    mpd setprhold map "$SID_MAPNAME"
    mpd unsetprhold map "$SID_MAPNAME"
    sid_mpd_kill
}

# sid.mpd.image-kubevirt: the KubeVirt image (dist/kubevirt, unpacked on the
# host into /opt/tier/image-root.tar) run as virt-handler's DaemonSet runs
# its pr-helper container, without a runtime: /entrypoint.sh with the
# DaemonSet's arguments, in new mount and pid namespaces, chrooted, as root
# with every capability, with the DaemonSet's mounts (the pr directory,
# /dev, /etc/multipath) and multipathd 0.15's socket bind-mounted in the pr
# directory as virt-handler does. Required: the socket at KubeVirt's path,
# REGISTER through it on multipathd's map registers both paths on LIO,
# multipathd learns the key through the entrypoint's link, and the helper
# keeps CAP_SYS_RAWIO only with no_new_privs and its filter.
sid_image() {
    local root=/tmp/image-root pr=/run/kubevirt/daemons/pr n up helper k=0x6a6a
    begin mpd.image-kubevirt || return 0
    if [ ! -f /opt/tier/image-root.tar ]; then
        echo "@@RESULT $SCEN SKIP no image (dist/kubevirt/build.sh did not run before the tier)"
        SCEN=""
        return 0
    fi
    mkdir -p "$root" "$pr"
    tar -xf /opt/tier/image-root.tar -C "$root" || { fail "cannot unpack the image"; end; return; }
    mkdir -p "$root/proc" "$root/sys" "$root/dev" "$root/etc/multipath" "$root/var/run/kubevirt/daemons/pr"
    # virt-handler's bind mount of the host's socket; the pr directory then
    # goes into the container with its submounts (KubeVirt mounts it
    # bidirectional: --rbind here).
    : >"$pr/multipathd.socket"
    mount --bind /run/multipathd.socket "$pr/multipathd.socket" || fail "cannot bind multipathd's socket"
    rm -f "$pr/pr-helper.sock"
    # shellcheck disable=SC2016
    unshare --mount --pid --fork --propagation private /bin/sh -c '
        root=$1 pr=$2; shift 2
        mount -t proc proc "$root/proc"
        mount --rbind /sys "$root/sys"
        mount --rbind /dev "$root/dev"
        mount --rbind "$pr" "$root/var/run/kubevirt/daemons/pr"
        mount --bind /etc/multipath "$root/etc/multipath"
        exec chroot "$root" "$@"' sh "$root" "$pr" \
        /entrypoint.sh -k /var/run/kubevirt/daemons/pr/pr-helper.sock >/tmp/helper-image.log 2>&1 &
    up=$!
    n=0
    while [ $n -lt 100 ] && ! { [ -S "$pr/pr-helper.sock" ] && grep -q '"listening"' /tmp/helper-image.log; }; do
        usleep 100000
        n=$((n + 1))
    done
    [ -S "$pr/pr-helper.sock" ] || fail "no socket at KubeVirt's path: $(tail -c 400 /tmp/helper-image.log)"
    helper=$(cat "/proc/$up/task/$up/children" 2>/dev/null | cut -d' ' -f1)
    if [ -n "$helper" ]; then
        echo "@@INFO $SCEN helper: $(grep -E '^(Uid|Cap[A-Za-z]*|NoNewPrivs|Seccomp):' "/proc/$helper/status" | tr -s '\t ' ' ' | tr '\n' ';')"
        [ "$(awk '$1 == "CapEff:" {print $2}' "/proc/$helper/status")" = 0000000000020000 ] ||
            fail "the image's helper does not keep CAP_SYS_RAWIO only"
        [ "$(awk '$1 == "NoNewPrivs:" {print $2}' "/proc/$helper/status")" = 1 ] || fail "no no_new_privs"
        [ "$(awk '$1 == "Seccomp:" {print $2}' "/proc/$helper/status")" = 2 ] || fail "no seccomp filter"
    else
        fail "the image's helper is not running: $(tail -c 400 /tmp/helper-image.log)"
    fi
    echo "@@INFO $SCEN link: /run/multipathd.socket -> $(readlink "$root/run/multipathd.socket")"
    qemu-pr-client --socket "$pr/pr-helper.sock" --json -o -G -S $k "$SID_MAP" >/tmp/image.out 2>&1 ||
        fail "REGISTER through the image's socket: $(head -c 300 /tmp/image.out)"
    sid_expect 0 "REGISTER through the image" "1:$k 2:$k"
    mpd_expect "REGISTER through the image" getprkey $k
    mpd_expect "REGISTER through the image" getprstatus set registered 1
    qemu-pr-client --socket "$pr/pr-helper.sock" --json -o -G -K $k -S 0 "$SID_MAP" >/tmp/image.out 2>&1 ||
        fail "unregister through the image's socket: $(head -c 300 /tmp/image.out)"
    sid_expect 0 "unregister through the image" "-"
    mpd_expect "unregister through the image" getprkey none
    [ -n "$helper" ] && kill "$helper" 2>/dev/null
    n=0
    while [ $n -lt 50 ] && kill -0 "$up" 2>/dev/null; do usleep 100000; n=$((n + 1)); done
    kill -9 "$up" 2>/dev/null
    umount "$pr/multipathd.socket" 2>/dev/null
    [ $SCEN_FAIL = 0 ] || grep -i 'multipathd\|WARN\|ERROR' /tmp/helper-image.log | head -6 | cut -c1-300 |
        sed "s/^/@@INFO $SCEN log: /"
    end
}
