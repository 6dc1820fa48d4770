//! The `?` screen: every key of the dashboard, and what each shard state
//! means, in 22 lines so it fits an 80×24 terminal.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::{LAG_MS_BAD, LAG_MS_WARN};
use crate::ui::theme::Theme;
use crate::ui::widgets::popup;

/// (key, what it does)
pub const KEYS: [(&str, &str); 9] = [
    ("↑↓ / k j", "select a shard (an event, after Tab)"),
    ("Enter", "the shard in full (Esc back); on an event, all of it"),
    ("Tab", "move between the shards and the event log"),
    ("p", "pause / resume the shard (its source keeps spooling)"),
    ("R", "resume every shard (after a pause on error: fix first)"),
    ("v", "verify: c counts, k keys, f full; x cancels it"),
    ("s", "save a status report to a file"),
    ("?", "this help (any key closes it)"),
    ("q / Ctrl-C", "quit: stop cleanly, checkpoints written"),
];

/// (state, meaning)
pub const STATES: [(&str, &str); 7] = [
    ("connecting", "linking to the source master (waiting: its host's copy slot)"),
    ("rdb", "full copy: █ applied, ▒ received, ░ still to come"),
    ("incremental", "applying the source's writes; lag says how far behind"),
    ("reconnecting", "link lost: continues with PSYNC from the checkpoint"),
    ("paused", "by p; PAUSED:error by the destination (events say why)"),
    ("FAILED", "stopped for good; the event log and detail say why"),
    ("stopped", "the task is stopping or stopped"),
];

pub fn render_help(theme: Theme, area: Rect, buf: &mut Buffer) {
    let inner = popup(" Help ", 78, 22, theme, area, buf);
    let mut lines = vec![Line::styled("Keys", theme.title())];
    for (k, v) in KEYS {
        lines.push(Line::from(vec![Span::styled(format!(" {k:<12}"), theme.key()), Span::raw(v)]));
    }
    lines.push(Line::styled("Shard states", theme.title()));
    for (k, v) in STATES {
        lines.push(Line::from(vec![Span::styled(format!(" {k:<13}"), theme.key()), Span::raw(v)]));
    }
    lines.push(Line::raw(format!(
        "Lag ms: fine up to {} s, worth a look up to {} s, trouble beyond.",
        LAG_MS_WARN / 1000,
        LAG_MS_BAD / 1000
    )));
    lines.push(Line::raw("Log file: <state dir>/shardsync.log"));
    Paragraph::new(lines).render(inner, buf);
}
