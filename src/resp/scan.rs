//! Frame-boundary scanner: finds where the next complete RESP2 reply ends,
//! without decoding it and without I/O.
//!
//! The connection feeds it the read buffer after every read; once it reports
//! a complete frame of `n` bytes, `Value::parse` decodes exactly that frame.
//! The scanner exists because a decoder starts over from byte 0 on every
//! call (a large array arriving in many reads would be parsed again and
//! again) and recurses once per nesting level (a hostile peer could nest
//! deep enough to overflow the stack: the decoder runs only on frames the
//! scanner accepted, at most [`MAX_DEPTH`] deep). The scanner resumes where it stopped,
//! keeps one counter per open array, and refuses nesting beyond
//! [`MAX_DEPTH`]. It also rejects a first byte that no RESP reply can start
//! with, which is how a peer that speaks another protocol is recognised.

/// Deepest array nesting accepted. Redis replies nest a handful of levels
/// (XREADGROUP, COMMAND DOCS); anything near this is garbage or an attack.
pub(crate) const MAX_DEPTH: usize = 128;

/// Longest header line (`$len`, `*count`, `:int`) before its CRLF: an i64 in
/// decimal is at most 20 characters, the rest is slack.
const MAX_HEADER_LINE: usize = 32;

/// Why the bytes are not RESP2. `offset` counts from the start of the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanError {
    pub offset: usize,
    pub reason: &'static str,
}

/// Resumable scan state for one frame.
#[derive(Debug, Default)]
pub(crate) struct FrameScan {
    /// Start of the first element not yet fully received.
    pos: usize,
    /// Elements still expected by each open array, innermost last.
    pending: Vec<u64>,
    /// Bytes already searched for `\n` in the current line, so a long simple
    /// string arriving in pieces is not searched again from its start.
    searched: usize,
}

impl FrameScan {
    /// Returns the length of the complete frame at the start of `buf`, or
    /// `None` if more bytes are needed. After `Some`, the state is reset for
    /// the next frame (which begins after those bytes once the caller
    /// consumes them). `buf` must start at the same frame on every call.
    pub(crate) fn complete_len(&mut self, buf: &[u8]) -> Result<Option<usize>, ScanError> {
        loop {
            let start = self.pos;
            let Some(&kind) = buf.get(start) else {
                return Ok(None);
            };
            let next = match kind {
                // What nearly every element of a transaction's reply is (a
                // stream batch's EXEC answers thousands of writes): known
                // whole without a search for its line end.
                b'+' if buf.get(start..start + 5) == Some(b"+OK\r\n") => start + 5,
                b':' if let Some((_, len)) = short_int(&buf[start + 1..]) => start + 1 + len,
                b'+' | b'-' => match self.find_line_end(buf, start + 1, usize::MAX)? {
                    Some(cr) => cr + 2,
                    None => return Ok(None),
                },
                b':' => match self.header(buf, start)? {
                    Some((_, next)) => next,
                    None => return Ok(None),
                },
                b'$' => {
                    let Some((len, body)) = self.header(buf, start)? else {
                        return Ok(None);
                    };
                    match len {
                        -1 => body,
                        len if len < 0 => return Err(err(start, "negative bulk length")),
                        len => {
                            let Some((end, stop)) = usize::try_from(len)
                                .ok()
                                .and_then(|len| body.checked_add(len))
                                .and_then(|end| Some((end, end.checked_add(2)?)))
                            else {
                                return Err(err(start, "bulk length out of range"));
                            };
                            if buf.len() < stop {
                                return Ok(None);
                            }
                            if &buf[end..stop] != b"\r\n" {
                                return Err(err(end, "bulk string not followed by CRLF"));
                            }
                            stop
                        }
                    }
                }
                b'*' => {
                    let Some((count, body)) = self.header(buf, start)? else {
                        return Ok(None);
                    };
                    self.pos = body;
                    self.searched = 0;
                    match count {
                        -1 | 0 => body,
                        count if count < 0 => return Err(err(start, "negative array length")),
                        count => {
                            if self.pending.len() >= MAX_DEPTH {
                                return Err(err(start, "arrays nested too deeply"));
                            }
                            self.pending.push(count.unsigned_abs());
                            continue;
                        }
                    }
                }
                _ => return Err(err(start, "not a RESP2 type byte")),
            };
            self.pos = next;
            self.searched = 0;
            if self.element_done() {
                let len = self.pos;
                *self = FrameScan::default();
                return Ok(Some(len));
            }
        }
    }

