complete -c qemu-pr-client -s K -l param-rk -d 'RESERVATION KEY (hex, with or without 0x)' -r
complete -c qemu-pr-client -s S -l param-sark -d 'SERVICE ACTION RESERVATION KEY (hex, with or without 0x)' -r
complete -c qemu-pr-client -s T -l prout-type -d 'Reservation TYPE (hex): 1 WE, 3 EA, 5 WE-RO, 6 EA-RO, 7 WE-AR, 8 EA-AR' -r
complete -c qemu-pr-client -l scope -d 'Reservation SCOPE (hex, 0 to f), beyond sg_persist: 0 (LU_SCOPE, the only one SPC-4 defines) unless a test wants to see another refused' -r
complete -c qemu-pr-client -s X -l transport-id -d 'TransportID: sas,ADDR | fcp,WWN | spi,ADDR,RTPI | sbp,EUI64 | srp,ID | sop,ID | iSCSI name | hex bytes | file=NAME or - (one a line, # comments). Repeat for REGISTER with SPEC_I_PT; exactly one for REGISTER AND MOVE' -r
complete -c qemu-pr-client -s Q -l relative-target-port -d 'RELATIVE TARGET PORT IDENTIFIER for REGISTER AND MOVE (hex, 0 to ffff)' -r
complete -c qemu-pr-client -s l -l alloc-length -d 'PR IN allocation length in hex (default 2000 = 8192 bytes, the helper\'s maximum)' -r
complete -c qemu-pr-client -s m -l maxlen -d 'PR IN allocation length, decimal by default (8192, 8k, 0x2000, 2000h)' -r
complete -c qemu-pr-client -s d -l device -d 'The device, as an option instead of the argument' -r -F
complete -c qemu-pr-client -l socket -d 'The helper\'s socket' -r -F
complete -c qemu-pr-client -l timeout -d 'Seconds to wait for the helper before giving up (0: forever)' -r
complete -c qemu-pr-client -l repeat -d 'Send the command N times (at most 1000000) over one connection and print the round trip\'s median, p99, lowest and highest to stderr; the answer printed is the last one' -r
complete -c qemu-pr-client -s i -l in -d 'PERSISTENT RESERVE IN (the default; alone it means --read-keys)'
complete -c qemu-pr-client -s o -l out -d 'PERSISTENT RESERVE OUT (needs one service action)'
complete -c qemu-pr-client -s k -l read-keys -d 'PR IN: READ KEYS'
complete -c qemu-pr-client -s r -l read-reservation -d 'PR IN: READ RESERVATION'
complete -c qemu-pr-client -s c -l report-capabilities -d 'PR IN: REPORT CAPABILITIES'
complete -c qemu-pr-client -s s -l read-full-status -l read-status -d 'PR IN: READ FULL STATUS'
complete -c qemu-pr-client -l status -d 'One table of the whole state: generation, reservation type and scope, every registrant\'s key, port and TransportID, the holder marked. From READ FULL STATUS, or READ KEYS + READ RESERVATION where that is not supported'
complete -c qemu-pr-client -s G -l register -d 'PR OUT: REGISTER'
complete -c qemu-pr-client -s I -l register-ignore -d 'PR OUT: REGISTER AND IGNORE EXISTING KEY'
complete -c qemu-pr-client -s R -l reserve -d 'PR OUT: RESERVE'
complete -c qemu-pr-client -s L -l release -d 'PR OUT: RELEASE'
complete -c qemu-pr-client -s C -l clear -d 'PR OUT: CLEAR'
complete -c qemu-pr-client -s P -l preempt -d 'PR OUT: PREEMPT'
complete -c qemu-pr-client -s A -l preempt-abort -d 'PR OUT: PREEMPT AND ABORT'
complete -c qemu-pr-client -s M -l register-move -d 'PR OUT: REGISTER AND MOVE'
complete -c qemu-pr-client -s z -l replace-lost -d 'PR OUT: REPLACE LOST RESERVATION (give -S NEW_KEY and -T TYPE)'
complete -c qemu-pr-client -s Z -l param-aptpl -d 'Set APTPL (persist through power loss)'
complete -c qemu-pr-client -s Y -l param-alltgpt -d 'Set ALL_TG_PT (register through every target port)'
complete -c qemu-pr-client -s U -l unreg -l param-unreg -d 'Set UNREG for REGISTER AND MOVE'
complete -c qemu-pr-client -s H -l hex -d 'Print PR IN data in hex as sg_persist does: -H the data after its header, -HH all of it with offsets, -HHH without offsets'
complete -c qemu-pr-client -s v -l verbose -d 'Show what is sent and received on standard error: -v the CDB and the helper\'s raw reply header, -vv also the PR OUT parameter list'
complete -c qemu-pr-client -s n -l no-inquiry -d 'Accepted for sg_persist\'s command lines; does nothing here: the helper runs only PERSISTENT RESERVE IN/OUT, so no INQUIRY is ever sent (and none is printed)'
complete -c qemu-pr-client -s y -l readonly -d 'Open the device read-only (the helper refuses PR OUT on such an fd); -yy forces a read-write open despite SG_PERSIST_IN_RDONLY, which otherwise makes PR IN open read-only, as with sg_persist'
complete -c qemu-pr-client -l emulated -d 'The helper serves its emulated device (--emulate): DEVICE may be any file. Without it a DEVICE that is not a block or character device is refused before anything is sent (exit 15)'
complete -c qemu-pr-client -l json -d 'Print one line of JSON for every outcome, failures included'
complete -c qemu-pr-client -l direct -d 'Run the command with SG_IO on the device, in this process, instead of through a helper (needs CAP_SYS_RAWIO): with --repeat, the baseline for the helper\'s round trip'
complete -c qemu-pr-client -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qemu-pr-client -s V -l version -d 'Print version'
