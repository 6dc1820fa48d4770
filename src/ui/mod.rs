//! The terminal UI: the wizard that builds a task and the dashboard that
//! watches it run.
//!
//! The shape is the same everywhere: a key or a result becomes a
//! [`msg::Msg`]; an `update` function changes the state and returns at
//! most one [`msg::Effect`]; the loop in `app` carries the effect out
//! (through `effects`, the one place that calls the library: probes,
//! precheck, verify, saving, the engine) and draws the state, which is a
//! pure function of it (`impl Widget for &State`). The UI never touches a
//! socket, and the engine never knows a terminal exists.
//!
//! Parts: `wizard/` (one module per step), `dashboard/` (the live view,
//! its help and report), `common` (what several screens and `msg` share:
//! `TaskInfo`, `Notice`, `is_ctrl`), `field` (text input), `facts` (what
//! the screens show of library answers), `theme` (colour or `NO_COLOR`),
//! `format` (numbers that fit), `terminal` (raw mode in, always back out),
//! `log` (the log file), `app` (the loop) and `effects`.
//!
//! Dependencies point one way: `app` → `effects` → `dashboard`, `wizard` →
//! `msg` → `common`, `facts`, `field`, `format`, `theme`, `widgets`; the
//! two screens never use each other.

pub mod app;
pub mod common;
pub mod dashboard;
pub mod effects;
pub mod facts;
pub mod field;
pub mod format;
pub mod log;
pub mod msg;
pub mod terminal;
pub mod theme;
pub mod widgets;
pub mod wizard;

#[cfg(test)]
pub(crate) mod testing;
