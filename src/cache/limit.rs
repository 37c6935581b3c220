//! How big the download cache may grow: `TANDEM_CACHE_LIMIT`, else `cache_limit` in
//! `$XDG_CONFIG_HOME/tandem/config.toml`, else 1 GiB. A size is plain bytes or a number with a unit, as rsync
//! reads them: `K`, `M`, `G`, `T` and `KiB` … `TiB` count in 1024s, `KB` … `TB` in 1000s. `0` turns the cache off.

use std::path::Path;

use crate::error::{Error, Result};

/// The limit when nobody set one.
pub const DEFAULT_LIMIT: u64 = 1 << 30;

/// The environment variable that sets the limit; it wins over the configuration file.
pub const LIMIT_ENV: &str = "TANDEM_CACHE_LIMIT";

/// Parses `512 MiB`, `1.5G`, `200KB` or `1048576`; `None` if it is not a size.
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

/// The limit from `env` (the value of [`LIMIT_ENV`], if set), else from the configuration file at `config`,
/// else [`DEFAULT_LIMIT`]. A value that is not a size is an error naming it and where it came from.
pub fn limit_from(env: Option<&str>, config: Option<&Path>) -> Result<u64> {
    if let Some(value) = env {
        return parse_size(value).ok_or_else(|| bad_limit(value, LIMIT_ENV));
    }
    let Some(path) = config else { return Ok(DEFAULT_LIMIT) };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DEFAULT_LIMIT),
        Err(e) => return Err(Error::io(path, e)),
    };
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| Error::io(path, std::io::Error::other(e.message().to_string())))?;
    let origin = format!("cache_limit in {}", path.display());
    match table.get("cache_limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(toml::Value::String(value)) => parse_size(value).ok_or_else(|| bad_limit(value, &origin)),
        Some(toml::Value::Integer(bytes)) => u64::try_from(*bytes).map_err(|_| bad_limit(&bytes.to_string(), &origin)),
        Some(other) => Err(bad_limit(&other.to_string(), &origin)),
    }
}

/// The limit this user configured, from the environment and `config.toml`.
pub fn configured_limit() -> Result<u64> {
    let env = std::env::var(LIMIT_ENV).ok();
    let config = crate::client::identity::config_dir().map(|dir| dir.join("config.toml"));
    limit_from(env.as_deref(), config.as_deref())
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
    fn environment_then_config_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        assert_eq!(limit_from(None, Some(&config)).unwrap(), DEFAULT_LIMIT, "no file");
        std::fs::write(&config, "token = \"abcdefgh\"\n").unwrap();
        assert_eq!(limit_from(None, Some(&config)).unwrap(), DEFAULT_LIMIT, "no key");
        std::fs::write(&config, "cache_limit = \"512 MiB\"\n").unwrap();
        assert_eq!(limit_from(None, Some(&config)).unwrap(), 512 << 20);
        assert_eq!(limit_from(Some("2G"), Some(&config)).unwrap(), 2 << 30, "the environment wins");
        std::fs::write(&config, "cache_limit = 4096\n").unwrap();
        assert_eq!(limit_from(None, Some(&config)).unwrap(), 4096);
    }

    #[test]
    fn a_bad_value_names_itself_and_its_origin() {
        let message = limit_from(Some("12 parsecs"), None).unwrap_err().to_string();
        assert!(message.contains("\"12 parsecs\"") && message.contains(LIMIT_ENV), "{message}");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "cache_limit = -5\n").unwrap();
        let message = limit_from(None, Some(&config)).unwrap_err().to_string();
        assert!(message.contains("\"-5\"") && message.contains("config.toml"), "{message}");
    }
}
