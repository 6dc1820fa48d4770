//! Drawing the dashboard: a pure function of its state.
//!
//! ```text
//! header   task · elapsed · overall state       destination keys · memory · ops/s
//! shards   one row per Redis-Server, then the total
//! masters  a cluster destination: one line per master (slots, keys, memory, ops/s)
//! chart    applied ops/s over the last minutes
//! events   engine alerts and state changes, newest last
//! status   a notice, or the verify in progress
//! footer   key hints
//! ```
//!
//! Two table layouts: the compact one fits 80 columns (offsets are in the
//! detail view), the wide one (from [`WIDE`] columns) shows everything.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Paragraph, Row, Sparkline, StatefulWidget, Table, TableState, Widget, Wrap,
};

use super::help::render_help;
use super::{
    verdict, Dashboard, Focus, Overlay, Phase, VerifyState, View, LAG_BYTES_BAD, LAG_BYTES_WARN, LAG_MS_BAD,
    LAG_MS_WARN,
};
use crate::engine::snapshot::{ShardSnapshot, ShardState};
use crate::ui::format::{clock, count, duration_ms, fit, human_bytes, short_bytes, short_count, time_of_day};
use crate::ui::theme::{Theme, Tone};
use crate::ui::widgets::{confirm_keys, hints, popup};
use crate::verify::{Difference, VerifyMode};

/// From this width the table shows offsets, byte counts and the ETA.
pub const WIDE: u16 = 145;

impl Widget for &Dashboard {
    fn render(self, area: Rect, buf: &mut Buffer) {
        render_dashboard(self, area, buf);
    }
}

pub fn render_dashboard(d: &Dashboard, area: Rect, buf: &mut Buffer) {
    let theme = d.theme;
    let shards = d.snapshot.shards.len() as u16;
    // The table takes what it needs, leaving the chart and a few events.
    let table_h = (shards + 2).min(area.height.saturating_sub(2 + 4 + 4 + 2)).max(3);
    let [header, body, status, footer] =
        Layout::vertical([Constraint::Length(2), Constraint::Fill(1), Constraint::Length(1), Constraint::Length(1)])
            .areas(area);
    render_header(d, theme, header, buf);
    match d.view {
        View::Main => {
            // A cluster destination's masters, as many as fit above the
            // chart and three event lines.
            let nodes = d.snapshot.destination_nodes.len() as u16;
            let masters_h =
                if nodes == 0 { 0 } else { (nodes + 1).min(body.height.saturating_sub(table_h + 4 + 3)).max(2) };
            let [table, masters, chart, events] = Layout::vertical([
                Constraint::Length(table_h),
                Constraint::Length(masters_h),
                Constraint::Length(4),
                Constraint::Min(3),
            ])
            .areas(body);
            render_table(d, theme, table, buf);
            if masters_h > 0 {
                render_masters(d, theme, masters, buf);
            }
            render_chart(d, theme, chart, buf);
            render_events(d, theme, events, buf);
        }
        View::Detail => render_detail(d, theme, body, buf),
    }
    render_status(d, theme, status, buf);
    hints(&footer_keys(d), theme, footer, buf);
    match &d.overlay {
        None => {}
        Some(Overlay::Help) => render_help(theme, area, buf),
        Some(Overlay::ConfirmQuit) => confirm_quit(d, theme, area, buf),
        Some(Overlay::VerifyChoose) => verify_choose(theme, area, buf),
        Some(Overlay::VerifyPanel) => verify_panel(d, theme, area, buf),
        Some(Overlay::ReportPath(field)) => {
            let inner = popup(" Save a status report ", 76, 5, theme, area, buf);
            let [row, help] = Layout::vertical([Constraint::Length(2), Constraint::Length(1)]).areas(inner);
            field.render("File", 6, true, theme, row, buf);
            hints(&[("Enter", "save"), ("Esc", "cancel")], theme, help, buf);
        }
        Some(Overlay::EventDetail) => {
            if let Some(e) = d.selected_event() {
                let inner = popup(" Event (Esc closes) ", area.width.saturating_sub(6).min(100), 10, theme, area, buf);
                Paragraph::new(vec![
                    Line::raw(format!("{} UTC · {}", time_of_day(e.ts_ms), e.shard)),
                    Line::raw(""),
                    Line::styled(e.message.clone(), theme.tone(e.tone)),
                ])
                .wrap(Wrap { trim: false })
                .render(inner, buf);
            }
        }
    }
    if d.phase == Phase::Stopping {
        let inner = popup(" Quit ", 60, 4, theme, area, buf);
        Paragraph::new(vec![
            Line::raw("Stopping: applying what is in flight and"),
            Line::raw("writing each shard's checkpoint…"),
        ])
        .render(inner, buf);
    }
}

