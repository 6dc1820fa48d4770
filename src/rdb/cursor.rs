//! A cursor over the bytes the parser has been given, with the RDB's
//! primitive encodings (lengths, strings, times, doubles).
//!
//! Every read either succeeds, or stops with `Stop::More(n)` ("the unit being
//! read needs `n` bytes from the start of the buffer") or `Stop::Bad` (the
//! bytes are impossible). Nothing here allocates by an untrusted length: a
//! huge length only makes the caller ask for more bytes, which a truncated
//! file never delivers.

use std::borrow::Cow;

use bytes::Bytes;

use super::consts::*;
use super::lzf;

/// Why a read could not complete.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The unit needs this many bytes counted from the start of the buffer.
    More(usize),
    /// Impossible bytes at this position of the buffer.
    Bad(usize, String),
}

pub(crate) type Res<T> = Result<T, Stop>;

pub(crate) fn bad<T>(pos: usize, what: impl Into<String>) -> Res<T> {
    Err(Stop::Bad(pos, what.into()))
}

/// A string as stored: borrowed raw bytes, an integer, or LZF-compressed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RStr<'a> {
    Raw(&'a [u8]),
    Int(i64),
    Lzf { data: &'a [u8], ulen: usize, at: usize },
}

impl<'a> RStr<'a> {
    /// The string's bytes, borrowed when stored raw.
    pub fn bytes(&self) -> Res<Cow<'a, [u8]>> {
        match *self {
            RStr::Raw(b) => Ok(Cow::Borrowed(b)),
            RStr::Int(i) => Ok(Cow::Owned(i.to_string().into_bytes())),
            RStr::Lzf { data, ulen, at } => {
                lzf::decompress(data, ulen).map(Cow::Owned).or_else(|e| bad(at, format!("LZF-compressed string: {e}")))
            }
        }
    }
}

/// A decoded length field: a plain length or a special-encoding marker.
enum Len {
    Plain(u64),
    Encoded(u8),
}

