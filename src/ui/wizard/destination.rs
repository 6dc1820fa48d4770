//! Step 2, the destination: address and password (`user:password` for an
//! ACL user, explained on screen), and a test that shows what the
//! destination is: version, standalone or cluster, memory, eviction policy.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget, Wrap};

use super::dest_config;
use crate::config::{DestConfig, Secret};
use crate::probe::ServerMode;
use crate::ui::common::is_ctrl;
use crate::ui::facts::{role_text, Probe};
use crate::ui::field::TextField;
use crate::ui::format::{count, human_bytes};
use crate::ui::msg::{Effect, ProbeRequest, ProbeTarget};
use crate::ui::theme::{Theme, Tone};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestField {
    Addr,
    Password,
    Test,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DestinationStep {
    pub addr: TextField,
    pub password: TextField,
    /// Where a prefilled password came from, kept until it is retyped.
    pub password_env: Option<String>,
    pub focus: DestField,
    pub probe: Probe,
}

impl DestinationStep {
    pub fn new(addr: &str, password: Secret) -> DestinationStep {
        DestinationStep {
            addr: TextField::new(addr),
            password: TextField::masked(password.expose()),
            password_env: password.env_var().map(str::to_owned),
            focus: DestField::Addr,
            probe: Probe::Untested,
        }
    }

    pub fn secret(&self) -> Secret {
        let s = Secret::new(self.password.value());
        match &self.password_env {
            Some(var) => s.with_env_var(var),
            None => s,
        }
    }

    pub fn config(&self) -> Result<DestConfig, String> {
        dest_config(self.addr.value(), &self.secret())
    }

    fn probe_effect(&mut self) -> Option<Effect> {
        match self.config() {
            Ok(c) => {
                self.probe = Probe::Testing;
                Some(Effect::Probe(vec![ProbeRequest {
                    target: ProbeTarget::Destination,
                    addr: c.addr.to_string(),
                    password: c.password,
                    own_keys: Vec::new(),
                }]))
            }
            Err(e) => {
                self.probe = Probe::Failed(e);
                None
            }
        }
    }

    /// A new probe, unless one is under way.
    pub fn probe_again(&mut self) -> Option<Effect> {
        match self.probe {
            Probe::Testing => None,
            _ => self.probe_effect(),
        }
    }

    pub fn probed(&mut self, addr: &str, probe: Probe) {
        if self.config().is_ok_and(|c| c.addr.to_string() == addr) {
            self.probe = probe;
        }
    }

    /// The effect of a key, and whether it asks for the next step (Enter
    /// on the test button once the test passed).
    pub fn on_key(&mut self, key: KeyEvent) -> (Option<Effect>, bool) {
        if is_ctrl(&key, 't') {
            return (self.probe_effect(), false);
        }
        match key.code {
            KeyCode::Tab | KeyCode::Down => self.focus = self.focus.next(),
            KeyCode::BackTab | KeyCode::Up => self.focus = self.focus.prev(),
            KeyCode::Enter => match self.focus {
                DestField::Test if matches!(self.probe, Probe::Ok(_)) => return (None, true),
                DestField::Test => return (self.probe_effect(), false),
                _ => self.focus = self.focus.next(),
            },
            _ => {
                let changed = match self.focus {
                    DestField::Addr => self.addr.handle_key(key),
                    DestField::Password => {
                        let c = self.password.handle_key(key);
                        if c {
                            self.password_env = None;
                        }
                        c
                    }
                    DestField::Test => false,
                };
                // An answer is for the fields as they were.
                if changed {
                    self.probe = Probe::Untested;
                }
            }
        }
        (None, false)
    }
}

impl DestField {
    fn next(self) -> DestField {
        match self {
            DestField::Addr => DestField::Password,
            DestField::Password => DestField::Test,
            DestField::Test => DestField::Addr,
        }
    }

    fn prev(self) -> DestField {
        match self {
            DestField::Addr => DestField::Test,
            DestField::Password => DestField::Addr,
            DestField::Test => DestField::Password,
        }
    }
}

pub(super) fn render(step: &DestinationStep, theme: Theme, area: Rect, buf: &mut Buffer) {
    let [addr, pw, help, button, _, result] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(3),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
    ])
    .areas(area);
    let field_width = addr.width.min(60);
    step.addr.render("Address", 11, step.focus == DestField::Addr, theme, Rect { width: field_width, ..addr }, buf);
    step.password.render(
        "Password",
        11,
        step.focus == DestField::Password,
        theme,
        Rect { width: field_width, ..pw },
        buf,
    );
    Paragraph::new(vec![
        Line::styled(
            "           empty (no AUTH), <password>, or <user>:<password> for an ACL user",
            theme.tone(Tone::Dim),
        ),
        Line::styled("           (as admin:Rp829dlwa); split at the first `:`.", theme.tone(Tone::Dim)),
        Line::styled("           The copy needs write rights on the target databases.", theme.tone(Tone::Dim)),
    ])
    .render(help, buf);
    let label = match step.probe {
        Probe::Ok(_) => "[ Test again ]",
        _ => "[ Test connection ]",
    };
    let style = if step.focus == DestField::Test { theme.selected() } else { theme.key() };
    Line::from(vec![Span::raw("           "), Span::styled(label, style), Span::raw("  (or Ctrl-T)")])
        .render(button, buf);
    let lines: Vec<Line> = match &step.probe {
        Probe::Untested => vec![Line::styled("Not tested yet.", theme.tone(Tone::Dim))],
        Probe::Testing => vec![Line::raw("Testing…")],
        Probe::Failed(e) => vec![Line::styled(format!("FAILED: {e}"), theme.tone(Tone::Bad))],
        Probe::Ok(i) => {
            let policy = i.maxmemory_policy.as_deref().unwrap_or("unknown");
            let policy_line = if policy == "noeviction" {
                Line::from(format!("maxmemory-policy  {policy}"))
            } else {
                Line::styled(
                    format!("maxmemory-policy  {policy}: keys may be evicted during the copy; noeviction is safe"),
                    theme.tone(Tone::Warn),
                )
            };
            let maxmemory = if i.maxmemory == 0 { "no limit".to_owned() } else { human_bytes(i.maxmemory) };
            let keys = if i.keyspace.is_empty() {
                "empty".to_owned()
            } else {
                i.keyspace.iter().map(|(db, k)| format!("db{db} {}", count(k.keys))).collect::<Vec<_>>().join(", ")
            };
            // A standalone master or any node of a Redis Cluster (written
            // through its masters); a Sentinel is not a data store.
            let mode_tone = if i.mode == ServerMode::Sentinel { Tone::Warn } else { Tone::Good };
            vec![
                Line::styled(format!("ok: {}, {}", i.server, role_text(&i.role)), theme.tone(Tone::Good)),
                Line::from(vec![
                    Span::raw("mode              "),
                    Span::styled(i.mode.to_string(), theme.tone(mode_tone)),
                    Span::raw(if i.mode == ServerMode::Cluster { " (writes go to every master)" } else { "" }),
                ]),
                Line::from(format!("used memory       {} (maxmemory {maxmemory})", human_bytes(i.used_memory))),
                policy_line,
                Line::from(format!("keys              {keys}")),
            ]
        }
    };
    Paragraph::new(lines).wrap(Wrap { trim: false }).render(result, buf);
}