/// The task's state in a word, and how it should look.
fn overall(d: &Dashboard) -> (String, Tone) {
    let shards = &d.snapshot.shards;
    if d.phase == Phase::Stopping {
        return ("STOPPING".into(), Tone::Warn);
    }
    if shards.is_empty() {
        return ("starting".into(), Tone::Normal);
    }
    let n = |st: ShardState| shards.iter().filter(|s| s.state == st).count();
    let failed = n(ShardState::Failed);
    if failed > 0 {
        return (format!("FAILED ({failed} of {})", shards.len()), Tone::Bad);
    }
    let paused = shards.iter().filter(|s| s.paused_on_error).count();
    if paused > 0 {
        return (format!("PAUSED on error ({paused})"), Tone::Bad);
    }
    if n(ShardState::Reconnecting) > 0 {
        return (format!("reconnecting ({})", n(ShardState::Reconnecting)), Tone::Warn);
    }
    let copying = n(ShardState::Rdb) + n(ShardState::Connecting) + n(ShardState::Handshake);
    if copying > 0 {
        return (format!("full copy ({copying} of {})", shards.len()), Tone::Normal);
    }
    if n(ShardState::Stopped) > 0 {
        return (format!("paused ({})", n(ShardState::Stopped)), Tone::Warn);
    }
    let synced = shards.iter().filter(|s| s.is_synced()).count();
    if synced == shards.len() {
        ("incremental, caught up".into(), Tone::Good)
    } else {
        (format!("incremental ({synced} of {} caught up)", shards.len()), Tone::Good)
    }
}

fn render_header(d: &Dashboard, theme: Theme, area: Rect, buf: &mut Buffer) {
    let [top, bottom] = Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let (state, tone) = overall(d);
    Line::from(vec![
        Span::styled("shardsync ", theme.title()),
        Span::raw(format!("{} · {} · ", d.task.name, clock(d.elapsed_ms() / 1000))),
        Span::styled(state, theme.tone(tone)),
    ])
    .render(top, buf);
    let dest = match d.snapshot.destination {
        Some(s) => {
            let max = if s.maxmemory == 0 { "no limit".to_owned() } else { short_bytes(s.maxmemory) };
            let stale = d.now_ms - s.ts_ms > 5_000;
            format!(
                "dest {} · {} keys · mem {} of {max} · {} ops/s{}",
                d.task.destination,
                count(s.keys),
                short_bytes(s.used_memory),
                short_count(s.ops_per_sec),
                if stale {
                    format!(" (as of {} ago)", duration_ms((d.now_ms - s.ts_ms) as u64))
                } else {
                    String::new()
                }
            )
        }
        None => format!("dest {} · figures not read yet", d.task.destination),
    };
    Line::styled(fit(&dest, area.width as usize), theme.tone(Tone::Normal)).render(bottom, buf);
}

