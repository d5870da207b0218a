// SPDX-License-Identifier: GPL-2.0-or-later
//! What a received fd is, as learnt once from `fstat` and `fcntl`: the facts
//! every decision about a client's device (may SG_IO run, is it allowed, may
//! it change reservations) is made on, and how logs name it.

/// What kind of file the client's fd refers to. Only block devices and SCSI
/// generic (sg, bsg) character devices may ever see the SG_IO ioctl: another
/// driver may give the same ioctl number a different meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A block device (`/dev/sdX`, `/dev/dm-N`).
    Block,
    /// An sg character device (`/dev/sgN`, major 21).
    ScsiGeneric,
    /// A bsg character device (`/dev/bsg/...`).
    Bsg,
    /// Any other character device.
    OtherChar,
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A socket.
    Socket,
    /// A pipe or FIFO.
    Fifo,
    /// Anything else (symlink fd, unknown type).
    Other,
}

impl DeviceKind {
    /// Whether SG_IO may be issued on this kind of file.
    pub fn accepts_sg_io(self) -> bool {
        matches!(
            self,
            DeviceKind::Block | DeviceKind::ScsiGeneric | DeviceKind::Bsg
        )
    }

    /// The kind in words, for a sentence ("not a regular file").
    pub fn described(self) -> &'static str {
        match self {
            DeviceKind::Block => "a block device",
            DeviceKind::ScsiGeneric => "an sg device",
            DeviceKind::Bsg => "a bsg device",
            DeviceKind::OtherChar => "a character device that is neither sg nor bsg",
            DeviceKind::Regular => "a regular file",
            DeviceKind::Directory => "a directory",
            DeviceKind::Socket => "a socket",
            DeviceKind::Fifo => "a FIFO",
            DeviceKind::Other => "a special file",
        }
    }
}

impl std::fmt::Display for DeviceKind {
    /// One word, for log fields.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceKind::Block => "block",
            DeviceKind::ScsiGeneric => "sg",
            DeviceKind::Bsg => "bsg",
            DeviceKind::OtherChar => "char",
            DeviceKind::Regular => "file",
            DeviceKind::Directory => "directory",
            DeviceKind::Socket => "socket",
            DeviceKind::Fifo => "fifo",
            DeviceKind::Other => "other",
        })
    }
}

/// How the client opened the fd (`O_ACCMODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// `O_RDONLY`: PR OUT is refused, as the C helper does.
    ReadOnly,
    /// `O_WRONLY`.
    WriteOnly,
    /// `O_RDWR`.
    ReadWrite,
}

/// Facts about a received fd, gathered once, on the blocking thread that runs
/// its command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// File type.
    pub kind: DeviceKind,
    /// How the client opened it.
    pub open_mode: OpenMode,
    /// `st_dev`: with `ino`, the identity of the file.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_rdev`: major:minor of a device node.
    pub rdev: u64,
}

impl DeviceInfo {
    /// Major number of a device node.
    pub fn major(&self) -> u32 {
        major(self.rdev)
    }

    /// Minor number of a device node.
    pub fn minor(&self) -> u32 {
        minor(self.rdev)
    }
}

fn major(dev: u64) -> u32 {
    ((dev >> 32) & 0xffff_f000) as u32 | ((dev >> 8) & 0xfff) as u32
}

fn minor(dev: u64) -> u32 {
    ((dev >> 12) & 0xffff_ff00) as u32 | (dev & 0xff) as u32
}

impl std::fmt::Display for DeviceInfo {
    /// The device as every log line names it: `MAJOR:MINOR` of a device
    /// node (as in /sys/dev and the `devices` allowlist), and for any other
    /// file (the emulated device's) its inode and file system.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            DeviceKind::Block
            | DeviceKind::ScsiGeneric
            | DeviceKind::Bsg
            | DeviceKind::OtherChar => {
                write!(f, "{}:{}", self.major(), self.minor())
            }
            _ => write!(
                f,
                "inode-{}-on-{}:{}",
                self.ino,
                major(self.dev),
                minor(self.dev)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_minor_follow_glibc_encoding() {
        let info = |rdev| DeviceInfo {
            kind: DeviceKind::Block,
            open_mode: OpenMode::ReadWrite,
            dev: 0,
            ino: 0,
            rdev,
        };
        // makedev(8, 16) and makedev(259, 70000).
        assert_eq!((info(0x810).major(), info(0x810).minor()), (8, 16));
        let (major, minor) = (259u64, 70000u64);
        let big = ((major & 0xfffff000) << 32)
            | ((major & 0xfff) << 8)
            | ((minor & 0xffffff00) << 12)
            | (minor & 0xff);
        assert_eq!((info(big).major(), info(big).minor()), (259, 70000));
    }

    #[test]
    fn logs_name_a_node_by_major_minor_and_a_file_by_inode() {
        let node = DeviceInfo {
            kind: DeviceKind::Block,
            open_mode: OpenMode::ReadWrite,
            dev: 0x5,
            ino: 99,
            rdev: 0x810,
        };
        assert_eq!(node.to_string(), "8:16");
        let file = DeviceInfo {
            kind: DeviceKind::Regular,
            rdev: 0,
            dev: 0xfe01,
            ..node
        };
        assert_eq!(file.to_string(), "inode-99-on-254:1");
    }

    #[test]
    fn only_block_sg_and_bsg_accept_sg_io() {
        use DeviceKind::*;
        for k in [Block, ScsiGeneric, Bsg] {
            assert!(k.accepts_sg_io());
        }
        for k in [OtherChar, Regular, Directory, Socket, Fifo, Other] {
            assert!(!k.accepts_sg_io());
        }
    }
}
