# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=dash disable=SC3043
# shellcheck disable=SC2034,SC2154
# The sid stage with libvirt 12.8 (sourced by guest/sid.sh after the
# nested-guest scenarios; uses sid-e2e.sh's l2 functions).
# sid.libvirt.managed: qemu.conf's pr_helper is our binary and the domain's
# disk (nexus 9 of LU A) has <reservations managed='yes'/>: libvirt starts the helper
# itself, QEMU's pr-manager reports it connected, the nested guest's
# sg_persist cycle passes through it, and the helper is gone once the
# domain has stopped (the guest powers off; <acpi/> lets that end QEMU).
# libvirt runs relaxed here (no cgroups, namespaces or security driver);
# QEMU runs as root.
# sid.libvirt.shipped: the same with qemu.conf as Debian ships it (only
# pr_helper set): QEMU runs as libvirt-qemu, libvirt's mount namespace and
# cgroups (cgroup2, no systemd: libvirt's own /machine partition) and
# virtlogd are in effect, on nexus f of LU C. The helper must run in the
# domain's mount namespace and cgroup, serve the cycle and be gone after.

# sid_libvirt_start: libvirtd and the domain. Called early (while the other
# nested guest boots: with two vCPUs both boots run at once); what went
# wrong is kept in LV_ERR for the scenario to report.
LV_STARTED=0
LV_ERR=""
LV_HP=""
LV_DAEMON=libvirtd
VIRSH=""
L2PID_lv=""
sid_libvirt_start() {
    local n pid st
    LV_STARTED=1
    # Debian's libvirt-daemon ships the monolithic libvirtd.
    local daemon=libvirtd sock=/run/libvirt/libvirt-sock
    if command -v virtqemud >/dev/null; then daemon=virtqemud sock=/run/libvirt/virtqemud-sock; fi
    LV_DAEMON=$daemon
    if ! command -v $daemon >/dev/null; then
        LV_ERR="no libvirtd"
        return 1
    fi
    mkdir -p /run/libvirt /var/lib/libvirt/qemu /var/log/libvirt/qemu /var/cache/libvirt/qemu
    # Our binary, with the stage's seccomp log mode and command log.
    cat >/usr/local/bin/rs-pr-helper-libvirt <<'SH'
#!/bin/sh
exec /usr/local/bin/rs-pr-helper --seccomp log -v "$@" 2>>/tmp/helper-libvirt.log
SH
    chmod 0755 /usr/local/bin/rs-pr-helper-libvirt
    [ -f /tmp/qemu.conf.shipped ] || cp /etc/libvirt/qemu.conf /tmp/qemu.conf.shipped
    cat >/etc/libvirt/qemu.conf <<'CONF'
pr_helper = "/usr/local/bin/rs-pr-helper-libvirt"
stdio_handler = "file"
security_driver = "none"
user = "root"
group = "root"
namespaces = [ ]
cgroup_controllers = [ ]
CONF
    $daemon --daemon >/tmp/libvirtd.log 2>&1 || LV_ERR="$daemon did not start: $(head -c 300 /tmp/libvirtd.log)"
    n=0
    while [ $n -lt 90 ] && [ ! -S $sock ]; do sleep 1; n=$((n + 1)); done
    VIRSH="virsh -c qemu:///system?socket=$sock"
    echo "@@INFO sid libvirt: $($VIRSH version 2>&1 | tr '\n' ' ' | tr -s ' ')"
    rm -f /tmp/nested-lv.log /tmp/ctl-lv.in /tmp/ctl-lv.out
    mkfifo /tmp/ctl-lv.in /tmp/ctl-lv.out
    cat /tmp/ctl-lv.out >/dev/null &
    cat >/tmp/domain.xml <<XML
<domain type='qemu'>
  <name>tier</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>/usr/lib/modules/$(uname -r)/vmlinuz</kernel>
    <initrd>/tmp/l2.initrd</initrd>
    <cmdline>console=ttyS0 panic=-1 loglevel=4 mitigations=off tier.disks=1</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='scsi' index='0' model='virtio-scsi'/>
    <disk type='block' device='lun'>
      <driver name='qemu' type='raw'/>
      <source dev='$PATH9'>
        <reservations managed='yes'/>
      </source>
      <target dev='sda' bus='scsi'/>
      <address type='drive' controller='0' bus='0' target='0' unit='0'/>
    </disk>
    <serial type='file'><source path='/tmp/nested-lv.log'/><target port='0'/></serial>
    <serial type='pipe'><source path='/tmp/ctl-lv'/><target port='1'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
XML
    : >/tmp/helper-libvirt.log
    if ! $VIRSH create /tmp/domain.xml >/tmp/virsh.out 2>&1; then
        LV_ERR="virsh create failed: $(tr '\n' ' ' </tmp/virsh.out | head -c 400)"
        return 1
    fi
    for pid in $(ls /proc | grep '^[0-9]*$'); do
        case "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" in
        */usr/local/bin/rs-pr-helper*-k\ /var/lib/libvirt/*) LV_HP=$pid ;;
        esac
    done
    if [ -n "$LV_HP" ]; then
        echo "@@INFO sid libvirt started our helper: $(tr '\0' ' ' <"/proc/$LV_HP/cmdline")"
    else
        LV_ERR="libvirt started no helper of ours"
    fi
    st=$($VIRSH qemu-monitor-command tier '{"execute":"query-pr-managers"}' 2>&1)
    echo "@@INFO sid libvirt query-pr-managers: $st"
    echo "$st" | grep -q '"connected": *true' || LV_ERR="$LV_ERR; QEMU's pr-manager is not connected: $st"
    L2PID_lv=$(cat /run/libvirt/qemu/tier.pid 2>/dev/null)
    LV_T0=$(e2e_now)
}

# lv_cycle L2NAME DOMAIN KEY LU NEXUS WHO: the nested guest's cycle on the
# domain's one disk (NEXUS of LU), then its power-off; the domain must stop.
lv_cycle() {
    local prev=${L2NAME:-} n
    l2_use "$1"
    if l2_wait_ready "$SID_LIMIT_L2"; then
        l2_step register 0 sgp 0 -o -G -S "$3"
        l2_step reserve 0 sgp 0 -o -R -K "$3" -T 5
        sid_expect "$4" reserve "$5:$3:R5"
        l2_step read-reservation 0 sgp 0 -i -r
        echo "$L2OUT" | grep -q "${3#0x}" || fail "READ RESERVATION did not show $3"
        l2_step write 0 write 0
        l2_step release 0 sgp 0 -o -L -K "$3" -T 5
        l2_step unregister 0 sgp 0 -o -G -K "$3" -S 0
        sid_expect "$4" unregister "-"
        l2 60 off 0 || true
    else
        fail "nested guest $6 not ready: $(tr -d '\r' <"/tmp/nested-$1.log" 2>/dev/null | tail -3 | tr '\n' '|')"
    fi
    n=0
    while [ $n -lt 60 ] && $VIRSH domstate "$2" >/dev/null 2>&1; do sleep 1; n=$((n + 1)); done
    $VIRSH domstate "$2" >/dev/null 2>&1 && { fail "the domain did not stop after the guest powered off"; $VIRSH destroy "$2" >/dev/null 2>&1; }
    L2NAME=$prev
}

# lv_helper_gone PID: libvirt's helper (if it was found) ends once its
# domain has stopped.
lv_helper_gone() {
    local n=0
    while [ -n "$1" ] && [ $n -lt 30 ] && [ -d "/proc/$1" ]; do sleep 1; n=$((n + 1)); done
    [ -n "$1" ] && [ -d "/proc/$1" ] && fail "our helper (pid $1) still runs after the domain stopped"
}

sid_libvirt() {
    local hp
    begin libvirt.managed || return 0
    [ "$LV_STARTED" = 1 ] || sid_libvirt_start
    hp=$LV_HP
    [ -z "$LV_ERR" ] || fail "$LV_ERR"
    [ -n "$VIRSH" ] && [ -n "$L2PID_lv" ] && lv_cycle lv tier 0x7101 0 9 "(libvirt)"
    lv_helper_gone "$hp"
    grep -c 'command done' /tmp/helper-libvirt.log | sed 's/^/@@INFO sid libvirt helper commands: /'
    [ $SCEN_FAIL = 0 ] || tail -5 /tmp/libvirtd.log | sed 's/^/@@INFO sid libvirtd: /' | cut -c1-300
    kill "$(cat "/run/libvirt/$LV_DAEMON.pid" "/run/$LV_DAEMON.pid" 2>/dev/null | head -1)" 2>/dev/null
    end
}

# lv_pids_of PATTERN: pids whose command line (spaces for NULs) matches.
lv_pids_of() {
    local pid
    for pid in $(ls /proc | grep '^[0-9]*$'); do
        case "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" in
        $1) echo "$pid" ;;
        esac
    done
}

# sid_libvirt_shipped_start: libvirtd again, now with Debian's qemu.conf and
# only pr_helper set, virtlogd beside it, and a domain on nexus f that boots
# in the background. Errors in LV2_ERR.
LV2_ERR=""
LV2_STARTED=0
sid_libvirt_shipped_start() {
    local n sock=/run/libvirt/libvirt-sock qpid
    case "sid.libvirt.shipped" in *"$ONLY"*) ;; *) return 0 ;; esac
    LV2_STARTED=1
    command -v libvirtd >/dev/null || { LV2_ERR="no libvirtd"; return 1; }
    # The first libvirtd (relaxed) is gone once sid_libvirt has run.
    n=0
    while [ $n -lt 30 ] && [ -S $sock ] && lv_pids_of '*libvirtd --daemon*' | grep -q .; do
        sleep 1
        n=$((n + 1))
    done
    rm -f $sock
    [ -f /tmp/qemu.conf.shipped ] || cp /etc/libvirt/qemu.conf /tmp/qemu.conf.shipped
    cp /tmp/qemu.conf.shipped /etc/libvirt/qemu.conf
    echo 'pr_helper = "/usr/local/bin/rs-pr-helper-libvirt"' >>/etc/libvirt/qemu.conf
    echo "@@INFO sid libvirt (shipped) qemu.conf: $(grep -v '^#' /etc/libvirt/qemu.conf | grep . | tr '\n' ' ')"
    mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup || { LV2_ERR="cannot mount cgroup2"; return 1; }
    echo "@@INFO sid libvirt (shipped) cgroup controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
    virtlogd --daemon >/tmp/virtlogd.log 2>&1 || LV2_ERR="virtlogd did not start: $(head -c 200 /tmp/virtlogd.log)"
    libvirtd --daemon >/tmp/libvirtd-shipped.log 2>&1 || LV2_ERR="libvirtd did not start: $(head -c 300 /tmp/libvirtd-shipped.log)"
    n=0
    while [ $n -lt 90 ] && [ ! -S $sock ]; do sleep 1; n=$((n + 1)); done
    VIRSH="virsh -c qemu:///system?socket=$sock"
    rm -f /tmp/nested-lv2.log /tmp/ctl-lv2.in /tmp/ctl-lv2.out
    mkfifo /tmp/ctl-lv2.in /tmp/ctl-lv2.out
    cat /tmp/ctl-lv2.out >/dev/null &
    sed -e "s|<name>tier</name>|<name>tier2</name>|" -e "s|$PATH9|$PATHf|" \
        -e "s|/tmp/nested-lv.log|/tmp/nested-lv2.log|" -e "s|/tmp/ctl-lv'|/tmp/ctl-lv2'|" \
        /tmp/domain.xml >/tmp/domain2.xml
    : >/tmp/helper-libvirt.log
    if ! $VIRSH create /tmp/domain2.xml >/tmp/virsh2.out 2>&1; then
        LV2_ERR="virsh create failed: $(tr '\n' ' ' </tmp/virsh2.out | head -c 400)"
        return 1
    fi
    LV2_HP=$(lv_pids_of '*/usr/local/bin/rs-pr-helper*-k /var/lib/libvirt/qemu/domain-*-tier2/*' | head -1)
    qpid=$(cat /run/libvirt/qemu/tier2.pid 2>/dev/null)
    L2PID_lv2=$qpid
    [ -n "$LV2_HP" ] || { LV2_ERR="libvirt started no helper of ours"; return 1; }
    echo "@@INFO sid libvirt (shipped) started our helper: $(tr '\0' ' ' <"/proc/$LV2_HP/cmdline")"
    LV2_NS=$(readlink "/proc/$LV2_HP/ns/mnt")
    LV2_QNS=$(readlink "/proc/$qpid/ns/mnt" 2>/dev/null)
    LV2_CG=$(cut -d: -f3 "/proc/$LV2_HP/cgroup")
    LV2_QCG=$(cut -d: -f3 "/proc/$qpid/cgroup" 2>/dev/null)
    LV2_QUID=$(awk '/^Uid:/ {print $3}' "/proc/$qpid/status" 2>/dev/null)
    echo "@@INFO sid libvirt (shipped): helper mnt $LV2_NS cgroup $LV2_CG; QEMU uid $LV2_QUID mnt $LV2_QNS cgroup $LV2_QCG; init mnt $(readlink /proc/1/ns/mnt)"
}

sid_libvirt_shipped() {
    local hp=${LV2_HP:-}
    begin libvirt.shipped || return 0
    [ "$LV2_STARTED" = 1 ] || sid_libvirt_shipped_start
    [ -z "$LV2_ERR" ] || fail "$LV2_ERR"
    if [ -n "$hp" ]; then
        [ "$LV2_QUID" != 0 ] && [ -n "$LV2_QUID" ] || fail "QEMU runs as uid [$LV2_QUID]: want libvirt-qemu, as shipped"
        [ -n "$LV2_QNS" ] && [ "$LV2_QNS" != "$(readlink /proc/1/ns/mnt)" ] || fail "QEMU has no mount namespace of its own: [$LV2_QNS]"
        [ "$LV2_NS" = "$LV2_QNS" ] || fail "the helper is not in the domain's mount namespace: [$LV2_NS], QEMU [$LV2_QNS]"
        case "$LV2_CG" in */machine/*tier2*) ;; *) fail "the helper is not in the domain's cgroup: [$LV2_CG]" ;; esac
    fi
    [ -n "$VIRSH" ] && [ -n "${L2PID_lv2:-}" ] && [ -z "$LV2_ERR" ] &&
        lv_cycle lv2 tier2 0x7201 2 f "(libvirt, shipped)"
    lv_helper_gone "$hp"
    grep -c 'command done' /tmp/helper-libvirt.log | sed 's/^/@@INFO sid libvirt (shipped) helper commands: /'
    [ $SCEN_FAIL = 0 ] || { tail -8 /tmp/libvirtd-shipped.log; tail -5 /tmp/helper-libvirt.log; tail -5 /var/log/libvirt/qemu/tier2.log; } 2>/dev/null | sed 's/^/@@INFO sid libvirt (shipped): /' | cut -c1-300
    kill "$(cat /run/libvirtd.pid 2>/dev/null)" "$(cat /run/virtlogd.pid 2>/dev/null)" 2>/dev/null
    end
}