/// The state cell: the contract's word, or what the operator did to it.
fn state_word(s: &ShardSnapshot) -> (String, Tone) {
    if s.paused_on_error {
        return ("PAUSED:error".into(), Tone::Bad);
    }
    if s.waiting.is_some() && s.state == ShardState::Connecting {
        return ("waiting".into(), Tone::Dim);
    }
    match s.state {
        ShardState::Stopped => ("paused".into(), Tone::Warn),
        ShardState::Failed => ("FAILED".into(), Tone::Bad),
        ShardState::Reconnecting => ("reconnecting".into(), Tone::Warn),
        ShardState::Incremental => ("incremental".into(), Tone::Good),
        st => (st.as_str().into(), Tone::Normal),
    }
}

/// A bar of `width` cells: applied `█`, received but not yet applied `▒`,
/// the rest `░` — three glyphs, so it reads without colour.
pub fn copy_bar(received: u64, applied: u64, total: u64, width: usize) -> String {
    if total == 0 || width == 0 {
        return "░".repeat(width);
    }
    let cells = |n: u64| ((n.min(total) as u128 * width as u128) / total as u128) as usize;
    let a = cells(applied);
    let r = cells(received.max(applied)).max(a);
    format!("{}{}{}", "█".repeat(a), "▒".repeat(r - a), "░".repeat(width - r))
}

/// The copy cell: a bar and a percentage while copying (and, narrow, the
/// ETA; wide, the bytes: the ETA has its own column there), else a word.
fn copy_cell(d: &Dashboard, s: &ShardSnapshot, bar: usize, wide: bool) -> String {
    match (s.state, s.rdb_total) {
        (ShardState::Rdb, Some(total)) => {
            let pct = (s.rdb_applied.min(total) * 100).checked_div(total).unwrap_or(0);
            let mut t = format!("{} {pct:>3}%", copy_bar(s.rdb_bytes, s.rdb_applied, total, bar));
            if wide {
                t.push_str(&format!(" {}/{}", short_bytes(s.rdb_applied), short_bytes(total)));
            } else if let Some(eta) = d.eta_ms(s) {
                t.push_str(&format!(" {}", duration_ms(eta)));
            }
            t
        }
        // A diskless transfer does not say its size until it ends.
        (ShardState::Rdb, None) => format!("{} received", short_bytes(s.rdb_bytes)),
        _ if s.full_syncs > 0 || s.applied_offset.is_some() => "done".into(),
        _ => "-".into(),
    }
}

/// The source's live key count next to the keys the full copy applied:
/// `3.46M/3.46M`; only the latter before the first poll answers.
fn keys_cell(source: Option<u64>, copied: u64) -> String {
    match source {
        Some(live) => format!("{}/{}", short_count(live), short_count(copied)),
        None => format!("-/{}", short_count(copied)),
    }
}

/// The sum of a figure every shard knows; `None` while one does not.
fn sum_known(shards: &[ShardSnapshot], f: fn(&ShardSnapshot) -> Option<u64>) -> Option<u64> {
    shards.iter().map(f).sum()
}

