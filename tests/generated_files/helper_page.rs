// SPDX-License-Identifier: GPL-2.0-or-later
//! What qemu-pr-helper-rs(8) says beyond the options clap renders: the
//! name it is indexed under, what the program is, and the sections an
//! operator looks for. Paths, names and times come from the library's
//! constants, so the page follows them.

use qemu_pr_helper::adapters::multipathd::connection::{
    ABSTRACT_SOCKET_NAME, DEFAULT_SOCKET_PATH, SOCKET_ENV,
};
use qemu_pr_helper::config::{DEFAULT_PIDFILE, DEFAULT_SOCKET};
use qemu_pr_helper::server::STOP_GRACE;

use super::roff;

/// The page's file name under `dist/man/`: section 8, named so that it
/// does not replace QEMU's qemu-pr-helper(8) when both are installed.
pub const NAME: &str = "qemu-pr-helper-rs.8";

/// The NAME line: the page's own name first, so that whatis(1) and
/// apropos(1) find it under the name it is installed as.
pub const NAME_LINE: &str =
    "qemu\\-pr\\-helper\\-rs \\- SCSI persistent reservation helper daemon for QEMU";

/// What the program is, who talks to it and what it does with the fd.
pub const DESCRIPTION: &str = r#"\fBqemu\-pr\-helper\-rs\fR is a drop\-in replacement for QEMU's
\fBqemu\-pr\-helper\fR(8): the privileged daemon that runs SCSI PERSISTENT RESERVE IN and
PERSISTENT RESERVE OUT commands for virtual machines, which may not send them to the host's
disks themselves. The program is installed as \fIqemu\-pr\-helper\fR, takes the same options
and speaks the same protocol, so QEMU and libvirt use it unchanged.
.PP
QEMU talks to it through a \fBpr\-manager\-helper\fR object (libvirt's
\fB<reservations managed="yes"/>\fR), one Unix socket connection per object. When a guest
sends a persistent reservation command to a disk, QEMU sends the command's CDB and parameter
list, with its own open file descriptor of the disk passed over the socket (SCM_RIGHTS). The
helper checks the peer and the device against the configured lists, runs the command on that
fd (with SG_IO, or with the block layer's PR ioctls when it holds no CAP_SYS_RAWIO), answers
with the SCSI status, sense data and data, and closes the fd: it never opens the disk QEMU names
itself and keeps no fd after a command (on a dm-multipath map it opens the map's path devices
for the command). A command it cannot carry out is answered with CHECK CONDITION and
sense data; a request that breaks the protocol closes that connection only.
.PP
On a dm\-multipath map the command goes down the map's paths (REGISTER on every path, a
reservation moved when its path fails) and multipathd learns the keys. With \fB\-\-emulate\fR,
an in\-memory device answers instead of any real one, for testing.
.PP
Settings come from the defaults, then the configuration file (\fB\-c\fR, see
\fBqemu\-pr\-helper.toml\fR(5)), then the options below, each overriding the one before."#;

