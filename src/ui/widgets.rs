//! Small drawing helpers both screens use: the footer of key hints and a
//! centred popup area.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::theme::Theme;

/// A footer of `key action` pairs; pairs that do not fit are left out
/// whole (the help lists them all).
pub fn hints(keys: &[(&str, &str)], theme: Theme, area: Rect, buf: &mut Buffer) {
    let mut spans = Vec::new();
    let mut used = 0usize;
    for (key, action) in keys {
        let w = key.chars().count() + action.chars().count() + 3;
        if used + w > area.width as usize {
            break;
        }
        spans.push(Span::styled(format!(" {key}"), theme.key()));
        spans.push(Span::raw(format!(" {action} ")));
        used += w;
    }
    Line::from(spans).render(area, buf);
}

/// A box of `width`×`height` in the middle of `area` (clipped to it).
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_drop_what_does_not_fit() {
        let area = Rect::new(0, 0, 20, 1);
        let mut buf = Buffer::empty(area);
        hints(&[("a", "add"), ("e", "edit"), ("d", "remove")], Theme::mono(), area, &mut buf);
        let text: String = (0..20).map(|x| buf[(x, 0)].symbol()).collect();
        assert_eq!(text, " a add  e edit      ");
        assert_eq!(centered(Rect::new(0, 0, 80, 24), 40, 10), Rect::new(20, 7, 40, 10));
        assert_eq!(centered(Rect::new(0, 0, 30, 5), 40, 10), Rect::new(0, 0, 30, 5));
    }
}
