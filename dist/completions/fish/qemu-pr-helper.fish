complete -c qemu-pr-helper -s f -l pidfile -d 'PID file when running as a daemon [default: /var/run/qemu-pr-helper.pid]' -r -F
complete -c qemu-pr-helper -s k -l socket -d 'Path to the unix socket [default: /var/run/qemu-pr-helper.sock]' -r -F
complete -c qemu-pr-helper -s T -l trace -d 'Tracing options (\'-T help\' lists the targets)' -r
complete -c qemu-pr-helper -s u -l user -d 'User to drop privileges to (name or number)' -r
complete -c qemu-pr-helper -s g -l group -d 'Group to drop privileges to (name or number)' -r
complete -c qemu-pr-helper -s c -l config -d 'TOML configuration file; command-line flags override it' -r -F
complete -c qemu-pr-helper -l executor -d 'How commands reach devices: auto, sg_io, pr_ioctl or emulated' -r
complete -c qemu-pr-helper -l timeout -d 'SG_IO timeout in milliseconds [default: 30000]' -r
complete -c qemu-pr-helper -l log-to -d 'Where the log goes: auto, stderr, journald or syslog' -r
complete -c qemu-pr-helper -l seccomp -d 'System-call filter: kill (release default), log (debug default), off' -r
complete -c qemu-pr-helper -s d -l daemon -d 'Run in the background'
complete -c qemu-pr-helper -s v -l verbose -d 'More log output: -v debug, -vv trace'
complete -c qemu-pr-helper -s q -l quiet -d 'Only errors in the log (audit lines too are left out; -T audit keeps them)'
complete -c qemu-pr-helper -l emulate -d 'Serve an in-memory emulated device instead of real ones (testing)'
complete -c qemu-pr-helper -s V -l version -d 'Output version information and exit'
complete -c qemu-pr-helper -s h -l help -d 'Print help (see more with \'--help\')'
