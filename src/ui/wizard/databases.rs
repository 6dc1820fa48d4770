//! Step 4, the databases: every DB that holds keys on a source, with the
//! sources' key counts and the destination's, toggled with Space; by
//! default every DB with keys (or, from a task file, the DBs it lists).

use std::collections::{BTreeMap, BTreeSet};

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, StatefulWidget, Table, TableState, Widget, Wrap};

use super::SourceRow;
use crate::probe::ServerFacts;
use crate::ui::facts::Probe;
use crate::ui::format::count;
use crate::ui::theme::{Theme, Tone};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbRow {
    pub db: u32,
    /// (source name, keys) for the sources that hold keys in this DB.
    pub per_source: Vec<(String, u64)>,
    /// Keys in the same DB on the destination, when tested.
    pub destination: Option<u64>,
}

impl DbRow {
    pub fn keys(&self) -> u64 {
        self.per_source.iter().map(|(_, k)| k).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DatabasesStep {
    pub rows: Vec<DbRow>,
    pub cursor: usize,
    /// The operator's toggles; a DB not toggled takes the default.
    pub choice: BTreeMap<u32, bool>,
    /// `databases` of a prefilled task file: the default selection instead
    /// of "every DB with keys".
    pub preset: Option<Vec<u32>>,
    /// Sources still being probed, and those whose probe failed (name, why).
    pub pending: usize,
    pub failed: Vec<(String, String)>,
}

pub(super) enum DbAction {
    None,
    Next,
    Refresh,
}

impl DatabasesStep {
    /// Rebuilds the rows from the sources' (and destination's) answers,
    /// keeping the operator's toggles.
    pub fn refresh(&mut self, sources: &[SourceRow], dest: Option<&ServerFacts>) {
        let mut dbs: BTreeMap<u32, Vec<(String, u64)>> = BTreeMap::new();
        self.pending = 0;
        self.failed.clear();
        for s in sources {
            match &s.probe {
                Probe::Ok(info) => {
                    for (db, keys) in &info.keyspace {
                        dbs.entry(*db).or_default().push((s.name.clone(), keys.keys));
                    }
                }
                Probe::Testing | Probe::Untested => self.pending += 1,
                Probe::Failed(e) => self.failed.push((s.name.clone(), e.clone())),
            }
        }
        // DBs without keys that a task file or the operator chose stay listed.
        let kept: BTreeSet<u32> = self
            .preset
            .iter()
            .flatten()
            .copied()
            .chain(self.choice.iter().filter(|(_, on)| **on).map(|(db, _)| *db))
            .collect();
        for db in kept {
            dbs.entry(db).or_default();
        }
        if dbs.is_empty() && self.pending == 0 {
            dbs.insert(0, Vec::new());
        }
        self.rows = dbs
            .into_iter()
            .map(|(db, per_source)| DbRow {
                db,
                per_source,
                destination: dest.map(|d| d.keyspace.get(&db).map_or(0, |k| k.keys)),
            })
            .collect();
        self.cursor = self.cursor.min(self.rows.len().saturating_sub(1));
    }

    pub fn is_selected(&self, row: &DbRow) -> bool {
        self.choice.get(&row.db).copied().unwrap_or_else(|| match &self.preset {
            Some(list) => list.contains(&row.db),
            None => row.keys() > 0,
        })
    }

    pub fn selected(&self) -> Vec<u32> {
        self.rows.iter().filter(|r| self.is_selected(r)).map(|r| r.db).collect()
    }

    pub(super) fn on_key(&mut self, key: KeyEvent) -> DbAction {
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.cursor = (self.cursor + 1).min(self.rows.len().saturating_sub(1))
            }
            KeyCode::Char(' ') => {
                if let Some(row) = self.rows.get(self.cursor) {
                    let on = !self.is_selected(row);
                    self.choice.insert(row.db, on);
                }
            }
            KeyCode::Char('a') => {
                let all = self.rows.iter().all(|r| self.is_selected(r));
                for r in &self.rows {
                    self.choice.insert(r.db, !all);
                }
            }
            KeyCode::Char('r') => return DbAction::Refresh,
            KeyCode::Enter => return DbAction::Next,
            _ => {}
        }
        DbAction::None
    }
}

pub(super) fn render(step: &DatabasesStep, theme: Theme, area: Rect, buf: &mut Buffer) {
    let status_lines = usize::from(step.pending > 0) + step.failed.len().min(3);
    let [table_area, status_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(status_lines as u16 + 1)]).areas(area);
    let header = Row::new(["", "DB", "Source keys", "Destination", "Per source"]).style(theme.title());
    let rows: Vec<Row> = step
        .rows
        .iter()
        .map(|r| {
            let on = step.is_selected(r);
            let per = if r.per_source.is_empty() {
                "no keys".to_owned()
            } else {
                r.per_source.iter().map(|(n, k)| format!("{n} {}", count(*k))).collect::<Vec<_>>().join(" · ")
            };
            let dest = match r.destination {
                None => Cell::from("?"),
                Some(0) => Cell::from("empty"),
                Some(k) => Cell::from(Line::styled(format!("{} keys", count(k)), theme.tone(Tone::Warn))),
            };
            Row::new(vec![
                Cell::from(if on { "[x]" } else { "[ ]" }),
                Cell::from(format!("db{}", r.db)),
                Cell::from(count(r.keys())),
                dest,
                Cell::from(per),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(3),
            Constraint::Length(5),
            Constraint::Length(12),
            Constraint::Length(12),
            Constraint::Fill(1),
        ],
    )
    .header(header)
    .row_highlight_style(theme.selected())
    .highlight_symbol("› ");
    let mut state = TableState::default().with_selected((!step.rows.is_empty()).then_some(step.cursor));
    StatefulWidget::render(table, table_area, buf, &mut state);
    let selected = step.selected();
    let total: u64 = step.rows.iter().filter(|r| step.is_selected(r)).map(DbRow::keys).sum();
    let mut lines = vec![Line::from(format!(
        "{} of {} DB(s) selected, {} keys on the sources.",
        selected.len(),
        step.rows.len(),
        count(total)
    ))];
    if step.pending > 0 {
        lines.push(Line::raw(format!("Asking {} source(s) for their databases…", step.pending)));
    }
    for (name, e) in step.failed.iter().take(3) {
        lines.push(Line::styled(format!("{name}: {e}"), theme.tone(Tone::Bad)));
    }
    Paragraph::new(lines).wrap(Wrap { trim: true }).render(status_area, buf);
}
