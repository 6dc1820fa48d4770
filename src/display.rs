//! Bytes for people: how keys and other binary data appear in messages,
//! alerts and errors, the same way everywhere.
//!
//! Keys are binary-safe in Redis, so a message never prints one as it is:
//! control characters, invalid UTF-8 and invisible formatting characters are
//! escaped (`\x00`, `\n`, `\xff`, `\u{202e}`), quotes and backslashes too,
//! so what the operator reads names exactly the bytes of the key and cannot
//! break a line or a terminal; printable text (`clé`) stays readable. Long data is cut,
//! and the cut marked with `…`.
//!
//! [`escape_preview`] is the one escaping; [`show_key`] is a key as a message
//! shows it, [`quoted_key`] the same between double quotes.

/// Longest part of a key shown in messages.
pub const KEY_PREVIEW: usize = 120;

/// Escapes up to `max` bytes for a message, marking a cut with `…`.
/// Printable UTF-8 text stays readable (`clé`); control characters,
/// invisible formatting characters that could reorder a line, invalid UTF-8,
/// quotes and backslashes are escaped (`\n`, `\x00`, `\xff`, `\u{202e}`).
pub fn escape_preview(bytes: &[u8], max: usize) -> String {
    let mut end = bytes.len().min(max);
    // Cut on a character boundary when the cut falls inside valid UTF-8.
    while end < bytes.len() && end > 0 && (bytes[end] & 0xC0) == 0x80 && end > max.saturating_sub(3) {
        end -= 1;
    }
    let mut text = String::with_capacity(end);
    for chunk in bytes[..end].utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' | '\\' => {
                    text.push('\\');
                    text.push(c);
                }
                '\n' => text.push_str("\\n"),
                '\r' => text.push_str("\\r"),
                '\t' => text.push_str("\\t"),
                c if c.is_ascii_control() => text.push_str(&format!("\\x{:02x}", c as u32)),
                c if c.is_control() || invisible(c) => text.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => text.push(c),
            }
        }
        for b in chunk.invalid() {
            text.push_str(&format!("\\x{b:02x}"));
        }
    }
    if bytes.len() > end {
        text.push('…');
    }
    text
}

/// Zero-width and direction-changing characters: shown escaped, so a key
/// cannot hide part of itself or reorder the message around it.
fn invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// A key escaped for a message and cut when very long (`user:\x00:1`).
pub fn show_key(key: &[u8]) -> String {
    escape_preview(key, KEY_PREVIEW)
}

/// [`show_key`] between double quotes (`"user:\x00:1"`), for a key named
/// inside a sentence.
pub fn quoted_key(key: &[u8]) -> String {
    format!("\"{}\"", show_key(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_show_every_byte_escaped() {
        assert_eq!(show_key(b"user:1"), "user:1");
        assert_eq!(show_key(b"user:\x00:1"), "user:\\x00:1");
        assert_eq!(show_key(b"k\xff\n\"\\"), "k\\xff\\n\\\"\\\\");
        assert_eq!(show_key("clé".as_bytes()), "clé");
        assert_eq!(show_key("a\u{202e}b".as_bytes()), "a\\u{202e}b");
        assert_eq!(show_key(b"it's"), "it's");
        assert_eq!(quoted_key(b"one:hidden"), "\"one:hidden\"");
        assert_eq!(quoted_key(b"a\tb"), "\"a\\tb\"");
    }

    #[test]
    fn long_data_is_cut_and_marked() {
        let long = vec![b'a'; KEY_PREVIEW + 5];
        let shown = show_key(&long);
        assert_eq!(shown.len(), KEY_PREVIEW + '…'.len_utf8());
        assert!(shown.ends_with('…'));
        assert_eq!(escape_preview(b"\r\n\x00", 2), "\\r\\n…");
        assert_eq!(escape_preview(b"abc", 3), "abc");
    }
}
