//! What the UI keeps of a "test" button: its state around a probe's
//! `ServerFacts`, and how every screen words what it found ([`role_text`]).
//! `effects` produces the answers, in one place; the screens never see a
//! socket or a library future.

use crate::probe::{Role, ServerFacts};

/// The outcome of a "test" button.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Probe {
    #[default]
    Untested,
    Testing,
    Ok(Box<ServerFacts>),
    /// The probe's sentence for the operator.
    Failed(String),
}

impl Probe {
    pub fn info(&self) -> Option<&ServerFacts> {
        match self {
            Probe::Ok(i) => Some(i),
            _ => None,
        }
    }
}

/// `master`, `replica of HOST:PORT`, with `(link down)` when it is.
pub fn role_text(role: &Role) -> String {
    match role {
        Role::Replica { link_up: false, .. } => format!("{role} (link down)"),
        _ => role.to_string(),
    }
}
