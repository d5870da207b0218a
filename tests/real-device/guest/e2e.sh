# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=dash disable=SC3043,SC2034
# End to end through QEMU (--with-qemu-boot), sourced by /init after the
# scenarios. QEMU boots a nested guest (TCG inside TCG) whose scsi-block disk
# is this guest's $PATH1 with pr-manager=pr0, pr0 being our helper started as
# in production. The nested guest's sg_persist registers and reserves with
# key 0x7777 (guest/nested-init); while it holds the reservation, the device
# is read here directly: nexus 1 must hold 0x7777 with a type 5 reservation.
# Then the nested guest releases and unregisters and the LU must be empty.
E2E_LIMIT=${E2E_LIMIT:-540}

e2e_log() { tr -d '\r' </tmp/nested.log 2>/dev/null | grep '^@@NESTED' | sed 's/^@@NESTED //'; }
e2e_now() { cut -d. -f1 /proc/uptime; }

e2e_qemu() {
    begin e2e.qemu || return 0
    [ -x /usr/bin/rs-pr-helper ] || { echo "@@RESULT e2e.qemu SKIP no helper under test"; SCEN=""; return 0; }
    # The device is reset and read directly here, whichever backend the
    # scenarios before left in $B (the emulated one reads a file instead).
    B=direct
    reset_lu
    start_helper e2e /usr/bin/rs-pr-helper || fail "helper did not start: $(cat /tmp/helper-e2e.log)"
    rm -f /tmp/nested.log /tmp/ctl.in /tmp/ctl.out
    mkfifo /tmp/ctl.in /tmp/ctl.out
    cat /tmp/ctl.out >/dev/null &
    local drain_pid=$! t0 qpid st held="" seen="" now
    t0=$(e2e_now)
    qemu-system-x86_64 -accel tcg -m 256 -smp 1 -nodefaults -display none -no-reboot \
        -monitor none -object pr-manager-helper,id=pr0,path=/run/pr-e2e.sock \
        -blockdev node-name=disk0,driver=host_device,filename="$PATH1",pr-manager=pr0 \
        -device virtio-scsi-pci,id=scsi0 -device scsi-block,drive=disk0,bus=scsi0.0 \
        -serial file:/tmp/nested.log -serial pipe:/tmp/ctl \
        -kernel /inner/vmlinuz -initrd /inner/initrd \
        -append 'console=ttyS0 earlyprintk=ttyS0 panic=-1 loglevel=4 mitigations=off' \
        </dev/null >/tmp/qemu.out 2>&1 &
    qpid=$!
    while kill -0 $qpid 2>/dev/null; do
        now=$(($(e2e_now) - t0))
        if [ $now -ge "$E2E_LIMIT" ]; then
            fail "nested guest did not finish within ${E2E_LIMIT}s"
            kill $qpid
            break
        fi
        # Progress: each new @@NESTED line once, with the time it was seen.
        e2e_log >/tmp/nested.markers
        n=$(wc -l </tmp/nested.markers)
        if [ "$n" != "$seen" ]; then
            sed -n "$((${seen:-0} + 1)),\$p" /tmp/nested.markers | while read -r l; do
                echo "@@INFO e2e.qemu +${now}s nested: $l"
            done
            seen=$n
        fi
        if [ -z "$held" ] && grep -q '^holding' /tmp/nested.markers; then
            held=$(dev_state)
            echo "@@INFO e2e.qemu +${now}s device state read directly while the nested guest holds: $held"
        fi
        # Tell it to go on (again, until it does: its UART may not be open yet).
        if [ -n "$held" ] && ! grep -q '^resume' /tmp/nested.markers; then
            timeout 5 sh -c 'echo go >/tmp/ctl.in'
        fi
        sleep 2
    done
    wait $qpid
    echo "@@INFO e2e.qemu qemu exit $? after $(($(e2e_now) - t0))s; console bytes $(wc -c </tmp/nested.log 2>/dev/null)"
    e2e_log | sed -n "$((${seen:-0} + 1)),\$p" | while read -r l; do echo "@@INFO e2e.qemu nested: $l"; done
    kill $drain_pid 2>/dev/null
    if [ -s /tmp/qemu.out ]; then
        echo "@@INFO e2e.qemu qemu stderr: $(tr '\n' ' ' </tmp/qemu.out | head -c 400)"
    fi
    if ! e2e_log | grep -q '^done'; then
        fail "nested guest did not finish; console tail: $(tr -d '\r' </tmp/nested.log 2>/dev/null | tail -5 | tr '\n' '|' | tail -c 600)"
    fi
    for s in register reserve read-keys read-reservation release unregister read-keys-after; do
        e2e_log | grep -q "^$s rc=0" || fail "nested: $s: $(e2e_log | grep "^$s " || echo 'not run')"
    done
    e2e_log | grep '^read-keys rc=0' | grep -q 0x7777 || fail "nested READ KEYS did not list 0x7777"
    e2e_log | grep '^read-reservation rc=0' | grep -q 0x7777 || fail "nested READ RESERVATION did not show 0x7777"
    [ "$held" = "1:0x7777:R5" ] || fail "device state while held: expected [1:0x7777:R5] got [${held:-not read}]"
    drain
    st=$(dev_state)
    [ "$st" = "-" ] || fail "device state at the end: expected [-] got [$st]"
    eval "kill \$HELPER_PID_e2e" 2>/dev/null
    touched 1
    end
}
