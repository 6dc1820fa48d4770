//! Step 6, review and start: the task name, the file it is saved to, and
//! whether passwords go in it (else `password_env` names, listed so the
//! operator can export them), the task file exactly as it will be written
//! (passwords masked on screen), then save and start.

use std::path::{Path, PathBuf};

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget, Wrap};

use crate::config::{render as render_toml, SavePasswords, Secret, TaskConfig};
use crate::ui::field::TextField;
use crate::ui::msg::Effect;
use crate::ui::theme::{Theme, Tone};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewField {
    Name,
    Path,
    Passwords,
    Start,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewPhase {
    Editing,
    Saving,
    /// Saved; the engine is starting.
    Starting,
    /// Saving or starting failed: why.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReviewStep {
    pub name: TextField,
    pub path: TextField,
    pub save_passwords: bool,
    pub focus: ReviewField,
    /// First line of the file preview shown.
    pub scroll: u16,
    pub phase: ReviewPhase,
    /// The task being saved and started.
    pub starting: Option<Box<TaskConfig>>,
    /// Variables the saved file reads passwords from: (entry, variable).
    pub vars: Vec<(String, String)>,
}

impl ReviewStep {
    pub fn new(name: &str, path: &Path) -> ReviewStep {
        ReviewStep {
            name: TextField::new(name),
            path: TextField::new(path.to_string_lossy()),
            save_passwords: false,
            focus: ReviewField::Start,
            scroll: 0,
            phase: ReviewPhase::Editing,
            starting: None,
            vars: Vec::new(),
        }
    }

    pub fn file_path(&self) -> PathBuf {
        PathBuf::from(self.path.value().trim())
    }

    pub fn passwords(&self) -> SavePasswords {
        if self.save_passwords {
            SavePasswords::Include
        } else {
            SavePasswords::AsEnv
        }
    }

    /// True when the key asks to save and start.
    pub fn on_key(&mut self, key: KeyEvent) -> bool {
        match key.code {
            KeyCode::Tab | KeyCode::Down => self.focus = self.focus.next(),
            KeyCode::BackTab | KeyCode::Up => self.focus = self.focus.prev(),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_add(5),
            KeyCode::PageUp => self.scroll = self.scroll.saturating_sub(5),
            KeyCode::Enter => match self.focus {
                ReviewField::Start => return true,
                ReviewField::Passwords => self.save_passwords = !self.save_passwords,
                _ => self.focus = self.focus.next(),
            },
            KeyCode::Char(' ') if self.focus == ReviewField::Passwords => self.save_passwords = !self.save_passwords,
            _ => {
                match self.focus {
                    ReviewField::Name => self.name.handle_key(key),
                    ReviewField::Path => self.path.handle_key(key),
                    ReviewField::Passwords | ReviewField::Start => false,
                };
                if self.phase != ReviewPhase::Editing {
                    self.phase = ReviewPhase::Editing;
                }
            }
        }
        false
    }

    pub fn start(&mut self, task: TaskConfig) -> Option<Effect> {
        if self.file_path().as_os_str().is_empty() {
            self.phase = ReviewPhase::Failed("name the file the task is saved to".into());
            return None;
        }
        self.phase = ReviewPhase::Saving;
        self.starting = Some(Box::new(task.clone()));
        Some(Effect::Save { config: Box::new(task), path: self.file_path(), passwords: self.passwords() })
    }

    pub fn saved(&mut self, result: Result<Vec<(String, String)>, String>) -> Option<Effect> {
        if self.phase != ReviewPhase::Saving {
            return None;
        }
        match result {
            Ok(vars) => {
                self.vars = vars;
                self.phase = ReviewPhase::Starting;
                self.starting.clone().map(Effect::Start)
            }
            Err(e) => {
                self.phase = ReviewPhase::Failed(e);
                None
            }
        }
    }
}

impl ReviewField {
    fn next(self) -> ReviewField {
        match self {
            ReviewField::Name => ReviewField::Path,
            ReviewField::Path => ReviewField::Passwords,
            ReviewField::Passwords => ReviewField::Start,
            ReviewField::Start => ReviewField::Name,
        }
    }

    fn prev(self) -> ReviewField {
        match self {
            ReviewField::Name => ReviewField::Start,
            ReviewField::Path => ReviewField::Name,
            ReviewField::Passwords => ReviewField::Path,
            ReviewField::Start => ReviewField::Passwords,
        }
    }
}

/// The task file as `save` will write it, every password replaced by a mask.
pub fn preview(task: &TaskConfig, path: &Path, passwords: SavePasswords) -> String {
    let mut shown = task.clone();
    let mask = |s: &Secret| {
        if s.is_empty() {
            s.clone()
        } else {
            let masked = Secret::new("******");
            match s.env_var() {
                Some(v) => masked.with_env_var(v),
                None => masked,
            }
        }
    };
    for s in &mut shown.sources {
        s.password = mask(&s.password);
    }
    shown.destination.password = mask(&shown.destination.password);
    render_toml(&shown, path, passwords)
}

pub(super) fn render(step: &ReviewStep, task: Result<TaskConfig, String>, theme: Theme, area: Rect, buf: &mut Buffer) {
    let [name, path, pw, button, status, file] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
    ])
    .areas(area);
    let w = area.width.min(72);
    step.name.render("Task name", 12, step.focus == ReviewField::Name, theme, Rect { width: w, ..name }, buf);
    step.path.render("Save to", 12, step.focus == ReviewField::Path, theme, Rect { width: w, ..path }, buf);
    let check = if step.save_passwords { "[x]" } else { "[ ]" };
    let pw_style = if step.focus == ReviewField::Passwords { theme.selected() } else { theme.tone(Tone::Normal) };
    Line::from(vec![
        Span::raw("            "),
        Span::styled(format!("{check} save passwords in the file"), pw_style),
        Span::styled(
            if step.save_passwords { "  (mode 0600)" } else { "  (no: it names variables to export)" },
            theme.tone(Tone::Dim),
        ),
    ])
    .render(pw, buf);
    let style = if step.focus == ReviewField::Start { theme.selected() } else { theme.key() };
    Line::from(vec![Span::raw("            "), Span::styled("[ Save & start ]", style)]).render(button, buf);
    let status_line = match &step.phase {
        ReviewPhase::Editing => match &task {
            Ok(_) => Line::styled("The task file (PgUp/PgDn scroll):", theme.tone(Tone::Dim)),
            Err(e) => Line::styled(e.clone(), theme.tone(Tone::Bad)),
        },
        ReviewPhase::Saving => Line::raw("Saving…"),
        ReviewPhase::Starting => Line::raw("Saved. Starting the task…"),
        ReviewPhase::Failed(e) => Line::styled(e.clone(), theme.tone(Tone::Bad)),
    };
    Paragraph::new(status_line).render(status, buf);
    let text = match &task {
        Ok(t) => preview(t, &step.file_path(), step.passwords()),
        Err(_) => String::new(),
    };
    Paragraph::new(text)
        .block(Block::new().borders(Borders::TOP).border_style(theme.border()))
        .wrap(Wrap { trim: false })
        .scroll((step.scroll, 0))
        .render(file, buf);
}
