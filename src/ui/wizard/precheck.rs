//! Step 5, the precheck: the checks of `shardsync check` run live on the
//! task as the steps describe it, one line each (pass / warn / FAIL, what,
//! and the measured reason), the whole text of one on Enter. A fail stops
//! the wizard here; every warning must be acknowledged (a) to go on.

use std::collections::BTreeSet;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, StatefulWidget, Table, TableState, Widget, Wrap};

use crate::config::TaskConfig;
use crate::precheck::{CheckResult, CheckStatus};
use crate::ui::msg::Effect;
use crate::ui::theme::{Theme, Tone};
use crate::ui::widgets::popup;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrecheckState {
    #[default]
    NotRun,
    Running,
    Done,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PrecheckStep {
    pub state: PrecheckState,
    pub lines: Vec<CheckResult>,
    /// Warnings the operator acknowledged, by [`key`].
    pub acked: BTreeSet<String>,
    pub cursor: usize,
    /// The selected line's details are open.
    pub detail: bool,
    /// The task the lines are about: another task needs another run.
    pub ran_for: Option<Box<TaskConfig>>,
}

pub(super) enum PrecheckAction {
    None,
    Rerun,
}

/// What identifies a check across runs (for acknowledgements).
fn key(l: &CheckResult) -> String {
    format!("{}\u{1f}{}", l.id, l.subject)
}

impl PrecheckStep {
    /// Starts a run unless the lines are already about `task`.
    pub fn run_if_stale(&mut self, task: TaskConfig) -> Option<Effect> {
        if self.ran_for.as_deref() == Some(&task) && self.state != PrecheckState::NotRun {
            return None;
        }
        self.state = PrecheckState::Running;
        self.lines.clear();
        self.cursor = 0;
        self.detail = false;
        self.ran_for = Some(Box::new(task.clone()));
        Some(Effect::Precheck(Box::new(task)))
    }

    pub fn line(&mut self, line: CheckResult) {
        if self.state == PrecheckState::Running {
            self.lines.push(line);
        }
    }

    pub fn done(&mut self, lines: Vec<CheckResult>) {
        if self.state != PrecheckState::Running {
            return;
        }
        self.lines = lines;
        self.state = PrecheckState::Done;
        // Fails first, then warnings: what needs the operator is on top.
        self.lines.sort_by_key(|l| match l.status {
            CheckStatus::Fail => 0,
            CheckStatus::Warn => 1,
            CheckStatus::Pass => 2,
        });
        self.cursor = 0;
    }

    pub fn failures(&self) -> usize {
        self.lines.iter().filter(|l| l.status == CheckStatus::Fail).count()
    }

    pub fn unacknowledged(&self) -> usize {
        self.lines.iter().filter(|l| l.status == CheckStatus::Warn && !self.acked.contains(&key(l))).count()
    }

    pub fn is_acked(&self, l: &CheckResult) -> bool {
        self.acked.contains(&key(l))
    }

    pub fn may_continue(&self) -> Result<(), String> {
        match self.state {
            PrecheckState::NotRun => return Err("the precheck has not run (r runs it)".into()),
            PrecheckState::Running => return Err("the precheck is still running".into()),
            PrecheckState::Done => {}
        }
        let fails = self.failures();
        if fails > 0 {
            return Err(format!(
                "{fails} check(s) failed: fix what they say (Enter shows it), then r runs the precheck again"
            ));
        }
        let open = self.unacknowledged();
        if open > 0 {
            return Err(format!("{open} warning(s) to acknowledge: select each and press a (A: all)"));
        }
        Ok(())
    }

    pub(super) fn on_key(&mut self, key_event: KeyEvent) -> PrecheckAction {
        if self.detail {
            if matches!(key_event.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q')) {
                self.detail = false;
            } else if key_event.code == KeyCode::Char('a') {
                self.ack_selected();
                self.detail = false;
            }
            return PrecheckAction::None;
        }
        match key_event.code {
            KeyCode::Up | KeyCode::Char('k') => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.cursor = (self.cursor + 1).min(self.lines.len().saturating_sub(1))
            }
            // Enter always opens the line (as the footer says); Ctrl-N is
            // the one way on, so a look at a line never skips the step.
            KeyCode::Enter | KeyCode::Char('d') if !self.lines.is_empty() => self.detail = true,
            KeyCode::Char('a') => self.ack_selected(),
            KeyCode::Char('A') => {
                let warns: Vec<String> = self.lines.iter().filter(|l| l.status == CheckStatus::Warn).map(key).collect();
                self.acked.extend(warns);
            }
            KeyCode::Char('r') if self.state != PrecheckState::Running => return PrecheckAction::Rerun,
            _ => {}
        }
        PrecheckAction::None
    }

    fn ack_selected(&mut self) {
        if let Some(l) = self.lines.get(self.cursor).filter(|l| l.status == CheckStatus::Warn) {
            let k = key(l);
            if !self.acked.remove(&k) {
                self.acked.insert(k);
            }
        }
    }
}

