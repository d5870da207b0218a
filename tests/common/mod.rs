// SPDX-License-Identifier: GPL-2.0-or-later
//! Test support: start a helper binary on a temporary socket and speak the
//! protocol to it with raw bytes and real fds, as QEMU does.
#![allow(dead_code)]

use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

pub mod cluster;
pub mod spawn;
pub mod stuck_fuse;

#[allow(unused_imports)] // not every test file uses both
pub use spawn::{our_helper, PRODUCTION_FILTER};

/// Our daemon's command under the production system-call filter, for a
/// test that runs it to the end itself (a command line or configuration it
/// refuses, `-d`).
pub fn our_command() -> Command {
    let mut cmd = Command::new(our_helper());
    cmd.args(PRODUCTION_FILTER);
    cmd
}

/// Runs our daemon under the filter with `-d` and what `args` adds, stdin
/// on /dev/null, until the process it started returns (the daemon goes on
/// in the background); that process's output.
pub fn run_daemonized(args: impl FnOnce(&mut Command)) -> Output {
    let mut cmd = our_command();
    cmd.arg("-d").stdin(std::process::Stdio::null());
    args(&mut cmd);
    cmd.output().unwrap()
}

/// A daemon gone to the background, known by its pidfile. Dropped before
/// [`Daemonized::stop`], it is sent SIGTERM if the pidfile names a pid.
pub struct Daemonized {
    pub pidfile: PathBuf,
    stopped: bool,
}

impl Daemonized {
    pub fn new(pidfile: PathBuf) -> Daemonized {
        Daemonized {
            pidfile,
            stopped: false,
        }
    }

