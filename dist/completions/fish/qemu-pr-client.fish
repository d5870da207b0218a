complete -c qemu-pr-client -s K -l param-rk -d 'RESERVATION KEY (hex, with or without 0x)' -r
complete -c qemu-pr-client -s S -l param-sark -d 'SERVICE ACTION RESERVATION KEY (hex, with or without 0x)' -r
complete -c qemu-pr-client -s T -l prout-type -d 'Reservation TYPE: 1 WE, 3 EA, 5 WE-RO, 6 EA-RO, 7 WE-AR, 8 EA-AR' -r
complete -c qemu-pr-client -s X -l transport-id -d 'TransportID: sas,ADDR | fcp,WWN | iSCSI name | hex bytes. Repeat for REGISTER with SPEC_I_PT; exactly one for REGISTER AND MOVE' -r
complete -c qemu-pr-client -s Q -l relative-target-port -d 'RELATIVE TARGET PORT IDENTIFIER for REGISTER AND MOVE (decimal or 0x hex)' -r
complete -c qemu-pr-client -s l -l alloc-length -d 'PR IN allocation length, hex like sg_persist (default 2000 = 8192 bytes, the maximum)' -r
complete -c qemu-pr-client -l socket -d 'The helper\'s socket' -r -F
complete -c qemu-pr-client -l timeout -d 'Seconds to wait for the helper before giving up (0: forever)' -r
complete -c qemu-pr-client -s i -l in -d 'PERSISTENT RESERVE IN (the default; alone it means --read-keys)'
complete -c qemu-pr-client -s o -l out -d 'PERSISTENT RESERVE OUT (needs one service action)'
complete -c qemu-pr-client -s k -l read-keys -d 'PR IN: READ KEYS'
complete -c qemu-pr-client -s r -l read-reservation -d 'PR IN: READ RESERVATION'
complete -c qemu-pr-client -s c -l report-capabilities -d 'PR IN: REPORT CAPABILITIES'
complete -c qemu-pr-client -s s -l read-full-status -l read-status -d 'PR IN: READ FULL STATUS'
complete -c qemu-pr-client -s G -l register -d 'PR OUT: REGISTER'
complete -c qemu-pr-client -s I -l register-ignore -d 'PR OUT: REGISTER AND IGNORE EXISTING KEY'
complete -c qemu-pr-client -s R -l reserve -d 'PR OUT: RESERVE'
complete -c qemu-pr-client -s L -l release -d 'PR OUT: RELEASE'
complete -c qemu-pr-client -s C -l clear -d 'PR OUT: CLEAR'
complete -c qemu-pr-client -s P -l preempt -d 'PR OUT: PREEMPT'
complete -c qemu-pr-client -s A -l preempt-abort -d 'PR OUT: PREEMPT AND ABORT'
complete -c qemu-pr-client -s M -l register-move -d 'PR OUT: REGISTER AND MOVE'
complete -c qemu-pr-client -s Z -l param-aptpl -d 'Set APTPL (persist through power loss)'
complete -c qemu-pr-client -s Y -l param-alltgpt -d 'Set ALL_TG_PT (register through every target port)'
complete -c qemu-pr-client -s U -l unreg -d 'Set UNREG for REGISTER AND MOVE'
complete -c qemu-pr-client -l readonly -d 'Open the device read-only (the helper refuses PR OUT on such an fd)'
complete -c qemu-pr-client -l json -d 'Print one line of JSON instead of text'
complete -c qemu-pr-client -s H -l hex -d 'Print the raw reply (header and payload) in hex'
complete -c qemu-pr-client -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qemu-pr-client -s V -l version -d 'Print version'