fn tone_of(v: Option<u64>, warn: u64, bad: u64) -> Tone {
    match v {
        None => Tone::Dim,
        Some(v) if v > bad => Tone::Bad,
        Some(v) if v > warn => Tone::Warn,
        Some(_) => Tone::Good,
    }
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

fn render_table(d: &Dashboard, theme: Theme, area: Rect, buf: &mut Buffer) {
    let wide = area.width >= WIDE;
    let bar = if wide { 12 } else { 7 };
    let cell = |text: String, tone: Tone| Cell::from(Line::styled(text, theme.tone(tone)));
    let mut rows: Vec<Row> = Vec::new();
    for s in &d.snapshot.shards {
        let (state, tone) = state_word(s);
        let mut cells = vec![
            Cell::from(fit(&s.shard, if wide { 14 } else { 9 })),
            cell(state, tone),
            Cell::from(copy_cell(d, s, bar, wide)),
        ];
        if wide {
            cells.push(Cell::from(match s.state {
                ShardState::Rdb => opt(d.eta_ms(s), duration_ms),
                _ => "-".into(),
            }));
            cells.push(Cell::from(opt(s.source_keys, count)));
            cells.push(Cell::from(count(s.keys_applied)));
            cells.push(Cell::from(opt(s.source_offset, |o| o.to_string())));
            cells.push(Cell::from(opt(s.applied_offset, |o| o.to_string())));
            cells.push(cell(opt(s.lag_bytes, human_bytes), tone_of(s.lag_bytes, LAG_BYTES_WARN, LAG_BYTES_BAD)));
        } else {
            cells.push(Cell::from(keys_cell(s.source_keys, s.keys_applied)));
            cells.push(cell(opt(s.lag_bytes, short_bytes), tone_of(s.lag_bytes, LAG_BYTES_WARN, LAG_BYTES_BAD)));
        }
        cells.push(cell(opt(s.lag_ms, duration_ms), tone_of(s.lag_ms, LAG_MS_WARN, LAG_MS_BAD)));
        cells.push(Cell::from(short_count(s.ops_per_sec)));
        cells.push(cell(s.errors.to_string(), if s.errors > 0 { Tone::Bad } else { Tone::Normal }));
        rows.push(Row::new(cells));
    }
    let shards = &d.snapshot.shards;
    let sum = |f: fn(&ShardSnapshot) -> u64| shards.iter().map(f).sum::<u64>();
    let (received, applied, total) = (sum(|s| s.rdb_bytes), sum(|s| s.rdb_applied), sum(|s| s.rdb_total.unwrap_or(0)));
    let copying = shards.iter().any(|s| s.state == ShardState::Rdb);
    let total_copy = if copying && total > 0 {
        let pct = (applied.min(total) * 100).checked_div(total).unwrap_or(0);
        format!("{} {pct:>3}%", copy_bar(received, applied, total, bar))
    } else {
        String::new()
    };
    let lag_bytes = shards.iter().filter_map(|s| s.lag_bytes).max();
    let lag_ms = shards.iter().filter_map(|s| s.lag_ms).max();
    let synced = shards.iter().filter(|s| s.is_synced()).count();
    let mut total_cells =
        vec![Cell::from("total"), Cell::from(format!("{synced}/{} synced", shards.len())), Cell::from(total_copy)];
    if wide {
        total_cells.push(Cell::from(""));
        total_cells.push(Cell::from(opt(sum_known(shards, |s| s.source_keys), count)));
        total_cells.push(Cell::from(count(sum(|s| s.keys_applied))));
        total_cells.push(Cell::from(""));
        total_cells.push(Cell::from(""));
        total_cells.push(Cell::from(opt(lag_bytes, |b| format!("max {}", human_bytes(b)))));
    } else {
        total_cells.push(Cell::from(keys_cell(sum_known(shards, |s| s.source_keys), sum(|s| s.keys_applied))));
        total_cells.push(Cell::from(opt(lag_bytes, short_bytes)));
    }
    total_cells.push(Cell::from(opt(lag_ms, duration_ms)));
    total_cells.push(Cell::from(short_count(sum(|s| s.ops_per_sec))));
    total_cells.push(Cell::from(sum(|s| s.errors).to_string()));
    let header_names: &[&str] = if wide {
        &[
            "Shard",
            "State",
            "Full copy (applied/received)",
            "ETA",
            "Src keys",
            "Copied",
            "Source off",
            "Applied off",
            "Lag",
            "Lag ms",
            "Ops/s",
            "Err",
        ]
    } else {
        &["Shard", "State", "Full copy", "Src/copied", "Lag", "Lag ms", "Ops/s", "Err"]
    };
    let widths: Vec<Constraint> = if wide {
        [14, 13, 28, 7, 12, 12, 13, 13, 10, 8, 8, 5].map(Constraint::Length).to_vec()
    } else {
        [9, 12, 18, 11, 5, 6, 5, 3].map(Constraint::Length).to_vec()
    };
    let [table_area, total_area] = Layout::vertical([Constraint::Fill(1), Constraint::Length(1)]).areas(area);
    let focused = d.focus == Focus::Shards && d.view == View::Main;
    let table = Table::new(rows, widths.clone())
        .header(Row::new(header_names.iter().copied()).style(theme.title()))
        .row_highlight_style(if focused { theme.selected() } else { Style::new() })
        .highlight_symbol("› ")
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state = TableState::default().with_selected((!shards.is_empty()).then_some(d.selected));
    StatefulWidget::render(table, table_area, buf, &mut state);
    let total = Table::new([Row::new(total_cells).style(Style::new().add_modifier(Modifier::BOLD))], widths)
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always)
        .highlight_symbol("  ");
    // Always draw the highlight column so the total lines up with the rows.
    StatefulWidget::render(total, total_area, buf, &mut TableState::default());
}

