// SPDX-License-Identifier: GPL-2.0-or-later
//! The fd inspector: a client's fd inspected once, on the thread that runs
//! its command: what kind of file it is, how the client opened it and, when
//! asked, the device's WWID. The server and the executors decide on these
//! facts.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::stat::{fstat, SFlag};

use crate::domain::device::{DeviceInfo, DeviceKind, OpenMode};
use crate::ports::executor::DeviceFd;
use crate::ports::fd_inspector::FdInspector;

/// Linux's SCSI generic (sg) character major.
const SCSI_GENERIC_MAJOR: u32 = 21;

/// The server's [`FdInspector`] for the fds clients send: [`inspect`] with
/// `fcntl` and `fstat`, then [`wwid`] from sysfs when wanted.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientFdInspector;

impl FdInspector for ClientFdInspector {
    fn inspect(&self, fd: OwnedFd, want_wwid: bool) -> (DeviceFd, Option<String>) {
        let device = inspect(fd);
        let wwid = if want_wwid { wwid(&device.info) } else { None };
        (device, wwid)
    }
}

/// Gathers [`DeviceInfo`] for `fd`. A failing `fstat` or `fcntl` (which only
/// happens for a closed fd) yields [`DeviceKind::Other`] so that the fd is
/// still owned and closed, and never reaches an ioctl.
pub fn inspect(fd: OwnedFd) -> DeviceFd {
    let open_mode = match fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL) {
        Ok(flags) => match OFlag::from_bits_truncate(flags) & OFlag::O_ACCMODE {
            OFlag::O_WRONLY => OpenMode::WriteOnly,
            OFlag::O_RDWR => OpenMode::ReadWrite,
            _ => OpenMode::ReadOnly,
        },
        Err(_) => OpenMode::ReadOnly,
    };
    let info = match fstat(fd.as_raw_fd()) {
        Ok(st) => {
            let mut info = DeviceInfo {
                kind: DeviceKind::Other,
                open_mode,
                dev: st.st_dev,
                ino: st.st_ino,
                rdev: st.st_rdev,
            };
            info.kind = match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
                SFlag::S_IFBLK => DeviceKind::Block,
                SFlag::S_IFCHR if info.major() == SCSI_GENERIC_MAJOR => DeviceKind::ScsiGeneric,
                SFlag::S_IFCHR if is_bsg(info.major(), info.minor()) => DeviceKind::Bsg,
                SFlag::S_IFCHR => DeviceKind::OtherChar,
                SFlag::S_IFREG => DeviceKind::Regular,
                SFlag::S_IFDIR => DeviceKind::Directory,
                SFlag::S_IFSOCK => DeviceKind::Socket,
                SFlag::S_IFIFO => DeviceKind::Fifo,
                _ => DeviceKind::Other,
            };
            info
        }
        Err(_) => DeviceInfo {
            kind: DeviceKind::Other,
            open_mode,
            dev: 0,
            ino: 0,
            rdev: 0,
        },
    };
    DeviceFd { fd, info }
}

/// The WWID of a device node, from sysfs: a device-mapper map's `dm/uuid`
/// or a SCSI device's `device/wwid`. `None` for anything else.
pub fn wwid(info: &DeviceInfo) -> Option<String> {
    let class = match info.kind {
        DeviceKind::Block => "block",
        DeviceKind::ScsiGeneric | DeviceKind::Bsg => "char",
        _ => return None,
    };
    let base = format!("/sys/dev/{class}/{}:{}", info.major(), info.minor());
    ["dm/uuid", "device/wwid"].iter().find_map(|leaf| {
        let text = std::fs::read_to_string(format!("{base}/{leaf}")).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    })
}

/// bsg nodes have a dynamic major: ask sysfs which class the node belongs to.
fn is_bsg(major: u32, minor: u32) -> bool {
    std::fs::read_link(format!("/sys/dev/char/{major}:{minor}/subsystem"))
        .map(|target| target.file_name().is_some_and(|name| name == "bsg"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{File, OpenOptions};

    #[test]
    fn regular_file_access_modes() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let ro = inspect(File::open(tmp.path()).unwrap().into());
        assert_eq!(ro.info.kind, DeviceKind::Regular);
        assert_eq!(ro.info.open_mode, OpenMode::ReadOnly);
        let rw = OpenOptions::new()
            .read(true)
            .write(true)
            .open(tmp.path())
            .unwrap();
        let rw = inspect(rw.into());
        assert_eq!(rw.info.open_mode, OpenMode::ReadWrite);
        assert_eq!((rw.info.dev, rw.info.ino), (ro.info.dev, ro.info.ino));
        let wo = OpenOptions::new().write(true).open(tmp.path()).unwrap();
        assert_eq!(inspect(wo.into()).info.open_mode, OpenMode::WriteOnly);
    }

    #[test]
    fn other_kinds_are_recognised() {
        let dir = inspect(File::open("/").unwrap().into());
        assert_eq!(dir.info.kind, DeviceKind::Directory);
        let null = inspect(File::open("/dev/null").unwrap().into());
        assert_eq!(null.info.kind, DeviceKind::OtherChar);
        assert_eq!((null.info.major(), null.info.minor()), (1, 3));
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert_eq!(inspect(r).info.kind, DeviceKind::Fifo);
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(inspect(a.into()).info.kind, DeviceKind::Socket);
    }
}
