//! Everything tandem reads from outside its arguments, read once at start-up: this user's folders (from the
//! platform's conventions, `$XDG_CONFIG_HOME` and the like), `config.toml`, and the environment variables that
//! tune a run. `main` loads one [`Config`] and passes it down; no other module reads the environment, builds one
//! of these folders or parses the configuration file, so what a command sees is stated in one place.
//!
//! Reading never fails: a file that cannot be read or parsed is kept as its error, and each setting that needs it
//! reports it (naming the file) when asked, so `tandem index` still works beside a broken `[keys]` table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::auth::Token;
use crate::error::{Error, Result};

/// The environment variable that sets the download cache's limit; it wins over `cache_limit` in the file.
pub const CACHE_LIMIT_ENV: &str = "TANDEM_CACHE_LIMIT";
/// The download cache's limit when nobody set one.
pub const DEFAULT_CACHE_LIMIT: u64 = 1 << 30;

/// This user's folders. `None` where the platform gives none (no home folder).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dirs {
    /// `$XDG_CONFIG_HOME/tandem`: `config.toml` and the client id.
    pub config: Option<PathBuf>,
    /// `$XDG_CACHE_HOME/tandem`: the download cache.
    pub cache: Option<PathBuf>,
    /// `$XDG_STATE_HOME/tandem`: the TUI's log.
    pub state: Option<PathBuf>,
}

impl Dirs {
    /// The platform's folders for tandem.
    pub fn of_user() -> Self {
        match directories::ProjectDirs::from("", "", "tandem") {
            Some(dirs) => Dirs {
                config: Some(dirs.config_dir().to_path_buf()),
                cache: Some(dirs.cache_dir().to_path_buf()),
                state: Some(dirs.state_dir().unwrap_or_else(|| dirs.data_local_dir()).to_path_buf()),
            },
            None => Dirs::default(),
        }
    }

    /// All three beneath one folder: what tests give a process of their own.
    pub fn under(base: &Path) -> Self {
        Dirs { config: Some(base.join("config")), cache: Some(base.join("cache")), state: Some(base.join("state")) }
    }
}

/// What was read at start-up.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub dirs: Dirs,
    /// `config.toml`: its path, and its table or why it could not be had. `None` without a config folder.
    file: Option<(PathBuf, std::result::Result<toml::Table, String>)>,
    /// `TANDEM_CACHE_LIMIT`, as given.
    cache_limit_env: Option<String>,
    /// `TANDEM_UDP_LOSS`: the fraction of UDP datagrams this process drops each way, to test recovery.
    pub udp_loss: f64,
    /// `TANDEM_DEMO_BIG_MIB`: the size of the demo's large file, in MiB.
    pub demo_big_mib: Option<u64>,
    /// `HOSTNAME`, where the system gives no host name.
    pub host_name_fallback: Option<String>,
}

impl Config {
    /// Reads this user's folders, `config.toml` and the environment.
    pub fn load() -> Self {
        let env = |name: &str| std::env::var(name).ok();
        Config::read(Dirs::of_user(), env)
    }

    /// A configuration from `dirs` and the environment variables `env` gives (`None` for unset).
    pub fn read(dirs: Dirs, env: impl Fn(&str) -> Option<String>) -> Self {
        let file = dirs.config.as_ref().map(|dir| {
            let path = dir.join("config.toml");
            let table = match std::fs::read_to_string(&path) {
                Ok(text) => toml::from_str::<toml::Table>(&text).map_err(|e| e.message().to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(toml::Table::new()),
                Err(e) => Err(e.to_string()),
            };
            (path, table)
        });
        Config {
            dirs,
            file,
            cache_limit_env: env(CACHE_LIMIT_ENV),
            udp_loss: env("TANDEM_UDP_LOSS")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|loss| (0.0..1.0).contains(loss))
                .unwrap_or(0.0),
            demo_big_mib: env("TANDEM_DEMO_BIG_MIB").and_then(|v| v.parse().ok()),
            host_name_fallback: env("HOSTNAME"),
        }
    }

