//! Keys as data: a map from key to [`Action`] with the default bindings, overridable from the `[keys]` table of
//! `$XDG_CONFIG_HOME/tandem/config.toml`, e.g. `"ctrl-d" = "download_tcp"` or `x = "quit"`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::action::Action;

/// A key with its modifiers, as the keymap stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
}

impl Key {
    pub fn new(code: KeyCode) -> Self {
        Key { code, modifiers: KeyModifiers::NONE }
    }

    /// Normalises a terminal key event: Shift is part of the character for printable keys.
    pub fn from_event(event: KeyEvent) -> Self {
        let mut modifiers = event.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
        if let KeyCode::Char(_) = event.code {
            modifiers.remove(KeyModifiers::SHIFT);
        }
        Key { code: event.code, modifiers }
    }

    /// Parses `j`, `G`, `ctrl-d`, `alt-x`, `f5`, `enter`, `pgdn`, `space`, …
    pub fn parse(text: &str) -> Option<Key> {
        let mut modifiers = KeyModifiers::NONE;
        let mut rest = text;
        loop {
            let lower = rest.to_ascii_lowercase();
            if let Some(stripped) = lower.strip_prefix("ctrl-") {
                modifiers |= KeyModifiers::CONTROL;
                rest = &rest[rest.len() - stripped.len()..];
            } else if let Some(stripped) = lower.strip_prefix("alt-") {
                modifiers |= KeyModifiers::ALT;
                rest = &rest[rest.len() - stripped.len()..];
            } else {
                break;
            }
        }
        let code = match rest.to_ascii_lowercase().as_str() {
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pgup" | "pageup" => KeyCode::PageUp,
            "pgdn" | "pagedown" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "enter" => KeyCode::Enter,
            "backspace" => KeyCode::Backspace,
            "tab" => KeyCode::Tab,
            "esc" => KeyCode::Esc,
            "space" => KeyCode::Char(' '),
            f if f.len() >= 2 && f.starts_with('f') && f[1..].parse::<u8>().is_ok() => KeyCode::F(f[1..].parse().ok()?),
            _ => {
                let mut chars = rest.chars();
                let c = chars.next()?;
                if chars.next().is_some() {
                    return None;
                }
                KeyCode::Char(c)
            }
        };
        Some(Key { code, modifiers })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.modifiers.contains(KeyModifiers::CONTROL) {
            write!(f, "Ctrl-")?;
        }
        if self.modifiers.contains(KeyModifiers::ALT) {
            write!(f, "Alt-")?;
        }
        match self.code {
            KeyCode::Char(' ') => write!(f, "Space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::F(n) => write!(f, "F{n}"),
            KeyCode::Up => write!(f, "↑"),
            KeyCode::Down => write!(f, "↓"),
            KeyCode::PageUp => write!(f, "PgUp"),
            KeyCode::PageDown => write!(f, "PgDn"),
            KeyCode::Backspace => write!(f, "Backspace"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// The key bindings in force.
#[derive(Debug, Clone)]
pub struct KeyMap {
    bindings: HashMap<Key, Action>,
}

impl Default for KeyMap {
    fn default() -> Self {
        use Action::*;
        let defaults: &[(&str, Action)] = &[
            ("up", Up),
            ("k", Up),
            ("down", Down),
            ("j", Down),
            ("pgup", PageUp),
            ("pgdn", PageDown),
            ("home", Home),
            ("g", Home),
            ("end", End),
            ("G", End),
            ("enter", Open),
            ("right", Open),
            ("backspace", Parent),
            ("h", Parent),
            ("left", Parent),
            ("tab", SwitchPane),
            ("space", Select),
            ("d", DownloadTcp),
            ("u", DownloadUdp),
            ("f5", Copy),
            ("v", Verify),
            ("V", VerifyAll),
            ("/", FilterRegex),
            ("t", FilterTime),
            ("s", ToggleSync),
            ("r", Refresh),
            ("L", Lock),
            (":", CommandLine),
            ("?", Help),
            ("f1", Help),
            ("e", ShowLog),
            ("q", Quit),
            ("f10", Quit),
        ];
        let bindings = defaults.iter().filter_map(|(key, action)| Some((Key::parse(key)?, *action))).collect();
        KeyMap { bindings }
    }
}

impl KeyMap {
    /// The defaults with the `[keys]` table of the configuration file (key text to action name) applied on top.
    /// Returns the problems found, each naming the bad entry; the other entries still apply.
    pub fn with_config(keys: &BTreeMap<String, String>) -> (KeyMap, Vec<String>) {
        let mut map = KeyMap::default();
        let mut problems = Vec::new();
        for (text, name) in keys {
            match (Key::parse(text), Action::named(name)) {
                (Some(key), Some(action)) => {
                    map.bindings.insert(key, action);
                }
                (None, _) => problems.push(format!("config: unknown key {text:?} in [keys]")),
                (_, None) => problems.push(format!("config: unknown action {name:?} for {text:?} in [keys]")),
            }
        }
        (map, problems)
    }

    pub fn action(&self, key: Key) -> Option<Action> {
        self.bindings.get(&key).copied()
    }

    /// Every key bound to `action`, for the help overlay and the hint bar.
    pub fn keys_for(&self, action: Action) -> Vec<Key> {
        let mut keys: Vec<Key> = self.bindings.iter().filter(|(_, a)| **a == action).map(|(k, _)| *k).collect();
        keys.sort_by_key(|k| (k.to_string().chars().count(), k.to_string()));
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_overrides() {
        assert_eq!(Key::parse("ctrl-d"), Some(Key { code: KeyCode::Char('d'), modifiers: KeyModifiers::CONTROL }));
        assert_eq!(Key::parse("F5"), Some(Key::new(KeyCode::F(5))));
        assert_eq!(Key::parse("G"), Some(Key::new(KeyCode::Char('G'))));
        assert_eq!(Key::parse("nonsense"), None);

        let keys = [("x", "quit"), ("q", "help"), ("ctrl-z", "download_tcp"), ("zz", "quit"), ("y", "fly")];
        let keys = keys.iter().map(|(k, a)| (k.to_string(), a.to_string())).collect();
        let (map, problems) = KeyMap::with_config(&keys);
        assert_eq!(map.action(Key::new(KeyCode::Char('x'))), Some(Action::Quit));
        assert_eq!(map.action(Key::new(KeyCode::Char('q'))), Some(Action::Help));
        assert_eq!(map.action(Key::parse("ctrl-z").unwrap()), Some(Action::DownloadTcp));
        assert_eq!(map.action(Key::new(KeyCode::F(10))), Some(Action::Quit));
        assert_eq!(
            problems,
            ["config: unknown action \"fly\" for \"y\" in [keys]", "config: unknown key \"zz\" in [keys]"]
        );
    }

    #[test]
    fn shifted_letters_match_their_capital() {
        let event = KeyEvent::new(KeyCode::Char('V'), KeyModifiers::SHIFT);
        assert_eq!(KeyMap::default().action(Key::from_event(event)), Some(Action::VerifyAll));
    }
}
