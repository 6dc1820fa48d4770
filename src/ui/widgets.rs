//! Small drawing helpers both screens use: the footer of key hints and
//! popups.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Widget};

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

/// A popup over what is drawn: a box of `width`×`height` in the middle of
/// `area`, cleared, bordered and titled. Returns the area inside the border.
pub fn popup(title: &str, width: u16, height: u16, theme: Theme, area: Rect, buf: &mut Buffer) -> Rect {
    let outer = centered(area, width, height);
    Clear.render(outer, buf);
    let block = Block::bordered().title(title).title_style(theme.title()).border_style(theme.border());
    let inner = block.inner(outer);
    block.render(outer, buf);
    inner
}

/// The last line of a yes/no popup: `y <yes>   any other key <no>`.
pub fn confirm_keys(yes: &str, no: &str, theme: Theme) -> Line<'static> {
    Line::from(vec![
        Span::styled("y", theme.key()),
        Span::raw(format!(" {yes}   ")),
        Span::styled("any other key", theme.key()),
        Span::raw(format!(" {no}")),
    ])
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

    #[test]
    fn a_popup_clears_its_box_and_gives_the_inside() {
        let area = Rect::new(0, 0, 20, 7);
        let mut buf = Buffer::empty(area);
        Line::raw("x".repeat(20)).render(Rect::new(0, 3, 20, 1), &mut buf);
        let inner = popup(" T ", 10, 5, Theme::mono(), area, &mut buf);
        assert_eq!(inner, Rect::new(6, 2, 8, 3));
        let row = |y: u16| (0..20).map(|x| buf[(x, y)].symbol().to_owned()).collect::<String>();
        assert_eq!(row(1), "     ┌ T ─────┐     ");
        assert_eq!(row(3), "xxxxx│        │xxxxx");
        let keys = confirm_keys("quit", "stay", Theme::mono());
        assert_eq!(keys.to_string(), "y quit   any other key stay");
    }
}
