//! Who this client is, to the servers it talks to: a random id made on first use and kept in
//! `$XDG_CONFIG_HOME/tandem/client-id`, plus the host name people see in lock messages and conflict copies.
//! The id is what owns a lock, so two clients on one host (or a renamed host) stay distinct.

use std::path::Path;

use crate::config::Config;

use crate::error::{Error, Result};
use crate::protocol::ClientIdentity;

const ID_FILE: &str = "client-id";

/// This client's identity, from `config_dir`, creating the id file on first use; `host` is the name people see.
pub fn load_or_create(config_dir: &Path, host: String) -> Result<ClientIdentity> {
    let file = config_dir.join(ID_FILE);
    let id = match std::fs::read_to_string(&file) {
        Ok(text) if is_valid_id(text.trim()) => text.trim().to_string(),
        Ok(_) => {
            let reason = format!("{}: not a tandem client id; delete it to make a new one", file.display());
            return Err(Error::Malformed { what: "client id file", reason });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = format!("{:032x}", rand::random::<u128>());
            std::fs::create_dir_all(config_dir).map_err(|e| Error::io(config_dir, e))?;
            // Written atomically so two clients starting at once cannot leave a torn id.
            let mut temp = tempfile::NamedTempFile::new_in(config_dir).map_err(|e| Error::io(config_dir, e))?;
            std::io::Write::write_all(&mut temp, format!("{id}\n").as_bytes()).map_err(|e| Error::io(&file, e))?;
            match temp.persist_noclobber(&file) {
                Ok(_) => id,
                // Someone else created it first: theirs is the identity.
                Err(_) => return load_or_create(config_dir, host),
            }
        }
        Err(e) => return Err(Error::io(&file, e)),
    };
    Ok(ClientIdentity { id, host })
}

/// The identity of this user on this machine, from the configured config folder.
pub fn current(config: &Config) -> Result<ClientIdentity> {
    let dir = config.dirs.config.as_deref();
    let dir = dir.ok_or_else(|| Error::NoHomeFolder { purpose: "the client id" })?;
    load_or_create(dir, host_name(config.host_name_fallback.as_deref()))
}

/// The machine's host name, as `hostname` prints it; `fallback` (`$HOSTNAME`) where the system gives none.
pub fn host_name(fallback: Option<&str>) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    #[cfg(unix)]
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    #[cfg(not(unix))]
    let ok = false;
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..len]) {
        Ok(name) if ok && !name.is_empty() => name.to_string(),
        _ => fallback.unwrap_or("unknown").to_string(),
    }
}

fn is_valid_id(text: &str) -> bool {
    (8..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_reused_and_distinct_per_folder() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = load_or_create(a.path(), host_name(None)).unwrap();
        assert_eq!(load_or_create(a.path(), host_name(None)).unwrap(), first);
        assert_ne!(load_or_create(b.path(), host_name(None)).unwrap().id, first.id);
        assert_eq!(first.host, host_name(None));
    }

    #[test]
    fn a_damaged_id_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ID_FILE), "not an id!").unwrap();
        let message = load_or_create(dir.path(), "h".into()).unwrap_err().to_string();
        assert!(message.contains("client-id"), "{message}");
    }
}