/// ENVIRONMENT, SIGNALS and EXIT STATUS, then FILES and SEE ALSO.
pub fn sections() -> String {
    let grace = STOP_GRACE.as_secs();
    let socket = roff(DEFAULT_SOCKET);
    let pidfile = roff(DEFAULT_PIDFILE);
    let mpd_env = SOCKET_ENV;
    let mpd_path = roff(DEFAULT_SOCKET_PATH);
    let mpd_abstract = roff(ABSTRACT_SOCKET_NAME);
    format!(
        r#".SH "EXIT STATUS"
.TP
\fB0\fR
stopped by SIGTERM, SIGINT or SIGHUP; or \fB\-\-help\fR, \fB\-\-version\fR or \fB\-T help\fR
printed what was asked. With \fB\-d\fR, the process that was started exits 0 once the daemon
in the background serves.
.TP
\fB1\fR
the command line or the configuration is wrong, the start failed (the socket, the pidfile, the
user or group, dropping privileges, the system\-call filter, the socket passed by systemd), or
the multipathd relay ended while the daemon served (it cannot be started again without root;
the packaged service restarts the daemon). One line on stderr, or in the log once it is set up,
says why.
.PP
With \fB\-\-seccomp kill\fR, a system call outside the filter ends the daemon with SIGSYS.
.SH ENVIRONMENT
.TP
\fB{mpd_env}\fR
where \fBmultipathd\fR(8) listens, read at start: the daemon tells multipathd the keys it
registers through a dm\-multipath map and asks it for dm's path states. A value starting with
\fB@\fR names an abstract socket, any other a socket file. Unset or empty:
\fI{mpd_path}\fR if it exists, else the abstract socket \fB@{mpd_abstract}\fR, as
multipath\-tools does.
.TP
\fBNOTIFY_SOCKET\fR
set by systemd for a service of Type=notify (a socket file, or \fB@\fR and an abstract name).
The daemon sends READY=1 once it serves, a STATUS= line with its counts (connections, commands
in flight, commands done) whenever they change, at most every two seconds, and STOPPING=1 when it
stops. Unset: nothing is sent.
.TP
\fBLISTEN_PID\fR, \fBLISTEN_FDS\fR
socket activation. When LISTEN_PID is the daemon's pid, it serves on fd 3 instead of creating a
socket, and \fB\-k\fR is refused (the \fBsocket\fR key of the file is not used). LISTEN_FDS must
be 1: no fd, more than one, a value that is not a number, or fd 3 not open ends the start with
status 1. The variables, and LISTEN_FDNAMES, are removed from the environment once read.
.TP
\fBJOURNAL_STREAM\fR
set by systemd when it connects stderr to the journal. When its device and inode are those of
fd 2, \fB\-\-log\-to auto\fR writes to the journal natively (priorities and fields) instead of
as text on stderr.
.SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR, \fBSIGHUP\fR
stop the daemon: it stops accepting connections, tells systemd STOPPING=1, lets the commands in
flight finish (a reply the client does not take, or an fd that cannot be closed, is given up
after {grace} s), removes the socket file it created and its pidfile, and exits with status 0. SIGHUP does not
reload the configuration. These signals are held from the start until the daemon serves, so
one sent while it starts stops it as soon as the start is complete.
.TP
\fBSIGPIPE\fR
ignored: a client that goes away ends its own connection only.
.SH FILES
.TP
\fI/usr/libexec/qemu\-pr\-helper\-rs/qemu\-pr\-helper\fR
this program, installed beside QEMU's \fI/usr/bin/qemu\-pr\-helper\fR; point libvirt's
\fBpr_helper\fR (\fI/etc/libvirt/qemu.conf\fR) at it.
.TP
\fI{socket}\fR
the socket when neither \fB\-k\fR, the configuration file nor systemd name one.
.TP
\fI{pidfile}\fR
the pidfile written with \fB\-d\fR when \fB\-f\fR names none.
.TP
\fIqemu\-pr\-helper\-rs.socket\fR, \fIqemu\-pr\-helper\-rs.service\fR
systemd units: the socket \fI/run/qemu\-pr\-helper.sock\fR, the daemon as a dynamic user
holding CAP_SYS_RAWIO only.
.TP
\fI/etc/default/qemu\-pr\-helper\-rs\fR
options for the service (QEMU_PR_HELPER_OPTS), e.g. \fB\-c /etc/qemu\-pr\-helper.toml\fR.
.TP
\fI/usr/share/doc/qemu\-pr\-helper\-rs/examples/\fR
an example configuration file, the emulated device's, the drop\-in for hosts with
dm\-multipath maps (\fIqemu\-pr\-helper\-rs\-multipath.conf\fR), and the drop\-in that runs
the daemon with no capability through the block layer's PR ioctls
(\fIqemu\-pr\-helper\-rs\-pr\-ioctl.conf\fR).
.SH SEE ALSO
\fBqemu\-pr\-helper.toml\fR(5), \fBqemu\-pr\-client\fR(1), \fBqemu\-pr\-helper\fR(8),
\fBsg_persist\fR(8), \fBmultipathd\fR(8)
"#
    )
}