    /// Counts one finished element against the open arrays; true when the
    /// whole frame is finished.
    fn element_done(&mut self) -> bool {
        while let Some(left) = self.pending.last_mut() {
            *left -= 1;
            if *left > 0 {
                return false;
            }
            self.pending.pop();
        }
        true
    }

    /// Parses a `<type><integer>\r\n` header at `start`: the integer and the
    /// offset just past the CRLF.
    fn header(&mut self, buf: &[u8], start: usize) -> Result<Option<(i64, usize)>, ScanError> {
        let Some(cr) = self.find_line_end(buf, start + 1, MAX_HEADER_LINE)? else {
            return Ok(None);
        };
        let value = parse_int(&buf[start + 1..cr]).ok_or_else(|| err(start, "header is not a decimal integer"))?;
        Ok(Some((value, cr + 2)))
    }

    /// Offset of the `\r` ending the line that starts at `from`.
    fn find_line_end(&mut self, buf: &[u8], from: usize, max_len: usize) -> Result<Option<usize>, ScanError> {
        let search_from = from.max(self.searched);
        let found = buf.get(search_from..).and_then(|rest| rest.iter().position(|&b| b == b'\n'));
        match found {
            Some(i) => {
                let lf = search_from + i;
                if lf == from || buf[lf - 1] != b'\r' {
                    return Err(err(lf, "line ends in LF without CR"));
                }
                let cr = lf - 1;
                if cr - from > max_len {
                    return Err(err(from, "header line too long"));
                }
                Ok(Some(cr))
            }
            None => {
                if buf.len().saturating_sub(from) > max_len.saturating_add(1) {
                    return Err(err(from, "header line too long"));
                }
                self.searched = buf.len().max(from);
                Ok(None)
            }
        }
    }
}

/// An integer of at most 18 digits (it cannot overflow), with or without
/// a `-`, and its CRLF, at the front of `rest`: its value and its length
/// with the CRLF. `None` for anything else, including an integer not
/// whole yet, which the general path then reads (or refuses).
#[inline]
pub(crate) fn short_int(rest: &[u8]) -> Option<(i64, usize)> {
    let (negative, first) = match rest.first()? {
        b'-' => (true, 1),
        _ => (false, 0),
    };
    let mut n: i64 = 0;
    let mut i = first;
    while let Some(&d) = rest.get(i) {
        if !d.is_ascii_digit() {
            break;
        }
        n = n * 10 + i64::from(d - b'0');
        i += 1;
        if i - first > 18 {
            return None;
        }
    }
    if i == first || rest.get(i..i + 2)? != b"\r\n" {
        return None;
    }
    Some((if negative { -n } else { n }, i + 2))
}

/// A decimal `i64` as RESP writes one (`-12`, `0`; a `+` sign is accepted
/// as Rust's parser does); `None` on anything else or on overflow. Every
/// header of every reply goes through here, twice: by hand, not through
/// `str::parse`, which first checks the text is UTF-8.
pub(crate) fn parse_int(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulate negatively so that i64::MIN fits.
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative {
        Some(n)
    } else {
        n.checked_neg()
    }
}

