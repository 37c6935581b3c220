//! How commands print their log lines on a terminal: the local time, then the message, as a person reads it
//! (`14:02:11 upload docs/a.txt`, `14:02:12 warning: skipped upload …`). Debug and trace lines, which only
//! developers ask for, also name the module they come from. The TUI's log file keeps tracing's full format.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub struct TerminalFormat;

impl<S, N> FormatEvent<S, N> for TerminalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let metadata = event.metadata();
        write!(writer, "{} ", chrono::Local::now().format("%H:%M:%S"))?;
        match *metadata.level() {
            Level::INFO => {}
            Level::WARN => write!(writer, "warning: ")?,
            Level::ERROR => write!(writer, "error: ")?,
            level => write!(writer, "{} {}: ", level.as_str().to_lowercase(), metadata.target())?,
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
