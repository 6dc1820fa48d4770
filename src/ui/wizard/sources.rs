//! Step 1, the source masters: a table of Redis-Servers (name, address,
//! password shown only as set or not, and the last test's answer), with an
//! editor dialog for a row and an import dialog that reads a
//! nutcracker.yml and takes one of its pools.

use std::path::{Path, PathBuf};

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, StatefulWidget, Table, TableState, Widget, Wrap};

use super::{probe_requests, source_config};
use crate::config::nutcracker::Pool;
use crate::config::{is_valid_source_name, Addr, Secret, SourceConfig};
use crate::probe::Role;
use crate::ui::facts::{role_text, Probe};
use crate::ui::field::TextField;
use crate::ui::format::{count, fit, short_bytes, short_count};
use crate::ui::msg::{Effect, ProbeRequest, ProbeTarget};
use crate::ui::theme::{Theme, Tone};
use crate::ui::widgets::popup;

#[derive(Debug, Clone, PartialEq)]
pub struct SourceRow {
    /// Stable while rows are added and removed: probe answers find their row by it.
    pub id: u64,
    pub name: String,
    pub addr: String,
    pub password: Secret,
    pub probe: Probe,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourcesStep {
    pub rows: Vec<SourceRow>,
    pub selected: usize,
    next_id: u64,
    pub dialog: Option<SourcesDialog>,
    /// The import dialog's first suggestion; empty: nutcracker's usual place.
    pub import_path: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourcesDialog {
    Edit(SourceEditor),
    Import(ImportDialog),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditorField {
    Name,
    Addr,
    Password,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceEditor {
    /// The row edited; `None` adds one.
    pub row: Option<u64>,
    pub name: TextField,
    pub addr: TextField,
    pub password: TextField,
    /// The environment variable the password came from, kept when the
    /// password is not retyped.
    pub password_env: Option<String>,
    pub focus: EditorField,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportDialog {
    pub path: TextField,
    pub phase: ImportPhase,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImportPhase {
    /// Typing the path; the last error reading it.
    Path(Option<String>),
    Reading,
    Pools {
        pools: Vec<Pool>,
        selected: usize,
    },
}

impl SourcesStep {
    pub fn push(&mut self, name: &str, addr: &str, password: Secret) {
        self.next_id += 1;
        self.rows.push(SourceRow {
            id: self.next_id,
            name: name.to_owned(),
            addr: addr.to_owned(),
            password,
            probe: Probe::Untested,
        });
    }

    /// The rows as source configs, or what is wrong with them.
    pub fn configs(&self) -> Result<Vec<SourceConfig>, String> {
        if self.rows.is_empty() {
            return Err("add at least one source master (a), or import them from nutcracker.yml (i)".into());
        }
        let configs = self.rows.iter().map(source_config).collect::<Result<Vec<_>, _>>()?;
        for (i, a) in configs.iter().enumerate() {
            for b in &configs[..i] {
                if a.name == b.name {
                    return Err(format!("two sources are named {}: names must differ", a.name));
                }
                if a.addr.same_server(&b.addr) {
                    return Err(format!("sources {} and {} are the same server {}", b.name, a.name, a.addr));
                }
            }
        }
        Ok(configs)
    }

    /// Probes for the rows not tested (or that failed), as one effect.
    pub fn probe_missing(&mut self) -> Option<Effect> {
        let wanted = probe_requests(self.rows.iter_mut());
        (!wanted.is_empty()).then_some(Effect::Probe(wanted))
    }

    /// Forgets every answer, so the next `probe_missing` asks again.
    pub fn forget_probes(&mut self) {
        for r in &mut self.rows {
            if r.probe != Probe::Testing {
                r.probe = Probe::Untested;
            }
        }
    }

    pub fn probed(&mut self, id: u64, addr: &str, probe: Probe) {
        if let Some(r) = self.rows.iter_mut().find(|r| r.id == id && r.addr.trim() == addr) {
            r.probe = probe;
        }
    }

    pub fn nutcracker_read(&mut self, path: &Path, result: Result<Vec<Pool>, String>) {
        let Some(SourcesDialog::Import(d)) = &mut self.dialog else { return };
        if d.phase != ImportPhase::Reading || Path::new(d.path.value().trim()) != path {
            return;
        }
        d.phase = match result {
            Ok(pools) if pools.is_empty() => ImportPhase::Path(Some(format!("{} defines no pool", path.display()))),
            Ok(pools) => ImportPhase::Pools { pools, selected: 0 },
            Err(e) => ImportPhase::Path(Some(e)),
        };
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Option<Effect> {
        match self.dialog.take() {
            Some(SourcesDialog::Edit(editor)) => return self.editor_key(editor, key),
            Some(SourcesDialog::Import(import)) => return self.import_key(import, key),
            None => {}
        }
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.rows.len().saturating_sub(1))
            }
            KeyCode::Char('a') => self.dialog = Some(SourcesDialog::Edit(SourceEditor::new(None))),
            KeyCode::Char('e') | KeyCode::Enter => {
                if let Some(r) = self.rows.get(self.selected) {
                    self.dialog = Some(SourcesDialog::Edit(SourceEditor::new(Some(r))));
                }
            }
            KeyCode::Char('d') | KeyCode::Delete if self.selected < self.rows.len() => {
                self.rows.remove(self.selected);
                self.selected = self.selected.min(self.rows.len().saturating_sub(1));
            }
            KeyCode::Char('t') => {
                let row = self.rows.get_mut(self.selected)?;
                if row.addr.parse::<Addr>().is_err() {
                    row.probe = Probe::Failed(format!("`{}` is not host:port", row.addr));
                    return None;
                }
                row.probe = Probe::Testing;
                return Some(Effect::Probe(vec![ProbeRequest {
                    target: ProbeTarget::Source(row.id),
                    addr: row.addr.trim().to_owned(),
                    password: row.password.clone(),
                    own_keys: Vec::new(),
                }]));
            }
            KeyCode::Char('T') => {
                self.forget_probes();
                return self.probe_missing();
            }
            KeyCode::Char('i') => {
                self.dialog = Some(SourcesDialog::Import(ImportDialog {
                    path: TextField::new(if self.import_path.is_empty() {
                        "/etc/nutcracker/nutcracker.yml"
                    } else {
                        self.import_path.as_str()
                    }),
                    phase: ImportPhase::Path(None),
                }))
            }
            _ => {}
        }
        None
    }

    fn editor_key(&mut self, mut ed: SourceEditor, key: KeyEvent) -> Option<Effect> {
        match key.code {
            KeyCode::Esc => return None,
            KeyCode::Tab | KeyCode::Down => ed.focus = ed.focus.next(),
            KeyCode::BackTab | KeyCode::Up => ed.focus = ed.focus.prev(),
            KeyCode::Enter if ed.focus != EditorField::Password => ed.focus = ed.focus.next(),
            KeyCode::Enter => match self.commit(&ed) {
                Ok(()) => return None,
                Err(e) => ed.error = Some(e),
            },
            _ => {
                let field = match ed.focus {
                    EditorField::Name => &mut ed.name,
                    EditorField::Addr => &mut ed.addr,
                    EditorField::Password => &mut ed.password,
                };
                if field.handle_key(key) && ed.focus == EditorField::Password {
                    ed.password_env = None;
                }
            }
        }
        self.dialog = Some(SourcesDialog::Edit(ed));
        None
    }

    /// Writes the editor into its row (or a new one), if it is valid.
    fn commit(&mut self, ed: &SourceEditor) -> Result<(), String> {
        let name = ed.name.value().trim().to_owned();
        let addr_text = ed.addr.value().trim().to_owned();
        let addr: Addr = addr_text.parse().map_err(|e| format!("address: {e}"))?;
        let name = if name.is_empty() { addr.to_string() } else { name };
        if !is_valid_source_name(&name) {
            return Err(format!("name `{name}`: no spaces, `/` or `\\` (it names files and keys)"));
        }
        if let Some(other) = self.rows.iter().find(|r| Some(r.id) != ed.row && r.name == name) {
            return Err(format!("another source is already named {}", other.name));
        }
        if let Some(other) = self
            .rows
            .iter()
            .find(|r| Some(r.id) != ed.row && r.addr.parse::<Addr>().is_ok_and(|a| a.same_server(&addr)))
        {
            return Err(format!("source {} already has address {addr}", other.name));
        }
        let mut password = Secret::new(ed.password.value());
        if let Some(var) = &ed.password_env {
            password = password.with_env_var(var);
        }
        match ed.row.and_then(|id| self.rows.iter_mut().find(|r| r.id == id)) {
            Some(row) => {
                if row.addr != addr_text || row.password != password {
                    row.probe = Probe::Untested;
                }
                row.name = name;
                row.addr = addr_text;
                row.password = password;
            }
            None => {
                self.push(&name, &addr_text, password);
                self.selected = self.rows.len() - 1;
            }
        }
        Ok(())
    }

    fn import_key(&mut self, mut d: ImportDialog, key: KeyEvent) -> Option<Effect> {
        if key.code == KeyCode::Esc {
            return None;
        }
        let mut effect = None;
        match &mut d.phase {
            ImportPhase::Path(_) => {
                if key.code == KeyCode::Enter {
                    let path = PathBuf::from(d.path.value().trim());
                    d.phase = ImportPhase::Reading;
                    effect = Some(Effect::ReadNutcracker(path));
                } else {
                    d.path.handle_key(key);
                }
            }
            ImportPhase::Reading => {}
            ImportPhase::Pools { pools, selected } => match key.code {
                KeyCode::Up | KeyCode::Char('k') => *selected = selected.saturating_sub(1),
                KeyCode::Down | KeyCode::Char('j') => *selected = (*selected + 1).min(pools.len().saturating_sub(1)),
                KeyCode::Enter => {
                    if let Some(pool) = pools.get(*selected).cloned() {
                        self.take_pool(&pool);
                        return None;
                    }
                }
                _ => {}
            },
        }
        self.dialog = Some(SourcesDialog::Import(d));
        effect
    }

    /// The pool's servers replace the rows. twemproxy's `redis_auth` is the
    /// proxy's password, not the servers': passwords start empty.
    fn take_pool(&mut self, pool: &Pool) {
        self.rows.clear();
        for s in &pool.servers {
            let addr = s.addr.to_string();
            let name = s.name.clone().unwrap_or_else(|| addr.clone());
            self.push(&name, &addr, Secret::none());
        }
        self.selected = 0;
    }
}

impl EditorField {
    fn next(self) -> EditorField {
        match self {
            EditorField::Name => EditorField::Addr,
            EditorField::Addr => EditorField::Password,
            EditorField::Password => EditorField::Name,
        }
    }

    fn prev(self) -> EditorField {
        match self {
            EditorField::Name => EditorField::Password,
            EditorField::Addr => EditorField::Name,
            EditorField::Password => EditorField::Addr,
        }
    }
}

impl SourceEditor {
    fn new(row: Option<&SourceRow>) -> SourceEditor {
        SourceEditor {
            row: row.map(|r| r.id),
            name: TextField::new(row.map_or("", |r| r.name.as_str())),
            addr: TextField::new(row.map_or("", |r| r.addr.as_str())),
            password: TextField::masked(row.map_or("", |r| r.password.expose())),
            password_env: row.and_then(|r| r.password.env_var().map(str::to_owned)),
            focus: if row.is_some() { EditorField::Addr } else { EditorField::Name },
            error: None,
        }
    }
}

/// How a password is shown: never its value, nor its length.
pub(super) fn password_cell(p: &Secret) -> String {
    match (p.is_empty(), p.env_var()) {
        (true, _) => "none".into(),
        (false, Some(var)) => format!("${var}"),
        (false, None) => "******".into(),
    }
}

/// The test column: `testing…`, `master 7.0.15 · 1,234 keys`, or the error.
fn probe_cell(p: &Probe, theme: Theme) -> Span<'static> {
    match p {
        Probe::Untested => Span::styled("not tested", theme.tone(Tone::Dim)),
        Probe::Testing => Span::raw("testing…"),
        // Short enough for 80 columns; the line under the table has the rest.
        Probe::Ok(i) => {
            let tone = if i.role == Role::Master { Tone::Good } else { Tone::Warn };
            Span::styled(
                format!("{} {} · {} keys", role_text(&i.role), i.server.version, short_count(i.total_keys())),
                theme.tone(tone),
            )
        }
        Probe::Failed(e) => Span::styled(format!("FAILED: {e}"), theme.tone(Tone::Bad)),
    }
}

pub(super) fn render(step: &SourcesStep, theme: Theme, area: Rect, buf: &mut Buffer) {
    let [table_area, detail_area] = Layout::vertical([Constraint::Min(3), Constraint::Length(4)]).areas(area);
    let header = Row::new(["Name", "Address", "Password", "Test"]).style(theme.title());
    let rows: Vec<Row> = step
        .rows
        .iter()
        .map(|r| {
            Row::new(vec![
                Cell::from(r.name.clone()),
                Cell::from(r.addr.clone()),
                Cell::from(password_cell(&r.password)),
                Cell::from(probe_cell(&r.probe, theme)),
            ])
        })
        .collect();
    let empty = rows.is_empty();
    let table =
        Table::new(rows, [Constraint::Length(14), Constraint::Length(21), Constraint::Length(9), Constraint::Fill(1)])
            .header(header)
            .row_highlight_style(theme.selected())
            .highlight_symbol("› ");
    let mut state = TableState::default().with_selected((!empty).then_some(step.selected));
    StatefulWidget::render(table, table_area, buf, &mut state);
    if empty {
        let hint = Rect { y: table_area.y + 2, height: 1, ..table_area };
        Line::styled(
            "  No sources yet: a adds one, i imports the servers of a nutcracker.yml pool.",
            theme.tone(Tone::Dim),
        )
        .render(hint, buf);
    }
    // The selected row's test in full: errors are sentences, too long for a cell.
    let detail = match step.rows.get(step.selected).map(|r| (&r.name, &r.probe)) {
        Some((name, Probe::Failed(e))) => Some((format!("{name}: {e}"), Tone::Bad)),
        Some((name, Probe::Ok(i))) => Some((
            format!(
                "{name}: {} · {} · {} · {} keys in {} DB(s) · memory {}",
                role_text(&i.role),
                i.server,
                i.mode,
                count(i.total_keys()),
                i.keyspace.len(),
                short_bytes(i.used_memory)
            ),
            if i.role == Role::Master { Tone::Normal } else { Tone::Warn },
        )),
        _ => None,
    };
    if let Some((text, tone)) = detail {
        Paragraph::new(Line::styled(text, theme.tone(tone)))
            .wrap(Wrap { trim: true })
            .block(Block::new().borders(Borders::TOP).border_style(theme.border()))
            .render(detail_area, buf);
    }
    match &step.dialog {
        Some(SourcesDialog::Edit(ed)) => render_editor(ed, theme, area, buf),
        Some(SourcesDialog::Import(d)) => render_import(d, theme, area, buf),
        None => {}
    }
}

fn render_editor(ed: &SourceEditor, theme: Theme, area: Rect, buf: &mut Buffer) {
    let title = if ed.row.is_some() { " Edit source " } else { " Add source " };
    let inner = popup(title, 70, 10, theme, area, buf);
    let rows = Layout::vertical([Constraint::Length(1); 7]).split(inner);
    ed.name.render("Name", 11, ed.focus == EditorField::Name, theme, rows[0], buf);
    ed.addr.render("Address", 11, ed.focus == EditorField::Addr, theme, rows[1], buf);
    ed.password.render("Password", 11, ed.focus == EditorField::Password, theme, rows[2], buf);
    Line::styled("           host:port of the master itself, not of the twemproxy", theme.tone(Tone::Dim))
        .render(rows[3], buf);
    Line::styled("           password: empty, <password> or <user>:<password>", theme.tone(Tone::Dim))
        .render(rows[4], buf);
    if let Some(e) = &ed.error {
        Line::styled(fit(e, inner.width as usize), theme.tone(Tone::Bad)).render(rows[5], buf);
    }
    Line::from(vec![
        Span::styled(" Tab", theme.key()),
        Span::raw(" next field  "),
        Span::styled("Enter", theme.key()),
        Span::raw(" on password: save  "),
        Span::styled("Esc", theme.key()),
        Span::raw(" cancel"),
    ])
    .render(rows[6], buf);
}

fn render_import(d: &ImportDialog, theme: Theme, area: Rect, buf: &mut Buffer) {
    let height = match &d.phase {
        ImportPhase::Pools { pools, .. } => (pools.len() as u16 + 6).min(area.height),
        _ => 7,
    };
    let inner = popup(" Import from nutcracker.yml ", 74, height, theme, area, buf);
    let [path_row, body] = Layout::vertical([Constraint::Length(2), Constraint::Fill(1)]).areas(inner);
    let typing = matches!(d.phase, ImportPhase::Path(_));
    d.path.render("File", 6, typing, theme, path_row, buf);
    let lines: Vec<Line> = match &d.phase {
        ImportPhase::Path(err) => {
            let mut l = vec![Line::from(vec![
                Span::styled(" Enter", theme.key()),
                Span::raw(" read the file  "),
                Span::styled("Esc", theme.key()),
                Span::raw(" cancel"),
            ])];
            if let Some(e) = err {
                l.push(Line::styled(format!(" {e}"), theme.tone(Tone::Bad)));
            }
            l
        }
        ImportPhase::Reading => vec![Line::raw(" reading…")],
        ImportPhase::Pools { pools, selected } => {
            let mut l: Vec<Line> = pools
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let mut text = format!(
                        " {} {}: {} server(s){}",
                        if i == *selected { "›" } else { " " },
                        p.name,
                        p.servers.len(),
                        p.listen.as_deref().map(|l| format!(", proxy listens on {l}")).unwrap_or_default()
                    );
                    if !p.redis {
                        text.push_str(" (memcached pool, not Redis)");
                    }
                    let style = if i == *selected { theme.selected() } else { theme.tone(Tone::Normal) };
                    Line::styled(text, style)
                })
                .collect();
            l.push(Line::from(vec![
                Span::styled(" Enter", theme.key()),
                Span::raw(" take this pool's servers (they replace the table)  "),
                Span::styled("Esc", theme.key()),
                Span::raw(" cancel"),
            ]));
            l
        }
    };
    Paragraph::new(lines).render(body, buf);
}
