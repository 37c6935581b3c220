//! TUN devices (IFF_TUN | IFF_NO_PI): created in the emulator's own namespace by opening /dev/net/tun, so the
//! emulator keeps the fds after the devices move into their namespaces. Each read gives one IP packet the
//! namespace sent; each write hands one IP packet to the namespace as received.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::error::{Error, Result};

pub(crate) const TUN_PATH: &str = "/dev/net/tun";
/// `_IOW('T', 202, int)` from linux/if_tun.h; libc does not export it.
const TUNSETIFF: u64 = 0x4004_54ca;

pub(crate) struct Tun {
    file: File,
    name: String,
}

impl Tun {
    /// A new non-blocking TUN device; `pattern` may hold `%d` for the kernel to pick a free number.
    pub(crate) fn create(pattern: &str) -> Result<Tun> {
        if pattern.len() >= libc::IFNAMSIZ {
            return Err(Error::Failed(format!("TUN device name {pattern:?} is longer than {}", libc::IFNAMSIZ - 1)));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(TUN_PATH)
            .map_err(|e| Error::failed(format!("opening {TUN_PATH} for {pattern}"), e))?;
        // SAFETY: ifreq is plain old data; all zeroes is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(pattern.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one ifreq, which outlives the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut ifr) } < 0 {
            let e = io::Error::last_os_error();
            return Err(Error::failed(format!("TUNSETIFF on {TUN_PATH} for {pattern}"), e));
        }
        let name: Vec<u8> = ifr.ifr_name.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
        Ok(Tun { file, name: String::from_utf8_lossy(&name).into_owned() })
    }

    /// The name the kernel gave the device (in the namespace it was created in).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    pub(crate) fn write(&self, packet: &[u8]) -> io::Result<usize> {
        (&self.file).write(packet)
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
