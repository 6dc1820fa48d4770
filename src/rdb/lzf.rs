//! LZF decompression (the format Redis compresses RDB strings with), whole
//! and streaming.
//!
//! The format: a control byte below 32 starts a literal run of `ctrl + 1`
//! bytes; otherwise it is a back reference of `(ctrl >> 5) + 2` bytes (a
//! length of 7 takes an extra byte) at distance `((ctrl & 31) << 8) + next + 1`
//! into the output, so a streaming decoder needs only the last 8 KiB.

/// Largest distance a back reference can reach.
const WINDOW: usize = 8192;

/// The most output `clen` compressed bytes can expand to: a 3-byte back
/// reference yields at most 264 bytes.
pub fn max_output_len(clen: usize) -> usize {
    clen.saturating_mul(88).saturating_add(8)
}

/// Decompress a whole LZF block that must expand to exactly `ulen` bytes.
pub fn decompress(input: &[u8], ulen: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(ulen.min(max_output_len(input.len())));
    let used = decode(input, &mut out, 0, ulen, true)?;
    if used != input.len() || out.len() != ulen {
        return Err(format!(
            "decompressed to {} bytes using {used} of {} input bytes, expected {ulen} bytes",
            out.len(),
            input.len()
        ));
    }
    Ok(out)
}

/// Decode whole tokens from `input` onto `out`, where `out[..history]` is
/// earlier output that back references may reach. Stops at the first token
/// that is not entirely in `input` (unless `last`, where that is an error) or
/// when the output reaches `limit` bytes past `history`. Returns the input
/// bytes consumed.
fn decode(input: &[u8], out: &mut Vec<u8>, history: usize, limit: usize, last: bool) -> Result<usize, String> {
    let mut ip = 0;
    while ip < input.len() {
        let ctrl = usize::from(input[ip]);
        if ctrl < 32 {
            let run = ctrl + 1;
            if ip + 1 + run > input.len() {
                if last {
                    return Err(format!("literal run of {run} bytes overruns the input at {ip}"));
                }
                break;
            }
            if out.len() - history + run > limit {
                return Err(format!("literal run at input byte {ip} exceeds the declared length"));
            }
            out.extend_from_slice(&input[ip + 1..ip + 1 + run]);
            ip += 1 + run;
        } else {
            let mut len = ctrl >> 5;
            let mut p = ip + 1;
            if len == 7 {
                match input.get(p) {
                    Some(&b) => len += usize::from(b),
                    None if last => return Err("back reference truncated".into()),
                    None => break,
                }
                p += 1;
            }
            let low = match input.get(p) {
                Some(&b) => usize::from(b),
                None if last => return Err("back reference truncated".into()),
                None => break,
            };
            p += 1;
            let dist = ((ctrl & 0x1f) << 8) + low + 1;
            let len = len + 2;
            if dist > out.len() {
                return Err(format!("back reference at input byte {ip} reaches before the start of the output"));
            }
            if out.len() - history + len > limit {
                return Err(format!("back reference at input byte {ip} exceeds the declared length"));
            }
            let from = out.len() - dist;
            if dist >= len {
                out.extend_from_within(from..from + len);
            } else {
                // Overlapping copy: each byte may be one just written.
                for i in 0..len {
                    let b = out[from + i];
                    out.push(b);
                }
            }
            ip = p;
        }
    }
    Ok(ip)
}

/// Streaming decoder for an LZF string too large to hold whole.
#[derive(Debug)]
pub struct LzfStream {
    window: Vec<u8>,
    produced: u64,
    ulen: u64,
}

impl LzfStream {
    pub fn new(ulen: u64) -> Self {
        LzfStream { window: Vec::new(), produced: 0, ulen }
    }

    /// Decode whole tokens from `input`; returns (input consumed, new output).
    /// `last` means `input` holds the rest of the compressed data.
    pub fn feed(&mut self, input: &[u8], last: bool) -> Result<(usize, Vec<u8>), String> {
        let history = self.window.len();
        let mut out = std::mem::take(&mut self.window);
        let remaining = usize::try_from(self.ulen - self.produced).unwrap_or(usize::MAX);
        let used = decode(input, &mut out, history, remaining, last)?;
        let new = out[history..].to_vec();
        let keep_from = out.len().saturating_sub(WINDOW);
        out.drain(..keep_from);
        self.window = out;
        self.produced += new.len() as u64;
        Ok((used, new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // "aaaaaaaaaa" compressed by LZF: a literal 'a' then a back reference of 9 at distance 1.
    const AS: &[u8] = &[0x00, b'a', 0xe0, 0x00, 0x00];

    #[test]
    fn overlapping_back_reference() {
        // ctrl 0xe0: len 7 + extra 0 = 7, +2 = 9, dist = 0 + 1.
        assert_eq!(decompress(AS, 10).unwrap(), b"aaaaaaaaaa");
    }

    #[test]
    fn wrong_length_is_an_error() {
        assert!(decompress(AS, 11).is_err());
        assert!(decompress(AS, 9).is_err());
    }

    #[test]
    fn reference_before_start_is_an_error() {
        assert!(decompress(&[0x20, 0x05], 3).is_err());
    }

    #[test]
    fn streaming_matches_whole() {
        let mut s = LzfStream::new(10);
        let (n1, a) = s.feed(&AS[..3], false).unwrap();
        assert_eq!((n1, a.as_slice()), (2, &b"a"[..]));
        let (n2, b) = s.feed(&AS[2..], true).unwrap();
        assert_eq!(n2, 3);
        assert_eq!(b, b"aaaaaaaaa");
    }
}
