//! The reply type: one RESP2 value as the server sent it, converted from the
//! redis-protocol codec's frame, with accessors for the shapes callers expect.
//!
//! Bulk strings keep the codec's `Bytes` (a slice of the read buffer, no
//! copy). An error reply is an ordinary value here; turning it into a Rust
//! error is the caller's choice (`Connection::query` does it for one command).

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
#[cfg(test)]
use redis_protocol::resp2::types::BytesFrame;

use crate::display::escape_preview;

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK`. Simple strings cannot hold CR or LF and are text in practice;
    /// invalid UTF-8 is replaced rather than rejected. The replies a batch
    /// gets one per command (`OK`, `QUEUED`) are borrowed, not allocated.
    Simple(Cow<'static, str>),
    /// `-ERR message`, without the `-`.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nabc` or the nil bulk `$-1`.
    Bulk(Option<Bytes>),
    /// `*2\r\n...` or the nil array `*-1` (BLPOP timeout, aborted EXEC).
    Array(Option<Vec<Value>>),
}

impl Value {
    /// Decodes one whole reply, as `FrameScan` delimited it: the frame's
    /// structure is already checked, so this only builds the value (bulk
    /// strings are slices of `frame`, not copies). `None` if the bytes are
    /// not one RESP2 frame after all.
    ///
    /// Written here rather than left to the redis-protocol codec, whose
    /// decoder parses the frame again from scratch with nom and then needs
    /// a second conversion into `Value`: that was a quarter of `shardsync
    /// verify`'s CPU (perf, 1M-key dataset). The values are the same (a test
    /// compares them): a nested `*-1` is a nil bulk, as the codec folds it.
    pub(crate) fn parse(frame: &Bytes) -> Option<Value> {
        let mut pos = 0;
        let value = parse_at(frame, &mut pos, true)?;
        (pos == frame.len()).then_some(value)
    }

    /// Converts a decoded frame. The codec folds `$-1` and `*-1` into one
    /// `Null`; `nil_array` says which one a top-level null was, because only
    /// the connection still sees the raw first byte. The reference
    /// [`Value::parse`] is tested against.
    #[cfg(test)]
    pub(crate) fn from_frame(frame: BytesFrame, nil_array: bool) -> Value {
        match frame {
            BytesFrame::SimpleString(s) => Value::Simple(simple_text(&s)),
            BytesFrame::Error(e) => Value::Error(e.to_string()),
            BytesFrame::Integer(i) => Value::Integer(i),
            BytesFrame::BulkString(b) => Value::Bulk(Some(b)),
            BytesFrame::Array(items) => {
                Value::Array(Some(items.into_iter().map(|item| Value::from_frame(item, false)).collect()))
            }
            BytesFrame::Null if nil_array => Value::Array(None),
            BytesFrame::Null => Value::Bulk(None),
        }
    }

    /// Nil bulk or nil array.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Bulk(None) | Value::Array(None))
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }

    /// The `+OK` status.
    pub fn is_ok(&self) -> bool {
        matches!(self, Value::Simple(s) if s == "OK")
    }

    /// The text of an error reply.
    pub fn as_error(&self) -> Option<&str> {
        match self {
            Value::Error(e) => Some(e),
            _ => None,
        }
    }

    /// The first word of an error reply (`WRONGTYPE`, `MOVED`, `NOAUTH`...),
    /// which is what callers branch on.
    pub fn error_code(&self) -> Option<&str> {
        self.as_error().map(|e| e.split_once(' ').map_or(e, |(code, _)| code))
    }

    /// The payload of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(Some(b)) => Some(b),
            Value::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// A bulk or simple string that is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Simple(s) => Some(s),
            Value::Bulk(Some(b)) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// An integer reply, or a string holding a decimal integer: Redis sends
    /// numbers as bulk strings in many places (`CONFIG GET`, `HGET` of a
    /// counter), and callers want the number either way.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            other => other.as_str().and_then(|s| s.parse().ok()),
        }
    }

    /// The elements of a non-nil array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(Some(items)) => Some(items),
            _ => None,
        }
    }

    /// The payload of a bulk string (zero-copy) or simple string.
    pub fn into_bytes(self) -> Option<Bytes> {
        match self {
            Value::Bulk(b) => b,
            Value::Simple(s) => Some(Bytes::from(s.into_owned())),
            _ => None,
        }
    }

    /// The elements of a non-nil array.
    pub fn into_array(self) -> Option<Vec<Value>> {
        match self {
            Value::Array(items) => items,
            _ => None,
        }
    }

    /// What kind of reply this is, for "expected X, got Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Simple(_) => "simple string",
            Value::Error(_) => "error",
            Value::Integer(_) => "integer",
            Value::Bulk(Some(_)) => "bulk string",
            Value::Bulk(None) => "nil bulk",
            Value::Array(Some(_)) => "array",
            Value::Array(None) => "nil array",
        }
    }
}