fn err(offset: usize, reason: &'static str) -> ScanError {
    ScanError { offset, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short cut reads what `parse_int` reads, or leaves it to it.
    #[test]
    fn short_integers_read_as_parse_int_reads_them() {
        for text in ["0", "7", "-7", "42", "-0", "123456789012345678", "-123456789012345678", "007"] {
            let line = format!("{text}\r\nrest");
            assert_eq!(
                short_int(line.as_bytes()),
                Some((parse_int(text.as_bytes()).unwrap(), text.len() + 2)),
                "{text}"
            );
        }
        for other in ["", "-", "\r\n", "-\r\n", "12", "12\r", "12\n", "1x\r\n", "+1\r\n", "1234567890123456789\r\n"] {
            assert_eq!(short_int(other.as_bytes()), None, "{other:?}");
        }
        let mut scan = FrameScan::default();
        assert_eq!(scan.complete_len(b"*3\r\n:1\r\n+OK\r\n:-12345\r\n"), Ok(Some(22)));
        assert_eq!(scan.complete_len(b"*2\r\n:1\r\n:12"), Ok(None));
        assert_eq!(scan.complete_len(b"*2\r\n:1\r\n:12\r\n"), Ok(Some(13)), "resumed");
        assert!(FrameScan::default().complete_len(b":1x\r\n").is_err());
    }

    fn scan_all(buf: &[u8]) -> Result<Option<usize>, ScanError> {
        FrameScan::default().complete_len(buf)
    }

    #[test]
    fn integers_parse_as_rust_parses_them() {
        for text in ["0", "-0", "+7", "42", "-42", "9223372036854775807", "-9223372036854775808"] {
            assert_eq!(parse_int(text.as_bytes()), text.parse::<i64>().ok(), "{text}");
        }
        for text in ["", "-", "+", "1a", " 1", "9223372036854775808", "-9223372036854775809", "--1", "1.5"] {
            assert_eq!(parse_int(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn complete_frames_report_their_length_and_ignore_what_follows() {
        for frame in [
            &b"+OK\r\n"[..],
            b"-ERR no\r\n",
            b":-42\r\n",
            b"$-1\r\n",
            b"$0\r\n\r\n",
            b"$3\r\na\r\n\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*2\r\n$1\r\na\r\n*2\r\n:1\r\n+x\r\n",
        ] {
            let mut buf = frame.to_vec();
            buf.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(scan_all(&buf), Ok(Some(frame.len())), "{frame:?}");
        }
    }

    #[test]
    fn every_strict_prefix_needs_more_bytes_when_fed_byte_by_byte() {
        let frame = b"*3\r\n$5\r\nhello\r\n*1\r\n:7\r\n+long simple string\r\n";
        let mut scan = FrameScan::default();
        for end in 0..frame.len() {
            assert_eq!(scan.complete_len(&frame[..end]), Ok(None), "prefix {end}");
        }
        assert_eq!(scan.complete_len(frame), Ok(Some(frame.len())));
    }

    #[test]
    fn foreign_protocols_are_rejected_at_the_first_byte() {
        assert_eq!(scan_all(b"HTTP/1.1 400 Bad Request\r\n"), Err(err(0, "not a RESP2 type byte")));
        assert_eq!(scan_all(b"SSH-2.0-OpenSSH"), Err(err(0, "not a RESP2 type byte")));
    }

    #[test]
    fn malformed_headers_are_errors_not_waits() {
        assert!(scan_all(b"$abc\r\n").is_err());
        assert!(scan_all(b"$-2\r\n").is_err());
        assert!(scan_all(b"*-5\r\n").is_err());
        assert!(scan_all(b"$3\r\nabcXY").is_err());
        assert!(scan_all(b"+OK\n").is_err());
        assert!(scan_all(&[b'$'; 64]).is_err());
    }

    #[test]
    fn huge_declared_lengths_only_wait_and_allocate_nothing() {
        assert_eq!(scan_all(b"$9223372036854775000\r\nabc"), Ok(None));
        assert_eq!(scan_all(b"*9223372036854775000\r\n:1\r\n"), Ok(None));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert_eq!(scan_all(&deep), Err(err(MAX_DEPTH * 4, "arrays nested too deeply")));
        let mut ok = b"*1\r\n".repeat(MAX_DEPTH);
        ok.extend_from_slice(b":1\r\n");
        assert_eq!(scan_all(&ok), Ok(Some(ok.len())));
    }

    mod agrees_with_the_codec {
        use crate::resp::codec_frames::frame;
        use bytes::BytesMut;
        use proptest::prelude::*;
        use redis_protocol::resp2::encode::extend_encode;

        use super::FrameScan;

        proptest! {
            /// Fed a frame plus the start of the next one in arbitrary
            /// pieces, the scanner waits until the first frame is whole and
            /// then reports exactly the length the encoder produced.
            #[test]
            fn on_frame_length(first in frame(), second in frame(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8)) {
                let mut buf = BytesMut::new();
                extend_encode(&mut buf, &first, false).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let first_len = buf.len();
                extend_encode(&mut buf, &second, false).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let mut ends: Vec<usize> = cuts.iter().map(|i| i.index(buf.len() + 1)).collect();
                ends.push(buf.len());
                ends.sort_unstable();
                let mut scan = FrameScan::default();
                for end in ends {
                    let got = scan.complete_len(&buf[..end]);
                    if end < first_len {
                        prop_assert_eq!(got, Ok(None));
                    } else {
                        prop_assert_eq!(got, Ok(Some(first_len)));
                        break;
                    }
                }
            }
        }
    }
}
