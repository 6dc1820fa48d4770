//! Colours and emphasis, in one place, with a monochrome form for
//! `NO_COLOR` (https://no-color.org): every state is also a word on screen,
//! so colour only ever repeats what the text says.
//!
//! Widgets take a [`Theme`] from the state they draw; nothing reads the
//! environment while drawing.

use ratatui::style::{Color, Modifier, Style};

/// A level the operator should notice, as text and colour agree on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Normal,
    Good,
    Warn,
    Bad,
    /// Secondary text (hints, units, empty values).
    Dim,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to a non-empty value.
    pub fn from_env() -> Theme {
        Theme { color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) }
    }

    pub fn mono() -> Theme {
        Theme { color: false }
    }

    pub fn tone(self, tone: Tone) -> Style {
        if !self.color {
            // Without colour, only what must stand out does: bold for
            // trouble, nothing for the rest (dim renders badly on many
            // terminals and says nothing the text does not).
            return match tone {
                Tone::Bad => Style::new().add_modifier(Modifier::BOLD),
                _ => Style::new(),
            };
        }
        match tone {
            Tone::Normal => Style::new(),
            Tone::Good => Style::new().fg(Color::Green),
            Tone::Warn => Style::new().fg(Color::Yellow),
            Tone::Bad => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            Tone::Dim => Style::new().fg(Color::DarkGray),
        }
    }

    /// The focused field, the selected row, the current step.
    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub fn title(self) -> Style {
        let s = Style::new().add_modifier(Modifier::BOLD);
        if self.color {
            s.fg(Color::Cyan)
        } else {
            s
        }
    }

    /// Key names in hints.
    pub fn key(self) -> Style {
        let s = Style::new().add_modifier(Modifier::BOLD);
        if self.color {
            s.fg(Color::Cyan)
        } else {
            s
        }
    }

    pub fn border(self) -> Style {
        self.tone(Tone::Dim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_has_no_colours() {
        let t = Theme::mono();
        for tone in [Tone::Normal, Tone::Good, Tone::Warn, Tone::Bad, Tone::Dim] {
            assert_eq!(t.tone(tone).fg, None);
        }
        assert_eq!(Theme { color: true }.tone(Tone::Bad).fg, Some(Color::Red));
    }
}