/// Short, escaped, one-line rendering for messages and logs: bulk strings
/// are cut after 64 bytes and arrays after 8 items, because a value may be
/// megabytes long.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Simple(s) => write!(f, "{s}"),
            Value::Error(e) => write!(f, "(error) {e}"),
            Value::Integer(i) => write!(f, "(integer) {i}"),
            Value::Bulk(None) | Value::Array(None) => write!(f, "(nil)"),
            Value::Bulk(Some(b)) => write!(f, "\"{}\"", escape_preview(b, DISPLAY_BYTES)),
            Value::Array(Some(items)) => {
                write!(f, "[")?;
                for (i, item) in items.iter().take(DISPLAY_ITEMS).enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                if items.len() > DISPLAY_ITEMS {
                    write!(f, ", … {} more", items.len() - DISPLAY_ITEMS)?;
                }
                write!(f, "]")
            }
        }
    }
}

/// A simple string's text; the frequent ones cost no allocation.
pub(crate) fn simple_text(text: &[u8]) -> Cow<'static, str> {
    match text {
        b"OK" => Cow::Borrowed("OK"),
        b"QUEUED" => Cow::Borrowed("QUEUED"),
        b"PONG" => Cow::Borrowed("PONG"),
        other => Cow::Owned(String::from_utf8_lossy(other).into_owned()),
    }
}

/// The value at `*pos`, moving `*pos` past it.
fn parse_at(frame: &Bytes, pos: &mut usize, top: bool) -> Option<Value> {
    // What most elements of a transaction's reply are (a stream batch's
    // EXEC answers thousands of writes): read without looking for the
    // line end.
    match frame.get(*pos..*pos + 5) {
        Some(b"+OK\r\n") => {
            *pos += 5;
            return Some(Value::Simple(Cow::Borrowed("OK")));
        }
        Some(&[b':', digit, b'\r', b'\n', _]) if digit.is_ascii_digit() => {
            *pos += 4;
            return Some(Value::Integer(i64::from(digit - b'0')));
        }
        Some(&[b':', ..]) => {
            if let Some((n, len)) = super::scan::short_int(&frame[*pos + 1..]) {
                *pos += 1 + len;
                return Some(Value::Integer(n));
            }
        }
        _ => {}
    }
    let kind = *frame.get(*pos)?;
    let start = *pos + 1;
    let lf = start + memchr::memchr(b'\n', frame.get(start..)?)?;
    if lf == start || frame[lf - 1] != b'\r' {
        return None;
    }
    let text = &frame[start..lf - 1];
    *pos = lf + 1;
    let int = super::scan::parse_int;
    Some(match kind {
        b'+' => Value::Simple(simple_text(text)),
        b'-' => Value::Error(String::from_utf8_lossy(text).into_owned()),
        b':' => Value::Integer(int(text)?),
        b'$' => {
            let Ok(len) = usize::try_from(int(text)?) else { return Some(Value::Bulk(None)) };
            let end = pos.checked_add(len)?;
            if frame.get(end..end.checked_add(2)?)? != b"\r\n" {
                return None;
            }
            let bulk = frame.slice(*pos..end);
            *pos = end + 2;
            Value::Bulk(Some(bulk))
        }
        b'*' => {
            let Ok(count) = usize::try_from(int(text)?) else {
                return Some(if top { Value::Array(None) } else { Value::Bulk(None) });
            };
            // Every element takes at least 3 bytes: never allocate by a
            // count the frame cannot hold.
            let mut items = Vec::with_capacity(count.min((frame.len() - *pos) / 3));
            for _ in 0..count {
                items.push(parse_at(frame, pos, false)?);
            }
            Value::Array(Some(items))
        }
        _ => return None,
    })
}