    /// Where `config.toml` is (or would be).
    pub fn file_path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(path, _)| path.as_path())
    }

    /// The table of `config.toml`: empty when there is none; an error naming the file when it is unreadable.
    fn table(&self) -> Result<Option<(&Path, &toml::Table)>> {
        match &self.file {
            None => Ok(None),
            Some((path, Ok(table))) => Ok(Some((path, table))),
            Some((path, Err(reason))) => {
                Err(Error::Malformed { what: "configuration file", reason: format!("{}: {reason}", path.display()) })
            }
        }
    }

    /// `token` in `config.toml`, checked.
    pub fn token(&self) -> Result<Option<Token>> {
        let Some((path, table)) = self.table()? else { return Ok(None) };
        match table.get("token") {
            None => Ok(None),
            Some(toml::Value::String(token)) => Token::new(token, &path.display().to_string()).map(Some),
            Some(other) => Err(Error::Malformed {
                what: "token",
                reason: format!("token in {} must be text, not {other}", path.display()),
            }),
        }
    }

    /// The download cache's limit in bytes: `TANDEM_CACHE_LIMIT`, else `cache_limit` in `config.toml`, else
    /// [`DEFAULT_CACHE_LIMIT`]. A value that is not a size is an error naming it and where it came from.
    pub fn cache_limit(&self) -> Result<u64> {
        if let Some(value) = &self.cache_limit_env {
            return parse_size(value).ok_or_else(|| bad_limit(value, CACHE_LIMIT_ENV));
        }
        let Some((path, table)) = self.table()? else { return Ok(DEFAULT_CACHE_LIMIT) };
        let origin = format!("cache_limit in {}", path.display());
        match table.get("cache_limit") {
            None => Ok(DEFAULT_CACHE_LIMIT),
            Some(toml::Value::String(value)) => parse_size(value).ok_or_else(|| bad_limit(value, &origin)),
            Some(toml::Value::Integer(bytes)) => {
                u64::try_from(*bytes).map_err(|_| bad_limit(&bytes.to_string(), &origin))
            }
            Some(other) => Err(bad_limit(&other.to_string(), &origin)),
        }
    }

    /// The `[keys]` table of `config.toml` (key text to action name), and problems for the TUI's status bar.
    pub fn keys(&self) -> (BTreeMap<String, String>, Vec<String>) {
        let (path, table) = match self.table() {
            Ok(Some(found)) => found,
            Ok(None) => return (BTreeMap::new(), Vec::new()),
            Err(e) => return (BTreeMap::new(), vec![e.to_string()]),
        };
        let mut keys = BTreeMap::new();
        let mut problems = Vec::new();
        match table.get("keys") {
            None => {}
            Some(toml::Value::Table(bindings)) => {
                for (key, action) in bindings {
                    match action {
                        toml::Value::String(action) => {
                            keys.insert(key.clone(), action.clone());
                        }
                        other => {
                            problems.push(format!("{}: [keys] {key} = {other} is not an action name", path.display()))
                        }
                    }
                }
            }
            Some(_) => problems.push(format!("{}: [keys] must be a table", path.display())),
        }
        (keys, problems)
    }
}

/// Parses `512 MiB`, `1.5G`, `200KB` or `1048576`, as rsync reads sizes: `K`, `M`, `G`, `T` and `KiB` … `TiB`
/// count in 1024s, `KB` … `TB` in 1000s. `None` if it is not a size.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let factor: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(factor);
    }
    // A fraction, as in `1.5G`: whole bytes, rounded down.
    let value: f64 = number.parse().ok()?;
    let bytes = value * factor as f64;
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