/// One line per master of a cluster destination.
fn render_masters(d: &Dashboard, theme: Theme, area: Rect, buf: &mut Buffer) {
    let nodes = &d.snapshot.destination_nodes;
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(theme.border())
        .title(format!(" destination: a Redis Cluster of {} masters ", nodes.len()))
        .title_style(theme.tone(Tone::Normal));
    let inner = block.inner(area);
    block.render(area, buf);
    let width = inner.width as usize;
    let shown = inner.height as usize;
    let pad = nodes.iter().map(|n| n.addr.len()).max().unwrap_or(0);
    for (i, n) in nodes.iter().take(shown).enumerate() {
        let more = nodes.len() - shown;
        let text = if i + 1 == shown && more > 0 {
            format!("… and {} more masters (see the --json records)", more + 1)
        } else {
            let max = if n.stats.maxmemory == 0 { "no limit".to_owned() } else { short_bytes(n.stats.maxmemory) };
            // Before the figures that matter less, so that a narrow screen
            // cuts those.
            let errors = if n.errors == 0 { String::new() } else { format!("  {} errors", short_count(n.errors)) };
            format!(
                "{:<pad$} {:>5} slots {:>10} keys{errors}  mem {}/{max}  {} ops/s",
                n.addr,
                n.slots,
                count(n.stats.keys),
                short_bytes(n.stats.used_memory),
                short_count(n.stats.ops_per_sec)
            )
        };
        let tone = if n.errors > 0 { Tone::Warn } else { Tone::Normal };
        let row = Rect { y: inner.y + i as u16, height: 1, ..inner };
        Line::styled(fit(&text, width), theme.tone(tone)).render(row, buf);
    }
}

fn render_chart(d: &Dashboard, theme: Theme, area: Rect, buf: &mut Buffer) {
    let width = area.width as usize;
    let data: Vec<u64> = d.throughput.iter().rev().take(width).rev().copied().collect();
    let max = data.iter().copied().max().unwrap_or(0);
    let now = data.last().copied().unwrap_or(0);
    let secs = data.len();
    let span = if secs >= 120 { format!("{} min", secs / 60) } else { format!("{secs} s") };
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(theme.border())
        .title(format!(" applied ops/s · last {span} · now {} · max {} ", short_count(now), short_count(max)))
        .title_style(theme.tone(Tone::Normal));
    let style = if theme.color { Style::new().fg(ratatui::style::Color::Cyan) } else { Style::new() };
    Sparkline::default().block(block).data(&data).max(max.max(1)).style(style).render(area, buf);
}

fn render_events(d: &Dashboard, theme: Theme, area: Rect, buf: &mut Buffer) {
    let focused = d.focus == Focus::Events;
    let title = if focused {
        " Events (↑↓ scroll, Enter: whole message, Tab: shards) "
    } else {
        " Events (Tab to scroll) "
    };
    let block = Block::new().borders(Borders::TOP).border_style(theme.border()).title(title).title_style(if focused {
        theme.title()
    } else {
        theme.tone(Tone::Normal)
    });
    let inner = block.inner(area);
    block.render(area, buf);
    let rows = inner.height as usize;
    if d.events.is_empty() {
        Line::styled("No events yet.", theme.tone(Tone::Dim)).render(inner, buf);
        return;
    }
    // The window ends at the selected event (the newest unless scrolled).
    let end = d.events.len() - d.event_cursor.min(d.events.len() - 1);
    let start = end.saturating_sub(rows);
    let lines: Vec<Line> = d
        .events
        .range(start..end)
        .enumerate()
        .map(|(i, e)| {
            let text = format!("{} {:<10} {}", time_of_day(e.ts_ms), fit(&e.shard, 10), e.message);
            let text = fit(&text, inner.width as usize);
            let selected = focused && start + i + 1 == end;
            let style = if selected { theme.selected() } else { theme.tone(e.tone) };
            Line::styled(text, style)
        })
        .collect();
    Paragraph::new(lines).render(inner, buf);
}

