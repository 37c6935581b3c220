//! The transfers panel: one row per queued, running or just-finished transfer, with protocol, a progress bar,
//! bytes, speed and time left.

use humansize::{BINARY, format_size};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use crate::tui::app::App;
use crate::tui::transfers::{Transfer, TransferState};

const MAX_ROWS: u16 = 5;
const BAR_WIDTH: usize = 20;

/// Rows the panel takes: nothing when there is nothing to show.
pub fn height(app: &App, screen_height: u16) -> u16 {
    if app.transfers.is_empty() {
        return 0;
    }
    let room = screen_height.saturating_sub(12).max(1);
    (app.transfers.len() as u16).min(MAX_ROWS).min(room) + 2
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    if area.height == 0 {
        return;
    }
    let active =
        app.transfers.iter().filter(|t| matches!(t.state, TransferState::Running | TransferState::Queued)).count();
    let block = Block::bordered().title(format!(" transfers: {active} active "));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let lines: Vec<Line> = app.transfers.iter().take(inner.height as usize).map(row).collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

fn row(transfer: &Transfer) -> Line<'static> {
    let fraction = transfer.fraction();
    let filled = (fraction * BAR_WIDTH as f64).round() as usize;
    let bar = format!("{}{}", "█".repeat(filled), "░".repeat(BAR_WIDTH - filled.min(BAR_WIDTH)));
    let (done, total) = (transfer.progress.get(), transfer.progress.total());
    let bytes = format!("{} / {}", format_size(done, BINARY), format_size(total, BINARY));
    let (state, color) = match &transfer.state {
        TransferState::Queued => ("queued".to_string(), Color::DarkGray),
        TransferState::Running => {
            let eta = transfer.eta_seconds().map(|s| format!("ETA {}:{:02}", s / 60, s % 60)).unwrap_or_default();
            (format!("{}/s {eta}", format_size(transfer.speed as u64, BINARY)), Color::Cyan)
        }
        TransferState::Done => {
            (format!("done, MD5 verified, {}/s", format_size(transfer.speed as u64, BINARY)), Color::Green)
        }
        TransferState::Failed(reason) => (format!("failed: {reason}"), Color::Red),
    };
    Line::from(vec![
        Span::styled(format!("{:<4}", transfer.protocol), Style::new().fg(Color::Magenta)),
        Span::raw(format!("{:<24.24} ", transfer.name)),
        Span::styled(bar, Style::new().fg(color)),
        Span::raw(format!(" {:>3.0}%  {bytes:<22} ", fraction * 100.0)),
        Span::styled(state, Style::new().fg(color)),
    ])
}