const DISPLAY_BYTES: usize = 64;
const DISPLAY_ITEMS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(b: &'static [u8]) -> Value {
        Value::Bulk(Some(Bytes::from_static(b)))
    }

    #[test]
    fn frames_convert_to_values() {
        let frame = BytesFrame::Array(vec![
            BytesFrame::SimpleString(Bytes::from_static(b"OK")),
            BytesFrame::Error("WRONGTYPE Operation against a key".into()),
            BytesFrame::Integer(-3),
            BytesFrame::BulkString(Bytes::from_static(b"\x00\xff")),
            BytesFrame::Null,
        ]);
        assert_eq!(
            Value::from_frame(frame, false),
            Value::Array(Some(vec![
                Value::Simple("OK".into()),
                Value::Error("WRONGTYPE Operation against a key".into()),
                Value::Integer(-3),
                bulk(b"\x00\xff"),
                Value::Bulk(None),
            ]))
        );
    }

    #[test]
    fn top_level_null_keeps_its_kind() {
        assert_eq!(Value::from_frame(BytesFrame::Null, true), Value::Array(None));
        assert_eq!(Value::from_frame(BytesFrame::Null, false), Value::Bulk(None));
    }

    #[test]
    fn accessors_accept_the_shapes_redis_uses() {
        assert_eq!(bulk(b"12").as_int(), Some(12));
        assert_eq!(Value::Integer(7).as_int(), Some(7));
        assert_eq!(bulk(b"x").as_int(), None);
        assert_eq!(bulk(b"\xff").as_str(), None);
        assert_eq!(bulk(b"\xff").as_bytes(), Some(&b"\xff"[..]));
        assert!(Value::Simple("OK".into()).is_ok());
        assert!(!bulk(b"OK").is_ok());
        assert!(Value::Array(None).is_nil() && Value::Bulk(None).is_nil());
        assert_eq!(Value::Error("MOVED 3999 127.0.0.1:6381".into()).error_code(), Some("MOVED"));
        assert_eq!(Value::Error("NOAUTH".into()).error_code(), Some("NOAUTH"));
        assert_eq!(Value::Integer(1).into_bytes(), None);
        assert_eq!(Value::Array(Some(vec![Value::Integer(1)])).into_array(), Some(vec![Value::Integer(1)]));
    }

    #[test]
    fn parse_takes_exactly_one_frame() {
        let b = |s: &'static [u8]| Bytes::from_static(s);
        assert_eq!(Value::parse(&b(b"*-1\r\n")), Some(Value::Array(None)));
        assert_eq!(Value::parse(&b(b"$-1\r\n")), Some(Value::Bulk(None)));
        assert_eq!(Value::parse(&b(b"*1\r\n*-1\r\n")), Some(Value::Array(Some(vec![Value::Bulk(None)]))));
        assert_eq!(Value::parse(&b(b"$3\r\na\r\n\r\n")), Some(bulk(b"a\r\n")));
        assert_eq!(Value::parse(&b(b":1\r\n:2\r\n")), None, "two frames");
        assert_eq!(Value::parse(&b(b"$5\r\nab\r\n")), None, "short bulk");
        assert_eq!(Value::parse(&b(b"*9999999999\r\n")), None, "a count the frame cannot hold");
        assert_eq!(Value::parse(&b(b"+a\rb\r\n")), Some(Value::Simple("a\rb".into())));
        assert_eq!(Value::parse(&b(b"?x\r\n")), None);
        // A transaction's reply, with the short forms read directly.
        let exec = b(b"*6\r\n:1\r\n+OK\r\n:12\r\n+OKAY\r\n:-1\r\n:3\r\n");
        let simple = |s: &str| Value::Simple(s.to_owned().into());
        let int = Value::Integer;
        let expected = vec![int(1), simple("OK"), int(12), simple("OKAY"), int(-1), int(3)];
        assert_eq!(Value::parse(&exec), Some(Value::Array(Some(expected))));
        assert_eq!(Value::parse(&b(b"*2\r\n:1\r\n")), None, "an element short");
    }

    mod agrees_with_the_codec {
        use crate::resp::codec_frames::frame;
        use bytes::BytesMut;
        use proptest::prelude::*;
        use redis_protocol::resp2::{encode::extend_encode, types::BytesFrame};
        use tokio_util::codec::Decoder;

        use super::*;

        proptest! {
            /// `Value::parse` gives what the codec's decoder and
            /// `from_frame` give, for any frame, nil arrays included.
            #[test]
            fn on_every_frame(f in frame(), nil_array in any::<bool>()) {
                let mut buf = BytesMut::new();
                match (&f, nil_array) {
                    (BytesFrame::Null, true) => buf.extend_from_slice(b"*-1\r\n"),
                    _ => {
                        extend_encode(&mut buf, &f, false).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    }
                }
                let bytes = buf.clone().freeze();
                let decoded = redis_protocol::codec::Resp2::default().decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let decoded = decoded.ok_or_else(|| TestCaseError::fail("codec wants more"))?;
                let expected = Value::from_frame(decoded, bytes.starts_with(b"*-1\r\n"));
                prop_assert_eq!(Value::parse(&bytes), Some(expected));
            }
        }
    }

    #[test]
    fn display_is_short_and_escaped() {
        let long = Value::Bulk(Some(Bytes::from(vec![b'a'; 100])));
        assert_eq!(long.to_string(), format!("\"{}…\"", "a".repeat(64)));
        assert_eq!(bulk(b"\r\n\x00").to_string(), "\"\\r\\n\\x00\"");
        let many = Value::Array(Some((0..10).map(Value::Integer).collect()));
        assert!(many.to_string().ends_with("(integer) 7, … 2 more]"));
    }
}