fn render_status(d: &Dashboard, theme: Theme, area: Rect, buf: &mut Buffer) {
    let line = if let Some(n) = &d.notice {
        Line::styled(fit(&n.text, area.width as usize), theme.tone(n.tone))
    } else {
        match &d.verify {
            VerifyState::Idle => Line::raw(""),
            VerifyState::Running { mode, progress } => Line::raw(fit(
                &format!(
                    "verify ({}) running: {} {} of {}, {} difference(s) · v shows it",
                    mode.as_str(),
                    progress.phase,
                    count(progress.compared),
                    count(progress.total),
                    count(progress.differences)
                ),
                area.width as usize,
            )),
            VerifyState::Done(r) if r.is_equal() => {
                Line::styled(format!("last verify ({}): equal · v shows it", r.mode.as_str()), theme.tone(Tone::Good))
            }
            VerifyState::Done(r) => Line::styled(
                fit(&format!("last verify ({}): {} · v shows them", r.mode.as_str(), verdict(r)), area.width as usize),
                theme.tone(Tone::Bad),
            ),
            VerifyState::Failed { mode, error } => Line::styled(
                fit(&format!("verify ({}) failed: {error}", mode.as_str()), area.width as usize),
                theme.tone(Tone::Bad),
            ),
        }
    };
    line.render(area, buf);
}

fn footer_keys(d: &Dashboard) -> Vec<(&'static str, &'static str)> {
    match (&d.overlay, d.view) {
        (Some(_), _) => vec![("Esc", "close")],
        (None, View::Detail) => {
            vec![("Esc", "back"), ("↑↓", "shard"), ("p", "pause/resume"), ("?", "help"), ("q", "quit")]
        }
        // What does not fit 80 columns (Tab, R) is in the events pane's
        // title and the help.
        (None, View::Main) => vec![
            ("↑↓", "shard"),
            ("Enter", "detail"),
            ("p", "pause"),
            ("v", "verify"),
            ("s", "report"),
            ("?", "help"),
            ("q", "quit"),
            ("Tab", "events"),
        ],
    }
}

