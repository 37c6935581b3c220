//! Drawing: pure functions from [`App`] to a frame. Only the visible rows of each pane are built, so a folder of
//! 100,000 entries costs the same to draw as one of 30.

mod bars;
mod overlay;
mod pane;
#[cfg(test)]
mod snapshots_tests;
mod transfers;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};

use super::app::{App, Mode};
use super::pane::Side;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let banner = bars::banner_height(app);
    let transfers = transfers::height(app, area.height);
    let [title, banner_area, panes, transfers_area, status, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banner),
        Constraint::Min(3),
        Constraint::Length(transfers),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    bars::title(frame, title, app);
    bars::banner(frame, banner_area, app);
    let [left, right] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(panes);
    pane::draw(frame, left, app, Side::Local);
    pane::draw(frame, right, app, Side::Remote);
    transfers::draw(frame, transfers_area, app);
    bars::status(frame, status, app);
    bars::hints(frame, hints, app);
    match &app.mode {
        Mode::Help { scroll } => overlay::help(frame, app, *scroll),
        Mode::Log { scroll } => overlay::log(frame, app, *scroll),
        Mode::Output { title, text, scroll } => overlay::output(frame, title, text, *scroll),
        Mode::Normal | Mode::Prompt(_) => {}
    }
}
