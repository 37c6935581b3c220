//! Everything a person can ask of the TUI, as data. Keys map to these ([`super::keymap`]); [`super::App::update`]
//! carries them out.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    /// Open the folder under the cursor.
    Open,
    Parent,
    SwitchPane,
    /// Select or unselect the entry under the cursor, then move down.
    Select,
    DownloadTcp,
    DownloadUdp,
    /// Copy the selection to the other pane.
    Copy,
    Verify,
    VerifyAll,
    FilterRegex,
    FilterTime,
    ToggleSync,
    Refresh,
    Lock,
    CommandLine,
    Help,
    ShowLog,
    Quit,
}

impl Action {
    /// Every action, in the order the help overlay lists them.
    /// The action a configuration file names (`"download_tcp"`), as serde spells it.
    pub fn named(name: &str) -> Option<Action> {
        use serde::de::IntoDeserializer;
        let name: serde::de::value::StrDeserializer<'_, serde::de::value::Error> = name.into_deserializer();
        Action::deserialize(name).ok()
    }

    pub const ALL: [Action; 24] = [
        Action::Up,
        Action::Down,
        Action::PageUp,
        Action::PageDown,
        Action::Home,
        Action::End,
        Action::Open,
        Action::Parent,
        Action::SwitchPane,
        Action::Select,
        Action::DownloadTcp,
        Action::DownloadUdp,
        Action::Copy,
        Action::Verify,
        Action::VerifyAll,
        Action::FilterRegex,
        Action::FilterTime,
        Action::ToggleSync,
        Action::Refresh,
        Action::Lock,
        Action::CommandLine,
        Action::Help,
        Action::ShowLog,
        Action::Quit,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Action::Up => "move up",
            Action::Down => "move down",
            Action::PageUp => "page up",
            Action::PageDown => "page down",
            Action::Home => "first entry",
            Action::End => "last entry",
            Action::Open => "open folder",
            Action::Parent => "parent folder",
            Action::SwitchPane => "switch pane",
            Action::Select => "select / unselect",
            Action::DownloadTcp => "download selection over TCP into the local folder",
            Action::DownloadUdp => "download selection over UDP",
            Action::Copy => "copy selection to the other pane",
            Action::Verify => "verify selection (MD5 on both sides)",
            Action::VerifyAll => "verify every file in both folders",
            Action::FilterRegex => "regex filter on the active pane",
            Action::FilterTime => "time-range filter on the active pane",
            Action::ToggleSync => "toggle auto-sync of the two roots",
            Action::Refresh => "refresh both panes",
            Action::Lock => "lock / unlock the selected remote file",
            Action::CommandLine => "command line (the CLI's words)",
            Action::Help => "this help",
            Action::ShowLog => "message log",
            Action::Quit => "quit",
        }
    }
}
