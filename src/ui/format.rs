//! How numbers, sizes, durations and long text are written on screen:
//! short enough for an 80-column table, never wrapping into the next cell.

use unicode_width::UnicodeWidthStr;

pub use crate::human::{group_digits as count, human_bytes};

/// Counts in at most 6 characters: `999`, `12.3k`, `4.56M`, `1.20G`.
pub fn short_count(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")];
    for (size, unit) in UNITS {
        if n >= size {
            let v = n as f64 / size as f64;
            return if v >= 100.0 {
                format!("{v:.0}{unit}")
            } else if v >= 10.0 {
                format!("{v:.1}{unit}")
            } else {
                format!("{v:.2}{unit}")
            };
        }
    }
    n.to_string()
}

/// Bytes in at most 6 characters: `512B`, `1.5K`, `23M`, `4.2G`.
pub fn short_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    match crate::human::binary_scale(n) {
        (_, 0) => format!("{n}B"),
        (v, u) if v >= 10.0 => format!("{v:.0}{}", UNITS[u]),
        (v, u) => format!("{v:.1}{}", UNITS[u]),
    }
}

/// `3725 s` → `1:02:05`; under an hour `12:05`.
pub fn clock(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m:02}:{s:02}")
    }
}

/// A duration for an ETA or a lag: `850ms`, `12s`, `4m10s`, `2h05m`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{}s", ms / 1000)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60)
    }
}

/// `text` cut to `width` columns, ending in `…` when cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// `text` broken into lines of at most `width` columns at spaces (a word
/// longer than a line is cut), for text that needs an indent Paragraph's
/// own wrapping cannot give.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let word = fit(word, width);
        if !line.is_empty() && line.width() + 1 + word.width() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// A time of day (UTC) from milliseconds since the epoch: `14:03:27`.
pub fn time_of_day(ts_ms: i64) -> String {
    let secs = ts_ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_fit_their_columns() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(short_count(999), "999");
        assert_eq!(short_count(12_345), "12.3k");
        assert_eq!(short_count(4_560_000), "4.56M");
        assert_eq!(short_count(123_456_789), "123M");
        assert_eq!(short_bytes(512), "512B");
        assert_eq!(short_bytes(1536), "1.5K");
        assert_eq!(short_bytes(23 << 20), "23M");
    }

    #[test]
    fn durations_and_clock() {
        assert_eq!(clock(3725), "1:02:05");
        assert_eq!(clock(65), "01:05");
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(12_400), "12s");
        assert_eq!(duration_ms(250_000), "4m10s");
        assert_eq!(duration_ms(7_500_000), "2h05m");
        assert_eq!(time_of_day(1_764_064_227_000), "09:50:27");
    }

    #[test]
    fn wrap_at_spaces() {
        assert_eq!(wrap("the quick brown fox", 9), ["the quick", "brown fox"]);
        assert_eq!(wrap("abcdefghij x", 4), ["abc…", "x"]);
        assert!(wrap("", 5).is_empty());
    }

    #[test]
    fn fit_cuts_with_an_ellipsis() {
        assert_eq!(fit("server1", 10), "server1");
        assert_eq!(fit("a-very-long-shard-name", 8), "a-very-…");
        assert_eq!(fit("abc", 0), "");
    }
}
