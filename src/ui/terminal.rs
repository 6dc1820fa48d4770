//! The terminal while the UI runs: raw mode, the alternate screen, a
//! hidden cursor and bracketed paste, and the promise to undo all of it
//! on every way out — a normal return, an error (the guard's `Drop`), and
//! a panic (a hook that restores the screen before the report prints).
//! Signals are the loop's business: it stops the task and returns, and
//! the guard does the rest.

use std::io::{self, Stdout};
use std::mem::ManuallyDrop;
use std::sync::Once;

use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste};
use crossterm::terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

pub type Tui = Terminal<CrosstermBackend<Stdout>>;

/// The terminal in UI mode; restored when dropped.
pub struct TerminalSession {
    /// Never dropped: ratatui's `Terminal` shows the cursor on drop and,
    /// when that write fails (a hung-up SSH session), reports it with
    /// `eprintln!`, which panics on a dead terminal. [`restore`] shows the
    /// cursor instead, ignoring errors; the leak is a few buffers at exit.
    pub terminal: ManuallyDrop<Tui>,
}

impl TerminalSession {
    pub fn enter() -> io::Result<TerminalSession> {
        install_panic_hook();
        enable_raw_mode()?;
        let mut stdout = io::stdout();
        if let Err(e) = execute!(stdout, EnterAlternateScreen, cursor::Hide, EnableBracketedPaste) {
            restore();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(stdout)) {
            Ok(terminal) => Ok(TerminalSession { terminal: ManuallyDrop::new(terminal) }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for TerminalSession {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves UI mode. Safe to call twice, and on a terminal that is gone (a
/// hung-up SSH session): every step is attempted, errors are ignored.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), DisableBracketedPaste, LeaveAlternateScreen, cursor::Show);
}

/// Restores the terminal before the previous hook (color-eyre's) prints
/// the panic report, so the report lands on a normal screen.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}
