//! A one-line text field: a `tui_input::Input` (cursor, word moves,
//! deletion) with a label and, for passwords, masking. Editing is pure
//! (`handle_key`), drawing is `render`; neither does I/O.

use crossterm::event::{Event, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;
use tui_input::backend::crossterm::EventHandler;
use tui_input::Input;

use super::theme::Theme;

/// What a masked field shows per character.
const MASK: char = '•';

#[derive(Debug, Clone, Default)]
pub struct TextField {
    input: Input,
    /// Shown as `•`s: the value never reaches the screen.
    pub masked: bool,
}

impl PartialEq for TextField {
    fn eq(&self, other: &Self) -> bool {
        self.value() == other.value() && self.masked == other.masked
    }
}

impl TextField {
    pub fn new(value: impl Into<String>) -> TextField {
        TextField { input: Input::new(value.into()), masked: false }
    }

    pub fn masked(value: impl Into<String>) -> TextField {
        TextField { input: Input::new(value.into()), masked: true }
    }

    pub fn value(&self) -> &str {
        self.input.value()
    }

    pub fn set(&mut self, value: impl Into<String>) {
        self.input = Input::new(value.into());
    }

    /// Applies an editing key; true when it was one (a character, a
    /// deletion, a cursor move).
    pub fn handle_key(&mut self, key: KeyEvent) -> bool {
        self.input.handle_event(&Event::Key(key)).is_some()
    }

    /// Draws `label value` in `area` (one line). A focused field is shown
    /// reversed, with the cell under the cursor left plain so the cursor
    /// shows without the terminal's own (which stays hidden).
    pub fn render(&self, label: &str, label_width: u16, focused: bool, theme: Theme, area: Rect, buf: &mut Buffer) {
        if area.height == 0 || area.width <= label_width + 2 {
            return;
        }
        let label_area = Rect { width: label_width, height: 1, ..area };
        Line::from(format!("{label:>w$} ", w = label_width.saturating_sub(1) as usize)).render(label_area, buf);
        let value_area = Rect { x: area.x + label_width, width: area.width - label_width, height: 1, ..area };
        let width = value_area.width.saturating_sub(1) as usize;
        let scroll = self.input.visual_scroll(width);
        let shown: String = if self.masked {
            std::iter::repeat_n(MASK, self.input.value().chars().count()).skip(scroll).take(width).collect()
        } else {
            self.input.value().chars().skip(scroll).take(width).collect()
        };
        let style = if focused {
            theme.selected()
        } else {
            theme.tone(super::theme::Tone::Dim).add_modifier(ratatui::style::Modifier::UNDERLINED)
        };
        let padded = format!("{shown:<w$}", w = value_area.width as usize);
        Line::from(Span::styled(padded, style)).render(value_area, buf);
        if focused {
            let col = self.input.visual_cursor().saturating_sub(scroll).min(width) as u16;
            let pos = Position { x: value_area.x + col, y: value_area.y };
            if let Some(cell) = buf.cell_mut(pos) {
                cell.set_style(Style::reset().add_modifier(ratatui::style::Modifier::UNDERLINED));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::{KeyCode, KeyModifiers};

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn typing_and_deleting() {
        let mut f = TextField::new("12");
        assert!(f.handle_key(key(KeyCode::Char('3'))));
        assert!(f.handle_key(key(KeyCode::Left)));
        assert!(f.handle_key(key(KeyCode::Backspace)));
        assert_eq!(f.value(), "13");
    }

    #[test]
    fn masked_value_never_drawn() {
        let f = TextField::masked("admin:Rp829dlwa");
        let area = Rect::new(0, 0, 40, 1);
        let mut buf = Buffer::empty(area);
        f.render("Password", 10, false, Theme::mono(), area, &mut buf);
        let text: String = (0..40).map(|x| buf[(x, 0)].symbol().to_owned()).collect();
        assert!(!text.contains("Rp829dlwa"), "{text}");
        assert!(text.starts_with(" Password •••••••••••••••"), "{text}");
    }
}
