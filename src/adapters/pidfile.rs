// SPDX-License-Identifier: GPL-2.0-or-later
//! The pidfile: created and locked first, before the socket and before
//! daemonizing, so that a second instance on the same pidfile fails at once
//! without touching anything; written after daemonizing; removed on drop.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::leftovers::{remove_if_same, FileIdentity};

/// A locked pidfile; the lock lives as long as this value (and survives
/// `fork`, since flock locks belong to the open file description). Dropping
/// it removes the file, so a failed start leaves none behind.
#[derive(Debug)]
pub struct Pidfile {
    lock: Flock<File>,
    path: PathBuf,
    identity: FileIdentity,
    /// Someone else removes it (see [`Pidfile::hand_over_removal`]).
    handed_over: bool,
}

/// The pidfile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PidfileError {
    /// Opening or creating it failed.
    #[error("cannot open pidfile {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// What is at the path is not a file this daemon may take as its
    /// pidfile: another user may have planted it to make root write over
    /// (or lock) a file of their choosing.
    #[error("refusing pidfile {path}: it is {what}")]
    Refused {
        /// The path.
        path: PathBuf,
        /// What it is.
        what: &'static str,
    },
    /// Another process holds the lock.
    #[error("pidfile {path} is locked: another qemu-pr-helper is running with it")]
    Locked {
        /// The path.
        path: PathBuf,
    },
    /// Writing the pid failed.
    #[error("cannot write pidfile {path}: {source}")]
    Write {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl Pidfile {
    /// Opens (creating if needed) and locks `path` without blocking. A
    /// symbolic link, a file with other links or anything but a regular
    /// file is refused: in a directory another user may write to, it could
    /// name a file of root's. Nothing is truncated here: the file is
    /// emptied only once its lock is held ([`Pidfile::write_pid`]), so a
    /// second instance never clears the first one's pid.
    pub fn lock(path: &Path) -> Result<Pidfile, PidfileError> {
        use std::os::unix::fs::MetadataExt;
        let refused = |what| PidfileError::Refused {
            path: path.to_path_buf(),
            what,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            // O_NONBLOCK: a FIFO planted there must not hang the start.
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::ELOOP) => refused("a symbolic link"),
                _ => PidfileError::Open {
                    path: path.to_path_buf(),
                    source,
                },
            })?;
        let meta = file.metadata().map_err(|source| PidfileError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        if !meta.is_file() {
            return Err(refused("not a regular file"));
        }
        if meta.nlink() != 1 {
            return Err(refused("a file with other hard links"));
        }
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
            PidfileError::Locked {
                path: path.to_path_buf(),
            }
        })?;
        Ok(Pidfile {
            lock,
            path: path.to_path_buf(),
            identity: FileIdentity::of(&meta),
            handed_over: false,
        })
    }

    /// The pidfile's path and identity.
    pub fn file(&self) -> (PathBuf, FileIdentity) {
        (self.path.clone(), self.identity)
    }

    /// From now on the pidfile is not removed on drop: whoever took
    /// [`Pidfile::file`] does (a daemon that gives up root may not be
    /// allowed to).
    pub fn hand_over_removal(&mut self) {
        self.handed_over = true;
    }

    /// Writes the current process id (call after daemonizing).
    pub fn write_pid(&mut self) -> Result<(), PidfileError> {
        let path = self.path.clone();
        let werr = |source| PidfileError::Write { path, source };
        let file: &mut File = &mut self.lock;
        (|| {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            file.sync_all()
        })()
        .map_err(werr)
    }
}

impl Drop for Pidfile {
    /// Removes the file; a failure (privileges dropped) is logged.
    fn drop(&mut self) {
        if self.handed_over {
            return;
        }
        if let Err(e) = remove_if_same(&self.path, self.identity) {
            tracing::warn!(path = %self.path.display(), cause = %e, "cannot remove pidfile");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_the_same_pidfile_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pid");
        let mut first = Pidfile::lock(&path).unwrap();
        first.write_pid().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        assert!(matches!(
            Pidfile::lock(&path),
            Err(PidfileError::Locked { .. })
        ));
        drop(first);
        assert!(!path.exists());
        assert!(Pidfile::lock(&path).is_ok());
    }

    #[test]
    fn links_and_other_files_are_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "kept").unwrap();
        let link = dir.path().join("link.pid");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let hard = dir.path().join("hard.pid");
        std::fs::hard_link(&target, &hard).unwrap();
        let fifo = dir.path().join("fifo.pid");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        for (path, what) in [
            (&link, "a symbolic link"),
            (&hard, "a file with other hard links"),
            (&fifo, "not a regular file"),
        ] {
            let e = Pidfile::lock(path).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("refusing pidfile {}: it is {what}", path.display())
            );
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "kept");
        assert!(link.is_symlink() && hard.exists() && fifo.exists());
    }

    #[test]
    fn a_second_instance_leaves_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pid");
        let mut first = Pidfile::lock(&path).unwrap();
        first.write_pid().unwrap();
        assert!(Pidfile::lock(&path).is_err());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
    }
}