    /// Runs `-d -k SOCKET -f PIDFILE EXTRA...` (see [`run_daemonized`])
    /// after `adjust`: the output of the process it started, and the
    /// daemon.
    pub fn start(
        socket: &Path,
        pidfile: PathBuf,
        extra: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> (Output, Daemonized) {
        let out = run_daemonized(|c| {
            c.arg("-k").arg(socket).arg("-f").arg(&pidfile).args(extra);
            adjust(c);
        });
        (out, Daemonized::new(pidfile))
    }

    fn pid(&self) -> Option<nix::unistd::Pid> {
        let written = std::fs::read_to_string(&self.pidfile).ok()?;
        written.trim().parse().ok().map(nix::unistd::Pid::from_raw)
    }

    /// Waits for the pid to be written, sends it SIGTERM, and waits until
    /// every path in `gone` has been removed (10 s at most for each step).
    #[track_caller]
    pub fn stop(mut self, gone: &[&Path]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(pid) = self.pid() {
                break pid;
            }
            assert!(
                Instant::now() < deadline,
                "no pid in {}",
                self.pidfile.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.stopped = true;
        let deadline = Instant::now() + Duration::from_secs(10);
        while gone.iter().any(|p| p.exists()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for p in gone {
            assert!(!p.exists(), "the daemon left {} behind", p.display());
        }
    }
}

impl Drop for Daemonized {
    fn drop(&mut self) {
        if let Some(pid) = self.pid().filter(|_| !self.stopped) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
    }
}

/// A running helper process on a socket in its own temporary directory.
pub struct Helper {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
}

impl Helper {
    /// Starts `binary -k DIR/pr.sock EXTRA...` and waits for the socket.
    pub fn start(binary: &Path, extra: &[&str]) -> Helper {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("pr.sock");
        Helper::spawn(dir, socket, binary, extra, |_| {})
    }

    /// Starts `binary -k SOCKET EXTRA...` (SOCKET usually inside `dir`),
    /// after `adjust` has set what else the test needs on the command
    /// (environment, limits), and waits for the socket. Its stderr goes to
    /// DIR/helper.log. Ours always runs under the production system-call
    /// filter, so that every test also proves the filter lets it serve; a
    /// test about another mode passes its own `--seccomp` in `extra`.
    pub fn spawn(
        dir: tempfile::TempDir,
        socket: PathBuf,
        binary: &Path,
        extra: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Helper {
        // The log goes to a file: a pipe nobody reads would fill up and
        // block the daemon.
        let log = std::fs::File::create(dir.path().join("helper.log")).unwrap();
        let own_mode = extra.contains(&spawn::PRODUCTION_FILTER[0]);
        let filter: &[&str] = if binary == our_helper() && !own_mode {
            &spawn::PRODUCTION_FILTER
        } else {
            &[]
        };
        let args: Vec<&str> = filter.iter().chain(extra).copied().collect();
        let mut cmd = spawn::helper_command(binary, &socket, &args);
        cmd.stderr(log);
        adjust(&mut cmd);
        let child = cmd.spawn().unwrap();
        let mut h = Helper { child, dir, socket };
        h.wait_for_socket();
        h
    }

    /// Starts our helper on its emulated device.
    pub fn emulated() -> Helper {
        Helper::start(&our_helper(), &["--emulate"])
    }

    /// Starts our helper on its emulated device with a config file holding
    /// `toml`.
    pub fn emulated_with(toml: &str) -> Helper {
        Helper::emulated_with_args(toml, &[])
    }

    /// [`Helper::emulated_with`], with `extra` arguments. The file is
    /// DIR/helper.toml, removed with the helper's directory.
    pub fn emulated_with_args(toml: &str, extra: &[&str]) -> Helper {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("pr.sock");
        let config = dir.path().join("helper.toml");
        std::fs::write(&config, toml).unwrap();
        let args: Vec<&str> = ["--emulate", "-c", config.to_str().unwrap()]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        Helper::spawn(dir, socket, &our_helper(), &args, |_| {})
    }

    /// A 512-byte file in the helper's directory (made anew): the emulated
    /// device's logical unit, or a file that SG_IO refuses.
    pub fn disk_path(&self) -> PathBuf {
        let p = self.dir.path().join("lu.img");
        std::fs::write(&p, [0u8; 512]).unwrap();
        p
    }

    /// [`Helper::disk_path`], opened read-write.
    pub fn disk(&self) -> std::fs::File {
        open_rw(self.disk_path())
    }

    /// What the helper logged so far: every line logged before the last
    /// reply a test received is in.
    pub fn log(&self) -> String {
        self.wait_for_log_writer();
        std::fs::read_to_string(self.dir.path().join("helper.log")).unwrap_or_default()
    }

    /// Our daemon's lines are written by a thread of their own ("log-writer"),
    /// woken as each line is queued. Waits (2 s at most) until it is idle:
    /// asleep, and still asleep in the same sleep 5 ms later (its count of
    /// voluntary switches unchanged). It has then written every line queued
    /// before, such as the ones logged before a reply that was received.
    fn wait_for_log_writer(&self) {
        let tasks = format!("/proc/{}/task", self.pid());
        let Some(writer) = std::fs::read_dir(&tasks).ok().and_then(|tasks| {
            tasks.flatten().map(|t| t.path()).find(|t| {
                std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.trim() == "log-writer")
            })
        }) else {
            return;
        };
        // The state letter and the voluntary switches, from its status.
        let sample = || -> Option<(String, String)> {
            let status = std::fs::read_to_string(writer.join("status")).ok()?;
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
            };
            Some((field("State:")?, field("voluntary_ctxt_switches:")?))
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut last = sample();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            let now = sample();
            match (&last, &now) {
                (Some(before), Some(after)) if before == after && after.0.starts_with('S') => {
                    return
                }
                (_, None) => return,
                _ => last = now,
            }
        }
    }

    /// Waits until the socket accepts; panics, with the log, if the helper
    /// exits first or does not listen within 10 s.
    pub fn wait_for_socket(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("helper exited before listening ({status}): {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("helper did not create {}", self.socket.display());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Number of open fds in the helper process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// The fd count once it has stopped changing for 100 ms (connections
    /// from earlier probes are torn down asynchronously).
    pub fn stable_fd_count(&self) -> usize {
        let mut last = self.fd_count();
        let mut stable_since = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(5);
        while stable_since.elapsed() < Duration::from_millis(100) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            let n = self.fd_count();
            if n != last {
                last = n;
                stable_since = Instant::now();
            }
        }
        last
    }

    /// Polls until the fd count is back to `expected` (connections are torn
    /// down asynchronously); returns the last count seen.
    pub fn settle_fd_count(&self, expected: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let n = self.fd_count();
            if n == expected || Instant::now() > deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A READ KEYS with `disk` on a new connection is answered GOOD.
    #[track_caller]
    pub fn still_serves(&self, disk: &std::fs::File, what: &str) {
        let mut c = self.connect().negotiate();
        let r = c.command(&pr_in(0, 64), disk.as_raw_fd(), &[]);
        assert_eq!(r.map(|r| r.status), Some(0), "{what}: {}", self.log());
    }

    /// [`Helper::still_serves`], and the fd count is back to `baseline`
    /// (nothing leaked) once that connection is gone.
    #[track_caller]
    pub fn still_healthy(&self, disk: &std::fs::File, baseline: usize, what: &str) {
        self.still_serves(disk, what);
        assert_eq!(
            self.settle_fd_count(baseline),
            baseline,
            "{what}: fd leaked"
        );
    }

    pub fn connect(&self) -> Client {
        Client::connect(&self.socket)
    }

    /// A connection through the client library, negotiated.
    pub fn connect_library(&self) -> qemu_pr_helper::client::HelperConnection {
        qemu_pr_helper::client::HelperConnection::connect(
            &self.socket,
            Some(Duration::from_secs(10)),
        )
        .unwrap()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).unwrap();
    }

    /// Waits for exit; returns the exit code and stderr.
    pub fn wait_exit(mut self, timeout: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), self.log());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("helper did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `path` opened for reading and writing, as QEMU opens a disk.
pub fn open_rw(path: impl AsRef<Path>) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

/// `qemu-pr-client --socket SOCKET`, for the test to add its arguments.
pub fn pr_client(socket: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qemu-pr-client"));
    cmd.arg("--socket").arg(socket);
    cmd
}

/// Runs `qemu-pr-client --socket SOCKET ARGS... DEVICE` to the end.
pub fn run_client(socket: &Path, args: &[&str], device: &Path) -> Output {
    pr_client(socket).args(args).arg(device).output().unwrap()
}

/// Program output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A reply as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub sense: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Reply {
    /// (sense key, asc, ascq) of fixed-format sense.
    pub fn sense_code(&self) -> (u8, u8, u8) {
        (self.sense[2] & 0xf, self.sense[12], self.sense[13])
    }
}

/// One client connection with a short read timeout.
pub struct Client {
    pub stream: UnixStream,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client { stream }
    }

    /// Reads the server's features word.
    pub fn read_features(&mut self) -> [u8; 4] {
        let mut f = [0u8; 4];
        self.stream.read_exact(&mut f).unwrap();
        f
    }

    /// Reads the features word and answers zero.
    pub fn negotiate(mut self) -> Client {
        assert_eq!(self.read_features(), [0, 0, 0, 0]);
        self.stream.write_all(&[0, 0, 0, 0]).unwrap();
        self
    }

    /// Sends bytes with the given fds attached to them.
    pub fn send_with_fds(&mut self, bytes: &[u8], fds: &[RawFd]) {
        let iov = [IoSlice::new(bytes)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        let n = sendmsg::<()>(
            self.stream.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        assert_eq!(n, bytes.len());
    }

    /// Sends a request: CDB (padded to 16) with `fds`, then `data`.
    pub fn send_request(&mut self, cdb: &[u8], fds: &[RawFd], data: &[u8]) {
        let mut c = [0u8; 16];
        c[..cdb.len()].copy_from_slice(cdb);
        self.send_with_fds(&c, fds);
        if !data.is_empty() {
            // The helper may already have closed the connection over the CDB;
            // reading the reply tells.
            let _ = self.stream.write_all(data);
        }
    }

    /// Reads a reply, or `None` if the helper closed the connection.
    pub fn read_reply(&mut self) -> Option<Reply> {
        let mut h = [0u8; 104];
        if read_full(&mut self.stream, &mut h).is_err() {
            return None;
        }
        let status = u32::from_be_bytes(h[0..4].try_into().unwrap());
        let len = u32::from_be_bytes(h[4..8].try_into().unwrap()) as usize;
        let mut payload = vec![0u8; len];
        read_full(&mut self.stream, &mut payload).ok()?;
        Some(Reply {
            status,
            sense: h[8..].to_vec(),
            payload,
        })
    }

    /// Whether the helper closed the connection (EOF or reset) rather than
    /// sending something. Panics if it does neither within the timeout.
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if is_timeout(&e) => panic!("helper neither replied nor closed"),
            Err(_) => true,
        }
    }

    /// REGISTER of `key` (from no key) on `fd`, asserted GOOD: the command
    /// that makes an audit line.
    #[track_caller]
    pub fn register(&mut self, fd: RawFd, key: u64) {
        let r = self.command(&pr_out(0, 0, 24), fd, &params(0, key));
        assert_eq!(r.map(|r| r.status), Some(0), "REGISTER {key:#x}");
    }

    /// One full command: request then reply.
    pub fn command(&mut self, cdb: &[u8], fd: RawFd, data: &[u8]) -> Option<Reply> {
        self.send_request(cdb, &[fd], data);
        self.read_reply()
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Fills `buf`; an error means the helper closed the connection. A timeout
/// panics: a helper that neither answers nor closes is a bug.
fn read_full(s: &mut UnixStream, buf: &mut [u8]) -> std::io::Result<()> {
    let mut at = 0;
    while at < buf.len() {
        match s.read(&mut buf[at..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => at += n,
            Err(e) if is_timeout(&e) => panic!("helper neither replied nor closed"),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// PR IN CDB.
pub fn pr_in(sa: u8, alloc: u16) -> Vec<u8> {
    let a = alloc.to_be_bytes();
    vec![0x5e, sa, 0, 0, 0, 0, 0, a[0], a[1], 0]
}

/// PR OUT CDB with a 32-bit parameter list length.
pub fn pr_out(sa: u8, scope_type: u8, len: u32) -> Vec<u8> {
    let l = len.to_be_bytes();
    vec![0x5f, sa, scope_type, 0, 0, l[0], l[1], l[2], l[3], 0]
}

/// A 24-byte basic parameter list.
pub fn params(key: u64, sa_key: u64) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p
}