fn render_detail(d: &Dashboard, theme: Theme, area: Rect, buf: &mut Buffer) {
    let Some(s) = d.selected_shard() else {
        Line::raw("No shard.").render(area, buf);
        return;
    };
    let addr = d.task.sources.iter().find(|(n, _)| *n == s.shard).map(|(_, a)| a.as_str()).unwrap_or("?");
    let (state, tone) = state_word(s);
    let block = Block::bordered()
        .title(format!(" {} · {addr} ", s.shard))
        .title_style(theme.title())
        .border_style(theme.border());
    let inner = block.inner(area);
    block.render(area, buf);
    // The bar and its percentage fit one row beside the label (16 columns);
    // the byte counts take the next.
    let bar_width = (inner.width as usize).saturating_sub(16 + 6).clamp(5, 40);
    let (copy, bytes) = match s.rdb_total {
        Some(total) => {
            let pct = (s.rdb_applied.min(total) * 100).checked_div(total).unwrap_or(0);
            (
                format!("{} {pct}%", copy_bar(s.rdb_bytes, s.rdb_applied, total, bar_width)),
                Some(format!(
                    "applied {} · received {} · of {}",
                    human_bytes(s.rdb_applied),
                    human_bytes(s.rdb_bytes),
                    human_bytes(total)
                )),
            )
        }
        None if s.rdb_bytes > 0 => (format!("received {} (size told at the end)", human_bytes(s.rdb_bytes)), None),
        None => ("-".into(), None),
    };
    let kv =
        |k: &str, v: String| Line::from(vec![Span::styled(format!("{k:<16}"), theme.tone(Tone::Dim)), Span::raw(v)]);
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!("{:<16}", "state"), theme.tone(Tone::Dim)),
            Span::styled(state, theme.tone(tone)),
        ]),
        kv("full copy", copy),
        kv("", bytes.unwrap_or_default()),
        kv("ETA", if s.state == ShardState::Rdb { opt(d.eta_ms(s), duration_ms) } else { "-".into() }),
        kv("keys on source", opt(s.source_keys, count)),
        kv("keys applied", count(s.keys_applied)),
        kv("keys skipped", s.keys_skipped.describe()),
        kv("source offset", opt(s.source_offset, |o| o.to_string())),
        kv("received offset", opt(s.received_offset, |o| o.to_string())),
        kv("applied offset", opt(s.applied_offset, |o| o.to_string())),
        Line::from(vec![
            Span::styled(format!("{:<16}", "lag"), theme.tone(Tone::Dim)),
            Span::styled(
                opt(s.lag_bytes, human_bytes),
                theme.tone(tone_of(s.lag_bytes, LAG_BYTES_WARN, LAG_BYTES_BAD)),
            ),
            Span::raw(" · "),
            Span::styled(
                opt(s.lag_ms, |ms| format!("{ms} ms")),
                theme.tone(tone_of(s.lag_ms, LAG_MS_WARN, LAG_MS_BAD)),
            ),
        ]),
        kv("ops/s", count(s.ops_per_sec)),
        kv("errors", count(s.errors)),
        kv("full copies", count(s.full_syncs)),
        kv("reconnects", count(s.reconnects)),
    ];
    if let Some(w) = &s.waiting {
        lines.push(kv("waiting", w.clone()));
    }
    if let Some(e) = &s.last_error {
        lines.push(Line::from(vec![
            Span::styled(format!("{:<16}", "last error"), theme.tone(Tone::Dim)),
            Span::styled(e.clone(), theme.tone(Tone::Bad)),
        ]));
    }
    if s.paused_on_error {
        lines.push(Line::styled(
            "Paused on a destination error: fix the destination, then p resumes (the failed batch is applied again).",
            theme.tone(Tone::Bad),
        ));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("Recent events", theme.title()));
    let own: Vec<_> = d.events.iter().filter(|e| e.shard == s.shard).collect();
    for e in own.iter().rev().take(inner.height as usize).rev() {
        lines.push(Line::styled(format!("{} {}", time_of_day(e.ts_ms), e.message), theme.tone(e.tone)));
    }
    Paragraph::new(lines).wrap(Wrap { trim: false }).render(inner, buf);
}

fn confirm_quit(d: &Dashboard, theme: Theme, area: Rect, buf: &mut Buffer) {
    let inner = popup(" Quit ", 62, 7, theme, area, buf);
    Paragraph::new(vec![
        Line::raw(format!("Stop task {} and quit?", d.task.name)),
        Line::raw("Every shard applies what it received and writes its"),
        Line::raw("checkpoint; `shardsync run` continues from there."),
        Line::raw(""),
        confirm_keys("stop and quit", "keep running", theme),
    ])
    .render(inner, buf);
}

fn verify_choose(theme: Theme, area: Rect, buf: &mut Buffer) {
    let inner = popup(" Verify ", 70, 9, theme, area, buf);
    let k = |key: &'static str, text: &'static str| Line::from(vec![Span::styled(key, theme.key()), Span::raw(text)]);
    Paragraph::new(vec![
        Line::raw("Compare the sources with the destination, while the sync runs:"),
        Line::raw(""),
        k("c", "  counts: keys per DB on each side (seconds)"),
        k("k", "  keys: every source key exists with the same type"),
        k("f", "  full: values and TTLs too (reads every key on both sides)"),
        Line::raw(""),
        k("Esc", " cancel"),
    ])
    .render(inner, buf);
}

