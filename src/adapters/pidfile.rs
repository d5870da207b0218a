//! The pidfile: created and locked first, before the socket and before
//! daemonizing, so that a second instance on the same pidfile fails at once
//! without touching anything; written after daemonizing; removed on drop.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// A locked pidfile; the lock lives as long as this value (and survives
/// `fork`, since flock locks belong to the open file description). Dropping
/// it removes the file, so a failed start leaves none behind.
#[derive(Debug)]
pub struct Pidfile {
    lock: Flock<File>,
    path: PathBuf,
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
    /// Opens (creating if needed) and locks `path` without blocking.
    pub fn lock(path: &Path) -> Result<Pidfile, PidfileError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| PidfileError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
            PidfileError::Locked {
                path: path.to_path_buf(),
            }
        })?;
        Ok(Pidfile {
            lock,
            path: path.to_path_buf(),
        })
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
        if let Err(e) = std::fs::remove_file(&self.path) {
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
}