pub(crate) struct Cur<'a> {
    /// The input as shared bytes, so strings are handed out as slices of it
    /// rather than copies.
    base: &'a Bytes,
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Cur<'a> {
    /// A cursor over `base`, at byte `pos`.
    pub fn new(base: &'a Bytes, pos: usize) -> Self {
        Cur { base, buf: &base[..], pos }
    }

    /// A second cursor over the same input at the same place.
    pub fn fork(&self) -> Self {
        Cur { base: self.base, buf: self.buf, pos: self.pos }
    }

    /// A string's bytes as an owned handle: a slice of the input when stored
    /// raw (no copy), else the decoded bytes.
    pub fn to_bytes(&self, s: RStr<'a>) -> Res<Bytes> {
        Ok(match s {
            RStr::Raw(b) => self.base.slice_ref(b),
            other => match other.bytes()? {
                Cow::Borrowed(b) => self.base.slice_ref(b),
                Cow::Owned(v) => Bytes::from(v),
            },
        })
    }

    pub fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let end = self.pos.saturating_add(n);
        if end > self.buf.len() {
            return Err(Stop::More(end));
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn u8(&mut self) -> Res<u8> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(Stop::More(self.pos + 1)),
        }
    }

    fn array<const N: usize>(&mut self) -> Res<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn le_u32(&mut self) -> Res<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn le_i64(&mut self) -> Res<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub fn be_u64(&mut self) -> Res<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub fn le_f64(&mut self) -> Res<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    pub fn le_f32(&mut self) -> Res<f32> {
        Ok(f32::from_le_bytes(self.array()?))
    }

    /// Milliseconds since the epoch, 8 bytes little-endian (`rdbLoadMillisecondTime`).
    pub fn millis(&mut self) -> Res<i64> {
        self.le_i64()
    }

    fn raw_len(&mut self) -> Res<Len> {
        let first = self.u8()?;
        Ok(match first >> 6 {
            LEN_6BIT => Len::Plain(u64::from(first & 0x3f)),
            LEN_14BIT => Len::Plain((u64::from(first & 0x3f) << 8) | u64::from(self.u8()?)),
            LEN_ENCVAL => Len::Encoded(first & 0x3f),
            _ => match first {
                LEN_32BIT => Len::Plain(u64::from(u32::from_be_bytes(self.array()?))),
                LEN_64BIT => Len::Plain(self.be_u64()?),
                _ => return bad(self.pos - 1, format!("invalid length prefix byte {first:#04x}")),
            },
        })
    }

    /// A length (element count, DB number, …); a string encoding here is corrupt.
    pub fn length(&mut self, what: &str) -> Res<u64> {
        let at = self.pos;
        match self.raw_len()? {
            Len::Plain(n) => Ok(n),
            Len::Encoded(e) => bad(at, format!("expected {what} (a length) but found string encoding {e}")),
        }
    }

    /// A length used as an in-memory size; fails cleanly if it cannot fit.
    pub fn size(&mut self, what: &str) -> Res<usize> {
        let at = self.pos;
        let n = self.length(what)?;
        usize::try_from(n).or_else(|_| bad(at, format!("{what} {n} is larger than this machine can address")))
    }

    /// A string (`rdbGenericLoadStringObject`): raw, int-encoded or LZF.
    pub fn string(&mut self) -> Res<RStr<'a>> {
        let at = self.pos;
        match self.raw_len()? {
            Len::Plain(n) => {
                let n = usize::try_from(n).or_else(|_| bad(at, format!("string length {n} is impossible")))?;
                Ok(RStr::Raw(self.take(n)?))
            }
            Len::Encoded(ENC_INT8) => Ok(RStr::Int(i64::from(self.u8()? as i8))),
            Len::Encoded(ENC_INT16) => Ok(RStr::Int(i64::from(i16::from_le_bytes(self.array()?)))),
            Len::Encoded(ENC_INT32) => Ok(RStr::Int(i64::from(i32::from_le_bytes(self.array()?)))),
            Len::Encoded(ENC_LZF) => {
                let clen = self.size("LZF compressed length")?;
                let ulen = self.size("LZF uncompressed length")?;
                let data = self.take(clen)?;
                if ulen > lzf::max_output_len(clen) {
                    return bad(
                        at,
                        format!(
                            "LZF string claims {ulen} bytes from {clen} compressed bytes, which LZF cannot produce"
                        ),
                    );
                }
                Ok(RStr::Lzf { data, ulen, at })
            }
            Len::Encoded(e) => bad(at, format!("unknown string encoding {e}")),
        }
    }

    /// The header of a string, without its body: `(raw length)` or `(lzf clen, ulen)`.
    /// Used to stream strings too big to hold as one unit.
    pub fn string_header(&mut self) -> Res<StrHeader> {
        let save = self.pos;
        match self.raw_len()? {
            Len::Plain(n) => Ok(StrHeader::Raw(n)),
            Len::Encoded(ENC_LZF) => {
                let clen = self.length("LZF compressed length")?;
                let ulen = self.length("LZF uncompressed length")?;
                Ok(StrHeader::Lzf { clen, ulen })
            }
            Len::Encoded(_) => {
                self.pos = save;
                Ok(StrHeader::Small)
            }
        }
    }

    pub fn bytes_string(&mut self) -> Res<Bytes> {
        let s = self.string()?;
        self.to_bytes(s)
    }

    /// A double stored as text with a one-byte length (`rdbLoadDoubleValue`, zset type 3).
    pub fn text_double(&mut self) -> Res<f64> {
        let at = self.pos;
        match self.u8()? {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            n => {
                let s = self.take(usize::from(n))?;
                parse_f64(s)
                    .ok_or_else(|| Stop::Bad(at, format!("invalid score text {:?}", String::from_utf8_lossy(s))))
            }
        }
    }
}

/// What precedes a string's body.
pub(crate) enum StrHeader {
    Raw(u64),
    Lzf {
        clen: u64,
        ulen: u64,
    },
    /// Int-encoded: always small, read it as a whole unit.
    Small,
}

pub(crate) fn parse_f64(s: &[u8]) -> Option<f64> {
    let t = std::str::from_utf8(s).ok()?;
    match t {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => t.parse().ok(),
    }
}
