//! Popups drawn over the panes: the help listing every binding, the message log, and a `:` command's output.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use crate::tui::action::Action;
use crate::tui::app::App;

pub fn help(frame: &mut Frame, app: &App, scroll: u16) {
    let legend = "Hash column: = same  ≠ differs  + only here  … hashing  ? unknown  ! failed";
    let marks = "             C in the download cache (remote pane)  L locked";
    let mut lines = vec![Line::from(legend), Line::from(marks), Line::raw("")];
    for action in Action::ALL {
        let keys: Vec<String> = app.keymap.keys_for(action).iter().map(|k| k.to_string()).collect();
        lines.push(Line::from(vec![
            Span::styled(format!("{:<22}", keys.join(" ")), Style::new().bold()),
            Span::raw(action.describe()),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(
        "Keys can be remapped in $XDG_CONFIG_HOME/tandem/config.toml, e.g. [keys] x = \"quit\"".dark_gray(),
    ));
    popup(frame, " help — any key closes ", lines, scroll);
}

pub fn log(frame: &mut Frame, app: &App, scroll: u16) {
    let lines: Vec<Line> = if app.log.is_empty() {
        vec![Line::from("no messages yet")]
    } else {
        app.log
            .iter()
            .rev()
            .map(|l| {
                let style = if l.error { Style::new().fg(Color::Red) } else { Style::new() };
                Line::from(vec![Span::raw(format!("{}  ", l.time)), Span::styled(l.text.clone(), style)])
            })
            .collect()
    };
    popup(frame, " messages, newest first — Esc closes ", lines, scroll);
}

pub fn output(frame: &mut Frame, title: &str, text: &str, scroll: u16) {
    let lines: Vec<Line> = text.lines().map(|l| Line::from(l.to_string())).collect();
    popup(frame, &format!(" {title} — Esc closes "), lines, scroll);
}

fn popup(frame: &mut Frame, title: &str, lines: Vec<Line>, scroll: u16) {
    let area = centered(frame.area(), 90, 80);
    frame.render_widget(Clear, area);
    let block = Block::bordered().title(title.to_string()).border_style(Style::new().fg(Color::Cyan));
    frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }).scroll((scroll, 0)), area);
}

fn centered(area: Rect, percent_x: u16, percent_y: u16) -> Rect {
    let [area] = Layout::vertical([Constraint::Percentage(percent_y)]).flex(Flex::Center).areas(area);
    let [area] = Layout::horizontal([Constraint::Percentage(percent_x)]).flex(Flex::Center).areas(area);
    area
}
