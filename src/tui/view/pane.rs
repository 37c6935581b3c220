//! One pane: a bordered table of the folder's visible rows with Name, Size, Modified and Hash columns.

use humansize::{BINARY, format_size};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Cell, Paragraph, Row, Table, Wrap};

use crate::share::EntryKind;
use crate::timefmt::format_local;
use crate::tui::app::App;
use crate::tui::pane::{PaneState, Side, hash_mark};

/// Below this inner width the Modified column is left out.
const WIDE_ENOUGH_FOR_TIME: u16 = 56;
/// In the Hash column of a locked remote entry. One plain letter: an emoji's width varies between terminals.
const LOCK_MARK: &str = "L";
/// In the Hash column of a remote file whose bytes the download cache holds.
const CACHED_MARK: &str = "C";

pub fn draw(frame: &mut Frame, area: Rect, app: &App, side: Side) {
    let pane = app.pane(side);
    let other = app.pane(side.other());
    let active = app.active == side;
    let root = match side {
        Side::Local => &app.local_label,
        Side::Remote => &app.remote_label,
    };
    let mut title = format!(" {}: {}", if side == Side::Local { "local" } else { "remote" }, root);
    if !pane.dir.is_empty() {
        title.push('/');
        title.push_str(&pane.dir);
    }
    title.push(' ');
    let mut block =
        Block::bordered().title(title).border_type(if active { BorderType::Thick } else { BorderType::Plain });
    if active {
        block = block.border_style(Style::new().fg(Color::Cyan));
    }
    let footer = footer(pane);
    block = block.title_bottom(Line::from(footer).right_aligned());
    let inner = block.inner(area);
    frame.render_widget(block, area);

    if let Some(error) = &pane.error {
        let text = Paragraph::new(format!("cannot list this folder: {error}"))
            .style(Style::new().fg(Color::Red))
            .wrap(Wrap { trim: false });
        frame.render_widget(text, inner);
        return;
    }
    if pane.loading && pane.entries.is_empty() {
        frame.render_widget(Paragraph::new("loading…").style(Style::new().fg(Color::DarkGray)), inner);
        return;
    }

    let rows_available = inner.height.saturating_sub(1) as usize;
    pane.viewport_rows.set(rows_available.max(1));
    let mut scroll = pane.scroll.get();
    if pane.cursor < scroll {
        scroll = pane.cursor;
    } else if rows_available > 0 && pane.cursor >= scroll + rows_available {
        scroll = pane.cursor + 1 - rows_available;
    }
    scroll = scroll.min(pane.visible.len().saturating_sub(rows_available));
    pane.scroll.set(scroll);

    let show_time = inner.width >= WIDE_ENOUGH_FOR_TIME;
    let rows: Vec<Row> = pane.visible[scroll..(scroll + rows_available).min(pane.visible.len())]
        .iter()
        .enumerate()
        .map(|(i, &index)| {
            let entry = &pane.entries[index];
            let selected = pane.selected.contains(entry.name());
            let name = match entry.kind {
                EntryKind::Dir => format!("{}/", entry.name()),
                // A link is shown with what it points at; tandem never follows it.
                EntryKind::Symlink => match &entry.target {
                    Some(target) => format!("{}@ -> {target}", entry.name()),
                    None => format!("{}@", entry.name()),
                },
                EntryKind::File => entry.name().to_string(),
            };
            let size = if entry.kind == EntryKind::Dir { String::new() } else { format_size(entry.size, BINARY) };
            let mark = hash_mark(pane, other, entry);
            let mark_style = match mark {
                "=" => Style::new().fg(Color::Green),
                "≠" | "!" => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                "+" => Style::new().fg(Color::Yellow),
                _ => Style::new().fg(Color::DarkGray),
            };
            let mut cells = vec![
                Cell::from(if selected { "*" } else { " " }),
                Cell::from(name),
                Cell::from(Line::from(size).right_aligned()),
            ];
            if show_time {
                cells.push(Cell::from(format_local(entry.mtime_ns)[..16].to_string()));
            }
            // A cached copy and a lock show beside the comparison, which still matters: `= CL`.
            let cached = side == Side::Remote && app.is_cached(entry);
            let locked = entry.locked_by.is_some();
            let mut hash = vec![Span::styled(mark, mark_style)];
            if cached || locked {
                hash.push(Span::raw(" "));
            }
            if cached {
                hash.push(Span::styled(CACHED_MARK, Style::new().fg(Color::Cyan).bold()));
            }
            if locked {
                hash.push(Span::styled(LOCK_MARK, Style::new().fg(Color::Magenta).bold()));
            }
            cells.push(Cell::from(Line::from(hash)));
            let mut style = match entry.kind {
                EntryKind::Dir => Style::new().fg(Color::Blue).add_modifier(Modifier::BOLD),
                _ => Style::new(),
            };
            if selected {
                style = style.fg(Color::Yellow);
            }
            if scroll + i == pane.cursor {
                style = if active {
                    style.add_modifier(Modifier::REVERSED)
                } else {
                    style.add_modifier(Modifier::UNDERLINED)
                };
            }
            Row::new(cells).style(style)
        })
        .collect();

    let mut widths = vec![Constraint::Length(1), Constraint::Fill(1), Constraint::Length(10)];
    let mut header = vec!["", "Name", "      Size"];
    if show_time {
        widths.push(Constraint::Length(16));
        header.push("Modified");
    }
    widths.push(Constraint::Length(4));
    header.push("Hash");
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)))
        .column_spacing(1);
    frame.render_widget(table, inner);
}

/// `3 of 120 · 2 selected · /pattern/` in the bottom border, and who holds a lock on the entry under the cursor.
fn footer(pane: &PaneState) -> String {
    let mut parts = vec![if pane.filter.is_active() {
        format!("{} of {}", pane.visible.len(), pane.entries.len())
    } else {
        match pane.entries.len() {
            1 => "1 entry".to_string(),
            n => format!("{n} entries"),
        }
    }];
    if !pane.selected.is_empty() {
        parts.push(format!("{} selected", pane.selected.len()));
    }
    if pane.filter.is_active() {
        parts.push(pane.filter.describe());
    }
    if pane.loading && !pane.entries.is_empty() {
        parts.push("refreshing…".into());
    }
    if let Some(holder) = pane.current().and_then(|e| e.locked_by.as_ref()) {
        parts.push(format!("locked by {holder}"));
    }
    format!(" {} ", parts.join(" · "))
}
