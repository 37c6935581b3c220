//! The one-line text input used by the regex filter, the time filter and the `:` command line.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    Regex,
    Time,
    Command,
}

impl PromptKind {
    pub fn label(self) -> &'static str {
        match self {
            PromptKind::Regex => "filter /",
            PromptKind::Time => "time START .. END: ",
            PromptKind::Command => ":",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Prompt {
    pub kind: PromptKind,
    pub text: String,
    /// Cursor position in characters.
    pub cursor: usize,
    /// Shown in red under the input while the text is not valid.
    pub error: Option<String>,
}

impl Prompt {
    pub fn new(kind: PromptKind, text: String) -> Self {
        let cursor = text.chars().count();
        Prompt { kind, text, cursor, error: None }
    }

    /// Applies an editing key: characters, Backspace, Delete, arrows, Home, End, Ctrl-U.
    pub fn edit(&mut self, key: KeyEvent) {
        let byte = |text: &str, chars: usize| text.char_indices().nth(chars).map(|(i, _)| i).unwrap_or(text.len());
        match key.code {
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.text.clear();
                self.cursor = 0;
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                let at = byte(&self.text, self.cursor);
                self.text.insert(at, c);
                self.cursor += 1;
            }
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                let at = byte(&self.text, self.cursor);
                self.text.remove(at);
            }
            KeyCode::Delete if self.cursor < self.text.chars().count() => {
                let at = byte(&self.text, self.cursor);
                self.text.remove(at);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(self.text.chars().count()),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.text.chars().count(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_unicode_text() {
        let mut prompt = Prompt::new(PromptKind::Command, "ab".into());
        prompt.edit(KeyEvent::from(KeyCode::Left));
        prompt.edit(KeyEvent::from(KeyCode::Char('é')));
        assert_eq!(prompt.text, "aéb");
        prompt.edit(KeyEvent::from(KeyCode::Backspace));
        prompt.edit(KeyEvent::from(KeyCode::Backspace));
        assert_eq!((prompt.text.as_str(), prompt.cursor), ("b", 0));
        prompt.edit(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        assert_eq!(prompt.text, "");
    }
}