/// Differences listed in the verify panel (the report has more).
const DIFFERENCES_SHOWN: usize = 10;

/// `db0 "user:1042" missing on the destination [server1]`, as `shardsync verify` writes it.
pub fn difference_line(x: &Difference, note: &str) -> String {
    format!("db{} {} {}: {}{note} [{}]", x.db, x.key_shown(), x.kind, x.detail, x.shard)
}

fn verify_panel(d: &Dashboard, theme: Theme, area: Rect, buf: &mut Buffer) {
    let inner = popup(
        " Verify ",
        area.width.saturating_sub(4).min(110),
        area.height.saturating_sub(4).min(20),
        theme,
        area,
        buf,
    );
    let mut lines: Vec<Line> = Vec::new();
    let mut keys: Vec<(&str, &str)> = vec![("Esc", "close")];
    match &d.verify {
        VerifyState::Idle => lines.push(Line::raw("No verify has run.")),
        VerifyState::Running { mode, progress } => {
            let pct = (progress.compared * 100).checked_div(progress.total).unwrap_or(0);
            lines.push(Line::raw(format!("verify ({}) running: {}", mode.as_str(), progress.phase)));
            lines.push(Line::raw(format!(
                "{} {pct}%  {} of {} compared",
                copy_bar(progress.compared, progress.compared, progress.total, 30),
                count(progress.compared),
                count(progress.total)
            )));
            lines.push(Line::raw(format!("differences so far: {}", count(progress.differences))));
            keys.push(("x", "cancel"));
        }
        VerifyState::Failed { mode, error } => {
            lines.push(Line::styled(format!("verify ({}) failed: {error}", mode.as_str()), theme.tone(Tone::Bad)));
            keys.push(("n", "new verify"));
        }
        VerifyState::Done(r) => {
            lines.push(if r.is_equal() {
                Line::styled(format!("verify ({}): EQUAL", r.mode.as_str()), theme.tone(Tone::Good))
            } else {
                Line::styled(format!("verify ({}): {}", r.mode.as_str(), verdict(r)), theme.tone(Tone::Bad))
            });
            let compared = match r.mode {
                VerifyMode::Counts => "keys counted".to_owned(),
                _ => format!("{} keys compared", count(r.compared)),
            };
            lines.push(Line::raw(format!("{compared} in {}", duration_ms(r.elapsed.as_millis() as u64))));
            if r.not_rechecked > 0 {
                lines.push(Line::styled(
                    format!("{} suspect key(s) not re-checked (too many to re-check)", count(r.not_rechecked)),
                    theme.tone(Tone::Warn),
                ));
            }
            lines.push(Line::raw(""));
            lines.push(Line::styled("DB     sources   destination", theme.title()));
            for c in &r.counts {
                let tone = if c.is_equal() { Tone::Good } else { Tone::Bad };
                lines.push(Line::styled(
                    format!("db{:<4} {:>9} {:>13}", c.db, count(c.source_total), count(c.destination)),
                    theme.tone(tone),
                ));
            }
            let listed =
                r.differences.iter().map(|x| (x, "")).chain(r.unsettled.iter().map(|x| (x, " (still changing)")));
            let mut any = false;
            for (x, note) in listed.take(DIFFERENCES_SHOWN) {
                if !any {
                    lines.push(Line::raw(""));
                    any = true;
                }
                lines.push(Line::styled(difference_line(x, note), theme.tone(Tone::Bad)));
            }
            keys.push(("n", "new verify"));
        }
    }
    let [body, foot] = Layout::vertical([Constraint::Fill(1), Constraint::Length(1)]).areas(inner);
    Paragraph::new(lines).wrap(Wrap { trim: false }).render(body, buf);
    hints(&keys, theme, foot, buf);
}
