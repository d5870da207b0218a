// SPDX-License-Identifier: GPL-2.0-or-later
//! A FUSE file system served by the test process that answers its own
//! threads and never answers anyone else: the daemon's `fstat` (GETATTR) or
//! `close` (FLUSH) of a fd on it then blocks for good, as on a FUSE server
//! that hung. Needs root and a usable `/dev/fuse`. Dropping it stops the
//! server, which aborts the connection: only then can a process blocked on it
//! exit (a FUSE request already read by the server waits uninterruptibly).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

const FUSE_LOOKUP: u32 = 1;
const FUSE_FORGET: u32 = 2;
const FUSE_GETATTR: u32 = 3;
const FUSE_OPEN: u32 = 14;
const FUSE_RELEASE: u32 = 18;
const FUSE_FLUSH: u32 = 25;
const FUSE_INIT: u32 = 26;
const FUSE_INTERRUPT: u32 = 36;
const FUSE_BATCH_FORGET: u32 = 42;
const ROOT: u64 = 1;
const FILE: u64 = 2;

/// The mounted file system; unmounted (lazily) on drop.
pub struct StuckFuse {
    pub mountpoint: PathBuf,
    _dir: tempfile::TempDir,
    /// Whether a GETATTR from another process is answered (then only its
    /// FLUSH, the close, blocks).
    pub answer_foreign_getattr: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl StuckFuse {
    /// Mounts it with one regular file, `f`; `Err` says why it cannot run here.
    pub fn mount() -> Result<StuckFuse, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("needs root to mount FUSE".into());
        }
        let dev = File::options()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .map_err(|e| format!("cannot open /dev/fuse: {e}"))?;
        let dir = tempfile::tempdir().unwrap();
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        let data = format!(
            "fd={},rootmode=40000,user_id=0,group_id=0,allow_other",
            dev.as_raw_fd()
        );
        mount(
            Some("stuck"),
            &mountpoint,
            Some("fuse.stuck"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(data.as_str()),
        )
        .map_err(|e| format!("cannot mount FUSE: {e}"))?;
        let answer_foreign_getattr = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&answer_foreign_getattr);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let server = std::thread::spawn(move || serve(dev, &flag, &stopping));
        let fuse = StuckFuse {
            mountpoint,
            _dir: dir,
            answer_foreign_getattr,
            stop,
            server: Some(server),
        };
        // A stand-in the kernel does not accept would hang the test instead.
        let (tx, rx) = std::sync::mpsc::channel();
        let probe = fuse.file();
        std::thread::spawn(move || tx.send(std::fs::metadata(probe).is_ok()));
        match rx.recv_timeout(std::time::Duration::from_secs(5)) {
            Ok(true) => Ok(fuse),
            _ => Err("the FUSE stand-in does not serve".into()),
        }
    }

    /// The one file.
    pub fn file(&self) -> PathBuf {
        self.mountpoint.join("f")
    }

    /// The one file, opened read-write: an fd to hand to the daemon.
    pub fn open(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.file())
            .unwrap()
    }
}

impl Drop for StuckFuse {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
        let _ = umount2(&self.mountpoint, MntFlags::MNT_DETACH);
    }
}

/// Whether the request came from a thread of this (the test) process, or
/// from the kernel itself (INIT and RELEASE carry no process).
fn from_us(tid: u32) -> bool {
    tid == 0 || Path::new(&format!("/proc/self/task/{tid}")).exists()
}

fn serve(mut dev: File, answer_foreign_getattr: &AtomicBool, stop: &AtomicBool) {
    let mut buf = vec![0u8; 1 << 20];
    while !stop.load(Ordering::SeqCst) {
        let mut ready = [PollFd::new(dev.as_fd(), PollFlags::POLLIN)];
        match poll(&mut ready, PollTimeout::from(100u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(_) => return,
        }
        let Ok(n) = dev.read(&mut buf) else { return };
        let req = &buf[..n];
        let u32_at = |o: usize| u32::from_le_bytes(req[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(req[o..o + 8].try_into().unwrap());
        let (opcode, unique, nodeid, tid) = (u32_at(4), u64_at(8), u64_at(16), u32_at(32));
        if matches!(opcode, FUSE_FORGET | FUSE_BATCH_FORGET | FUSE_INTERRUPT) {
            continue;
        }
        let answered = from_us(tid)
            || (opcode == FUSE_GETATTR && answer_foreign_getattr.load(Ordering::SeqCst));
        if !answered {
            // Never answered: the caller waits until it is killed.
            continue;
        }
        let (error, body): (i32, Vec<u8>) = match opcode {
            FUSE_INIT => {
                let mut out = vec![0u8; 64];
                out[0..4].copy_from_slice(&7u32.to_le_bytes());
                out[4..8].copy_from_slice(&u32_at(44).min(31).to_le_bytes()); // minor
                out[8..12].copy_from_slice(&req[48..52]); // max_readahead
                out[20..24].copy_from_slice(&4096u32.to_le_bytes()); // max_write
                (0, out)
            }
            FUSE_LOOKUP if nodeid == ROOT && &req[40..n] == b"f\0" => {
                let mut out = vec![0u8; 40];
                out[0..8].copy_from_slice(&FILE.to_le_bytes());
                out.extend(attr(FILE));
                (0, out)
            }
            FUSE_LOOKUP => (-libc::ENOENT, Vec::new()),
            FUSE_GETATTR => {
                let mut out = vec![0u8; 16];
                out.extend(attr(nodeid));
                (0, out)
            }
            FUSE_OPEN => (0, vec![0u8; 16]),
            FUSE_FLUSH | FUSE_RELEASE => (0, Vec::new()),
            _ => (-libc::ENOSYS, Vec::new()),
        };
        let mut reply = Vec::with_capacity(16 + body.len());
        reply.extend(((16 + body.len()) as u32).to_le_bytes());
        reply.extend(error.to_le_bytes());
        reply.extend(unique.to_le_bytes());
        reply.extend(body);
        let _ = dev.write_all(&reply);
    }
}

/// `struct fuse_attr` of the root directory or the file, never cached.
fn attr(nodeid: u64) -> Vec<u8> {
    let mut a = vec![0u8; 88];
    a[0..8].copy_from_slice(&nodeid.to_le_bytes());
    let mode: u32 = if nodeid == ROOT { 0o040755 } else { 0o100666 };
    a[60..64].copy_from_slice(&mode.to_le_bytes());
    a[64..68].copy_from_slice(&1u32.to_le_bytes()); // nlink
    a
}
