//! The one-line bars: title (where each pane points, connection and sync state), the connection banner, the
//! status line (or the prompt being typed) and the key hints.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::tui::action::Action;
use crate::tui::app::{App, Mode};
use crate::tui::sync::{SyncPhase, SyncStatus, counts};
use crate::tui::worker::ConnectionState;

pub fn title(frame: &mut Frame, area: Rect, app: &App) {
    let (state, color) = match &app.connection {
        ConnectionState::Connecting => ("connecting…".to_string(), Color::Yellow),
        ConnectionState::Connected { .. } => ("connected".to_string(), Color::Green),
        ConnectionState::Lost { .. } => ("disconnected".to_string(), Color::Red),
    };
    let line = Line::from(vec![
        Span::styled(" tandem ", Style::new().bold().reversed()),
        Span::raw(format!("  remote {} ", app.remote_label)),
        Span::styled(state, Style::new().fg(color).bold()),
        Span::raw("   sync: "),
        sync_state(&app.sync),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

/// `off`, `starting…`, `syncing…`, `in sync · ↑2 ↓1`, or the problem in red (the log keeps the whole text).
fn sync_state(sync: &SyncStatus) -> Span<'static> {
    let (text, color) = match &sync.phase {
        SyncPhase::Off => ("off".to_string(), Color::DarkGray),
        SyncPhase::Starting => ("starting…".to_string(), Color::Yellow),
        SyncPhase::Syncing => ("syncing…".to_string(), Color::Cyan),
        SyncPhase::InSync if sync.left_out > 0 => {
            let done = sync.last.as_ref().map(|last| format!(" · {}", counts(last))).unwrap_or_default();
            (format!("in sync{done} · {} left out", sync.left_out), Color::Yellow)
        }
        SyncPhase::InSync => match &sync.last {
            Some(last) => (format!("in sync · {}", counts(last)), Color::Green),
            None => ("in sync".to_string(), Color::Green),
        },
        SyncPhase::Problem(problem) => (format!("problem: {problem}"), Color::Red),
        SyncPhase::Stopping => ("stopping…".to_string(), Color::Yellow),
        SyncPhase::Failed(problem) => (format!("stopped: {problem}"), Color::Red),
    };
    Span::styled(text, Style::new().fg(color).bold())
}

pub fn banner_height(app: &App) -> u16 {
    u16::from(matches!(app.connection, ConnectionState::Lost { .. }))
}

pub fn banner(frame: &mut Frame, area: Rect, app: &App) {
    if let ConnectionState::Lost { reason, retry_in } = &app.connection {
        let text = format!(" connection lost: {reason} — next try in {} s ", retry_in.as_secs().max(1));
        frame.render_widget(Paragraph::new(text).style(Style::new().bg(Color::Red).fg(Color::White).bold()), area);
    }
}

pub fn status(frame: &mut Frame, area: Rect, app: &App) {
    if let Mode::Prompt(prompt) = &app.mode {
        let label = prompt.kind.label();
        let mut spans = vec![Span::styled(label, Style::new().bold()), Span::raw(prompt.text.clone())];
        if let Some(error) = &prompt.error {
            spans[1] = Span::styled(prompt.text.clone(), Style::new().fg(Color::Red));
            spans.push(Span::styled(format!("   {error}"), Style::new().fg(Color::Red)));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), area);
        let x = area.x + (label.chars().count() + prompt.cursor) as u16;
        frame.set_cursor_position(Position::new(x.min(area.right().saturating_sub(1)), area.y));
        return;
    }
    let Some(line) = app.status() else { return };
    let style = if line.error { Style::new().fg(Color::Red) } else { Style::new() };
    frame.render_widget(Paragraph::new(format!(" {}", line.text)).style(style), area);
}

/// Key hints, in order of importance; what does not fit the width is left out (help and quit always stay).
pub fn hints(frame: &mut Frame, area: Rect, app: &App) {
    const HINTS: [(Action, &str); 11] = [
        (Action::Help, "help"),
        (Action::Quit, "quit"),
        (Action::DownloadTcp, "download"),
        (Action::SwitchPane, "pane"),
        (Action::Verify, "verify"),
        (Action::FilterRegex, "filter"),
        (Action::CommandLine, "command"),
        (Action::FilterTime, "time"),
        (Action::DownloadUdp, "udp"),
        (Action::ToggleSync, "sync"),
        (Action::Lock, "lock"),
    ];
    let key_of = |action| app.keymap.keys_for(action).first().map(|k| k.to_string()).unwrap_or_default();
    let mut room = area.width as usize;
    let mut shown = [false; HINTS.len()];
    for (i, (action, label)) in HINTS.iter().enumerate() {
        let width = key_of(*action).chars().count() + label.len() + 3;
        if width <= room {
            room -= width;
            shown[i] = true;
        }
    }
    // Display order: navigation first, help and quit last.
    let order = [3, 2, 8, 4, 5, 7, 9, 10, 6, 0, 1];
    let spans: Vec<Span> = order
        .into_iter()
        .filter(|&i| shown[i])
        .flat_map(|i| {
            let (action, label) = HINTS[i];
            [
                Span::styled(key_of(action), Style::new().add_modifier(Modifier::REVERSED)),
                Span::raw(format!(" {label}  ")),
            ]
        })
        .collect();
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