fn status_cell(step: &PrecheckStep, l: &CheckResult, theme: Theme) -> Span<'static> {
    match l.status {
        CheckStatus::Pass => Span::styled("pass", theme.tone(Tone::Good)),
        CheckStatus::Warn if step.is_acked(l) => Span::styled("warn ok", theme.tone(Tone::Warn)),
        CheckStatus::Warn => Span::styled("WARN", theme.tone(Tone::Warn)),
        CheckStatus::Fail => Span::styled("FAIL", theme.tone(Tone::Bad)),
    }
}

pub(super) fn render(step: &PrecheckStep, theme: Theme, area: Rect, buf: &mut Buffer) {
    let [list, summary] = Layout::vertical([Constraint::Min(3), Constraint::Length(2)]).areas(area);
    let rows: Vec<Row> = step
        .lines
        .iter()
        .map(|l| {
            Row::new(vec![
                Cell::from(status_cell(step, l, theme)),
                Cell::from(format!("{}: {}", l.subject, l.title)),
                Cell::from(Line::styled(l.reason.clone(), theme.tone(Tone::Dim))),
            ])
        })
        .collect();
    let wide = area.width >= 120;
    let widths = if wide {
        [Constraint::Length(7), Constraint::Length(60), Constraint::Fill(1)]
    } else {
        [Constraint::Length(7), Constraint::Fill(1), Constraint::Length(0)]
    };
    let table = Table::new(rows, widths).row_highlight_style(theme.selected()).highlight_symbol("› ");
    let mut state = TableState::default().with_selected((!step.lines.is_empty()).then_some(step.cursor));
    StatefulWidget::render(table, list, buf, &mut state);

    let (pass, warn, fail) = step.lines.iter().fold((0, 0, 0), |(p, w, f), l| match l.status {
        CheckStatus::Pass => (p + 1, w, f),
        CheckStatus::Warn => (p, w + 1, f),
        CheckStatus::Fail => (p, w, f + 1),
    });
    let mut text = vec![Line::from(format!("{} checks: {pass} pass, {warn} warn, {fail} fail", step.lines.len()))];
    text.push(match (step.state, step.may_continue()) {
        (PrecheckState::Running, _) => Line::raw("Running the checks…"),
        (PrecheckState::NotRun, _) => Line::raw("Not run yet: r runs it."),
        (PrecheckState::Done, Ok(())) => Line::styled("Passed: Ctrl-N goes on.", theme.tone(Tone::Good)),
        (PrecheckState::Done, Err(e)) => Line::styled(e, theme.tone(if fail > 0 { Tone::Bad } else { Tone::Warn })),
    });
    Paragraph::new(text).wrap(Wrap { trim: true }).render(summary, buf);

    if step.detail {
        if let Some(l) = step.lines.get(step.cursor) {
            render_detail(step, l, theme, area, buf);
        }
    }
}

fn render_detail(step: &PrecheckStep, l: &CheckResult, theme: Theme, area: Rect, buf: &mut Buffer) {
    let inner = popup(
        &format!(" {} ", l.id),
        area.width.saturating_sub(4).min(100),
        area.height.saturating_sub(2).min(14),
        theme,
        area,
        buf,
    );
    let mut lines = vec![
        Line::from(vec![Span::raw("Status   "), status_cell(step, l, theme)]),
        Line::raw(format!("Subject  {}", l.subject)),
        Line::raw(format!("Check    {}", l.title)),
        Line::raw(""),
        Line::raw(l.reason.clone()),
    ];
    if let Some(fix) = &l.fix {
        lines.push(Line::raw(""));
        lines.push(Line::styled(format!("What to do: {fix}"), theme.tone(Tone::Warn)));
    }
    lines.push(Line::raw(""));
    let mut keys = vec![Span::styled("Esc", theme.key()), Span::raw(" close")];
    if l.status == CheckStatus::Warn {
        keys.push(Span::raw("  "));
        keys.push(Span::styled("a", theme.key()));
        keys.push(Span::raw(if step.is_acked(l) {
            " withdraw the acknowledgement"
        } else {
            " acknowledge this warning"
        }));
    }
    lines.push(Line::from(keys));
    Paragraph::new(lines).wrap(Wrap { trim: false }).render(inner, buf);
}