fn bad_limit(value: &str, origin: &str) -> Error {
    Error::Malformed {
        what: "cache limit",
        reason: format!(
            "{value:?} (from {origin}) is not a size: use bytes, or a number with K, M, G, KiB, MiB or GiB, \
             as in \"512 MiB\""
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_folder(dir: &Path, env: &[(&str, &str)]) -> Config {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let dirs = Dirs { config: Some(dir.to_path_buf()), ..Dirs::default() };
        Config::read(dirs, |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn sizes_in_every_spelling() {
        for (text, bytes) in [
            ("0", 0),
            ("1048576", 1 << 20),
            ("512 MiB", 512 << 20),
            ("512MiB", 512 << 20),
            ("1G", 1 << 30),
            ("1 gib", 1 << 30),
            ("2K", 2048),
            ("200KB", 200_000),
            ("1.5 GiB", 3 << 29),
            ("  7 b ", 7),
            ("1T", 1 << 40),
        ] {
            assert_eq!(parse_size(text), Some(bytes), "{text}");
        }
        for bad in ["", "MiB", "12 parsecs", "-1", "1..5G", ".5G", "5.G", "1 G B", "99999999999999999999 TiB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn cache_limit_from_environment_then_file_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        assert_eq!(in_folder(dir.path(), &[]).cache_limit().unwrap(), DEFAULT_CACHE_LIMIT, "no file");
        std::fs::write(&file, "token = \"abcdefgh\"\n").unwrap();
        assert_eq!(in_folder(dir.path(), &[]).cache_limit().unwrap(), DEFAULT_CACHE_LIMIT, "no key");
        std::fs::write(&file, "cache_limit = \"512 MiB\"\n").unwrap();
        assert_eq!(in_folder(dir.path(), &[]).cache_limit().unwrap(), 512 << 20);
        let env = [(CACHE_LIMIT_ENV, "2G")];
        assert_eq!(in_folder(dir.path(), &env).cache_limit().unwrap(), 2 << 30, "the environment wins");
        std::fs::write(&file, "cache_limit = 4096\n").unwrap();
        assert_eq!(in_folder(dir.path(), &[]).cache_limit().unwrap(), 4096);
    }

    #[test]
    fn a_bad_value_names_itself_and_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        let message = in_folder(dir.path(), &[(CACHE_LIMIT_ENV, "12 parsecs")]).cache_limit().unwrap_err().to_string();
        assert!(message.contains("\"12 parsecs\"") && message.contains(CACHE_LIMIT_ENV), "{message}");
        std::fs::write(dir.path().join("config.toml"), "cache_limit = -5\n").unwrap();
        let message = in_folder(dir.path(), &[]).cache_limit().unwrap_err().to_string();
        assert!(message.contains("\"-5\"") && message.contains("config.toml"), "{message}");
    }

    #[test]
    fn a_broken_file_fails_the_settings_that_need_it_and_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), "token = \"abc\n[keys\n").unwrap();
        let config = in_folder(dir.path(), &[("TANDEM_UDP_LOSS", "0.25"), ("TANDEM_DEMO_BIG_MIB", "8")]);
        let message = config.token().unwrap_err().to_string();
        assert!(message.contains("config.toml"), "{message}");
        let (keys, problems) = config.keys();
        assert!(keys.is_empty() && problems.len() == 1 && problems[0].contains("config.toml"), "{problems:?}");
        assert_eq!((config.udp_loss, config.demo_big_mib), (0.25, Some(8)));
        assert_eq!(in_folder(dir.path(), &[("TANDEM_UDP_LOSS", "1.5")]).udp_loss, 0.0, "out of range is no loss");
    }

    #[test]
    fn token_and_keys_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), "token = \"abcdefgh12\"\n[keys]\nx = \"quit\"\ny = 3\n")
            .unwrap();
        let config = in_folder(dir.path(), &[]);
        assert_eq!(config.token().unwrap().map(|t| t.reveal().to_string()), Some("abcdefgh12".to_string()));
        let (keys, problems) = config.keys();
        assert_eq!(keys.get("x").map(String::as_str), Some("quit"));
        assert!(problems.len() == 1 && problems[0].contains("y = 3"), "{problems:?}");
    }
}
