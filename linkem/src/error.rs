//! The emulator's one error type: either this machine cannot run it at all (a caller may skip, except under
//! CI), or a step failed, with a message naming the device, namespace or command involved.

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// Not root, no /dev/net/tun, or no `ip` command: the emulator cannot run here.
    Unavailable(String),
    /// Setting up, running or tearing down a link failed.
    Failed(String),
}

impl Error {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }

    pub(crate) fn failed(what: impl fmt::Display, cause: impl fmt::Display) -> Error {
        Error::Failed(format!("{what}: {cause}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unavailable(why) => write!(f, "the link emulator cannot run here: {why}"),
            Error::Failed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
