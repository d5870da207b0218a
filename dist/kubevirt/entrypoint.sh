#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# KubeVirt's pr-helper contract: virt-handler bind-mounts the host's
# multipathd socket at /var/run/kubevirt/daemons/pr/multipathd.socket; link
# it where the helper looks ($MULTIPATH_SOCKET_NAME, else
# /run/multipathd.socket), then run the helper with the DaemonSet's arguments.
socket="${MULTIPATH_SOCKET_NAME:-/run/multipathd.socket}"
case "$socket" in
@*) ;; # an abstract name: the helper connects to it as it is
*)
    ln -sfn /var/run/kubevirt/daemons/pr/multipathd.socket "$socket" ||
        echo "entrypoint: cannot link $socket; reservation keys will not reach multipathd" >&2
    ;;
esac
# The image's settings (JSON log lines on stderr) first; the arguments win.
exec /usr/bin/qemu-pr-helper -c /etc/qemu-pr-helper.toml "$@"
