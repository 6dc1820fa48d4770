//! Step 3, what to do with keys the destination already has: the seed's
//! "Pre-check and Intercept" (the destination must be empty) or its
//! "Ignore" (the source's key wins), and shardsync's third choice (the
//! destination's key is kept), each explained against the destination's
//! key counts as the test found them.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget, Wrap};

use crate::config::ConflictMode;
use crate::ui::facts::Probe;
use crate::ui::format::{count, wrap};
use crate::ui::theme::{Theme, Tone};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConflictStep {
    pub mode: ConflictMode,
}

/// The choices in the order shown.
const CHOICES: [ConflictMode; 3] = [ConflictMode::Intercept, ConflictMode::Overwrite, ConflictMode::Skip];

impl ConflictStep {
    pub fn new(mode: ConflictMode) -> ConflictStep {
        ConflictStep { mode }
    }

    /// True when the key asks for the next step (Enter).
    pub fn on_key(&mut self, key: KeyEvent) -> bool {
        let i = CHOICES.iter().position(|m| *m == self.mode).unwrap_or(0);
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.mode = CHOICES[i.saturating_sub(1)],
            KeyCode::Down | KeyCode::Char('j') => self.mode = CHOICES[(i + 1).min(CHOICES.len() - 1)],
            KeyCode::Char('1') => self.mode = ConflictMode::Intercept,
            KeyCode::Char('2') => self.mode = ConflictMode::Overwrite,
            KeyCode::Char('3') => self.mode = ConflictMode::Skip,
            KeyCode::Enter => return true,
            _ => {}
        }
        false
    }
}

fn choice_text(mode: ConflictMode) -> (&'static str, &'static str) {
    match mode {
        ConflictMode::Intercept => (
            "Pre-check and intercept",
            "The destination must be empty: the precheck fails, and the task does not start, if a \
             target database holds keys (a task resuming from its own checkpoint passes). \
             The safe choice for a first copy.",
        ),
        ConflictMode::Overwrite => (
            "Overwrite (the seed's \"Ignore\")",
            "Start whatever the destination holds; a key the sources also have is replaced by the \
             source's. Use it to add a shard to a destination that already holds others.",
        ),
        ConflictMode::Skip => (
            "Keep the destination's key",
            "Start whatever the destination holds; a key it already has is kept and counted, and \
             the source's is not copied. Check such keys with verify.",
        ),
    }
}

pub(super) fn render(step: &ConflictStep, dest: &Probe, theme: Theme, area: Rect, buf: &mut Buffer) {
    let mut lines = vec![match dest {
        Probe::Ok(i) if i.keyspace.is_empty() => {
            Line::styled("The destination is empty now: every choice copies the same.", theme.tone(Tone::Good))
        }
        Probe::Ok(i) => Line::styled(
            format!(
                "The destination holds {} keys now: {}.",
                count(i.total_keys()),
                i.keyspace.iter().map(|(db, k)| format!("db{db} {}", count(k.keys))).collect::<Vec<_>>().join(", ")
            ),
            theme.tone(Tone::Warn),
        ),
        Probe::Testing | Probe::Untested => Line::raw("Counting the destination's keys…"),
        Probe::Failed(e) => Line::styled(format!("The destination's keys are unknown: {e}"), theme.tone(Tone::Bad)),
    }];
    let dest_keys = dest.info().map(|i| i.total_keys());
    for (n, mode) in CHOICES.iter().enumerate() {
        let chosen = *mode == step.mode;
        let (title, text) = choice_text(*mode);
        lines.push(Line::raw(""));
        let mark = if chosen { "(•)" } else { "( )" };
        let style = if chosen { theme.selected() } else { theme.tone(Tone::Normal) };
        let mut head = vec![Span::styled(format!("{mark} {} {title}", n + 1), style)];
        if *mode == ConflictMode::Intercept {
            if let Some(k) = dest_keys.filter(|k| *k > 0) {
                head.push(Span::styled(
                    format!("  — fails now: {} keys there (unless this task resumes)", count(k)),
                    theme.tone(Tone::Warn),
                ));
            }
        }
        lines.push(Line::from(head));
        for l in wrap(text, (area.width as usize).saturating_sub(4)) {
            lines.push(Line::styled(format!("    {l}"), theme.tone(if chosen { Tone::Normal } else { Tone::Dim })));
        }
    }
    Paragraph::new(lines).wrap(Wrap { trim: false }).render(area, buf);
}
