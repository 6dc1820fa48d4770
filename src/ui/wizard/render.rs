//! Drawing the wizard: a pure function of its state.
//!
//! ```text
//! ┌ step bar: 1 Sources › [2 Destination] › 3 … ┐
//! │ the step's pane (bordered, titled)          │
//! │ notice line (validation error, or empty)    │
//! │ key hints                                   │
//! ```

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget};

use super::{conflict, databases, destination, precheck, review, sources, ReviewField, Step, Wizard};
use crate::ui::format::fit;
use crate::ui::theme::{Theme, Tone};
use crate::ui::widgets::{confirm_keys, hints, popup};

impl Widget for &Wizard {
    fn render(self, area: Rect, buf: &mut Buffer) {
        render_wizard(self, area, buf);
    }
}

pub fn render_wizard(w: &Wizard, area: Rect, buf: &mut Buffer) {
    let theme = w.theme;
    let [bar, pane, notice, footer] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1), Constraint::Length(1), Constraint::Length(1)])
            .areas(area);
    step_bar(w.step, theme, bar, buf);
    let block = Block::bordered()
        .title(format!(" {}. {} ", w.step.number(), w.step.heading()))
        .title_style(theme.title())
        .border_style(theme.border());
    let inner = block.inner(pane);
    block.render(pane, buf);
    match w.step {
        Step::Sources => sources::render(&w.sources, theme, inner, buf),
        Step::Destination => destination::render(&w.destination, theme, inner, buf),
        Step::Conflict => conflict::render(&w.conflict, &w.destination.probe, theme, inner, buf),
        Step::Databases => databases::render(&w.databases, theme, inner, buf),
        Step::Precheck => precheck::render(&w.precheck, theme, inner, buf),
        Step::Review => review::render(&w.review, w.task_config(), theme, inner, buf),
    }
    if let Some(n) = &w.notice {
        Line::styled(fit(&n.text, area.width as usize), theme.tone(n.tone)).render(notice, buf);
    }
    hints(&footer_keys(w), theme, footer, buf);
    if w.confirm_quit {
        let inner = popup(" Quit ", 50, 5, theme, area, buf);
        Paragraph::new(vec![
            Line::raw("Quit the wizard? Nothing has started;"),
            Line::raw("an unsaved task is lost."),
            confirm_keys("quit", "stay", theme),
        ])
        .render(inner, buf);
    }
}

/// `1 Sources › 2 Destination › …` with the current step reversed and in
/// brackets (readable without colour); names shorten to fit.
fn step_bar(current: Step, theme: Theme, area: Rect, buf: &mut Buffer) {
    let full: usize = Step::ALL.iter().map(|s| s.name().len() + 5).sum();
    let short = full + 10 > area.width as usize;
    let mut spans = if short { vec![] } else { vec![Span::styled("shardsync ", theme.title())] };
    for (i, s) in Step::ALL.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" › ", theme.tone(Tone::Dim)));
        }
        let name = if short && *s != current { s.short_name() } else { s.name() };
        if *s == current {
            spans.push(Span::styled(format!("[{} {name}]", s.number()), theme.selected()));
        } else {
            let tone = if *s < current { Tone::Normal } else { Tone::Dim };
            spans.push(Span::styled(format!("{} {name}", s.number()), theme.tone(tone)));
        }
    }
    Line::from(spans).render(area, buf);
}

/// The keys that do something now, most useful first.
fn footer_keys(w: &Wizard) -> Vec<(&'static str, &'static str)> {
    use super::{ImportPhase, SourcesDialog};
    let mut keys: Vec<(&str, &str)> = match w.step {
        Step::Sources => match &w.sources.dialog {
            Some(SourcesDialog::Edit(_)) => vec![("Tab", "field"), ("Enter", "next/save"), ("Esc", "cancel")],
            Some(SourcesDialog::Import(d)) => match d.phase {
                ImportPhase::Pools { .. } => vec![("↑↓", "pool"), ("Enter", "take"), ("Esc", "cancel")],
                _ => vec![("Enter", "read"), ("Esc", "cancel")],
            },
            None => vec![("a", "add"), ("e", "edit"), ("d", "remove"), ("t/T", "test/all"), ("i", "import")],
        },
        Step::Destination => vec![("Tab", "field"), ("^T", "test")],
        Step::Conflict => vec![("↑↓", "choose")],
        Step::Databases => vec![("Space", "toggle"), ("a", "all"), ("r", "recount")],
        Step::Precheck if w.precheck.detail => vec![("Esc", "close"), ("a", "acknowledge")],
        Step::Precheck => vec![("Enter", "details"), ("a/A", "ack"), ("r", "rerun")],
        Step::Review => match w.review.focus {
            ReviewField::Start => vec![("Enter", "save & start"), ("Tab", "field")],
            _ => vec![("Tab", "field"), ("PgDn", "scroll")],
        },
    };
    let modal = w.step == Step::Sources && w.sources.dialog.is_some() || w.step == Step::Precheck && w.precheck.detail;
    if !modal {
        if w.step != Step::Review {
            keys.push(("^N", "next"));
        }
        if w.step != Step::Sources {
            keys.push(("^P", "back"));
        }
    }
    keys.push(("^C", "quit"));
    keys
}
