//! Decoders for the compact encodings Redis stores inside an RDB string:
//! ziplist (Redis 2.6–6.2), listpack (5.0 streams, 7.0 on), intset and
//! zipmap (before 2.6). Each walks a blob and hands out its elements in
//! order; any inconsistency is an error naming the byte inside the blob.

/// One element of a compact encoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Item<'a> {
    Str(&'a [u8]),
    Int(i64),
}

impl Item<'_> {
    pub fn as_int(&self) -> Option<i64> {
        match *self {
            Item::Int(i) => Some(i),
            Item::Str(s) => std::str::from_utf8(s).ok()?.parse().ok(),
        }
    }
}

fn slice(b: &[u8], from: usize, n: usize, what: &str) -> Result<(), String> {
    if from.checked_add(n).is_none_or(|end| end > b.len()) {
        return Err(format!("{what} at byte {from} runs past the end ({} bytes)", b.len()));
    }
    Ok(())
}

fn le(b: &[u8], at: usize, n: usize) -> u64 {
    let mut v = 0u64;
    for i in (0..n).rev() {
        v = (v << 8) | u64::from(b[at + i]);
    }
    v
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// Walk a ziplist: `zlbytes u32, zltail u32, zllen u16, entries…, 0xff`.
pub fn ziplist<'a>(b: &'a [u8], mut f: impl FnMut(Item<'a>) -> Result<(), String>) -> Result<(), String> {
    if b.len() < 11 {
        return Err(format!("ziplist of {} bytes is shorter than its header and end mark", b.len()));
    }
    let total = le(b, 0, 4) as usize;
    if total != b.len() {
        return Err(format!("ziplist header says {total} bytes but the blob holds {}", b.len()));
    }
    let declared = le(b, 8, 2);
    let mut p = 10;
    let mut count = 0u64;
    loop {
        slice(b, p, 1, "ziplist entry")?;
        if b[p] == 0xff {
            break;
        }
        // prevlen: 1 byte, or 0xfe + 4 bytes.
        p += if b[p] == 0xfe { 5 } else { 1 };
        slice(b, p, 1, "ziplist entry encoding")?;
        let enc = b[p];
        let at = p;
        let item = match enc >> 6 {
            0 => {
                let n = usize::from(enc & 0x3f);
                p += 1;
                slice(b, p, n, "ziplist string")?;
                Item::Str(&b[p..p + n])
            }
            1 => {
                slice(b, p, 2, "ziplist 14-bit length")?;
                let n = (usize::from(enc & 0x3f) << 8) | usize::from(b[p + 1]);
                p += 2;
                slice(b, p, n, "ziplist string")?;
                Item::Str(&b[p..p + n])
            }
            2 => {
                slice(b, p, 5, "ziplist 32-bit length")?;
                let n = u32::from_be_bytes([b[p + 1], b[p + 2], b[p + 3], b[p + 4]]) as usize;
                p += 5;
                slice(b, p, n, "ziplist string")?;
                Item::Str(&b[p..p + n])
            }
            _ => {
                p += 1;
                let n = match enc {
                    0xc0 => 2,
                    0xd0 => 4,
                    0xe0 => 8,
                    0xf0 => 3,
                    0xfe => 1,
                    0xf1..=0xfd => 0,
                    _ => return Err(format!("invalid ziplist entry encoding {enc:#04x} at byte {at}")),
                };
                slice(b, p, n, "ziplist integer")?;
                let i = match n {
                    0 => i64::from(enc & 0x0f) - 1,
                    8 => le(b, p, 8) as i64,
                    _ => sign_extend(le(b, p, n), (n * 8) as u32),
                };
                p += n;
                Item::Int(i)
            }
        };
        if let Item::Str(s) = item {
            p += s.len();
        }
        count += 1;
        f(item)?;
    }
    if p + 1 != b.len() {
        return Err(format!("ziplist end mark at byte {p} but the blob holds {} bytes", b.len()));
    }
    if declared != 0xffff && declared != count {
        return Err(format!("ziplist header says {declared} entries but holds {count}"));
    }
    Ok(())
}

/// Walk a listpack: `total u32, count u16, entries…, 0xff`; each entry is
/// encoding + data + a back-length of 1–5 bytes.
pub fn listpack<'a>(b: &'a [u8], mut f: impl FnMut(Item<'a>) -> Result<(), String>) -> Result<(), String> {
    if b.len() < 7 {
        return Err(format!("listpack of {} bytes is shorter than its header and end mark", b.len()));
    }
    let total = le(b, 0, 4) as usize;
    if total != b.len() {
        return Err(format!("listpack header says {total} bytes but the blob holds {}", b.len()));
    }
    let declared = le(b, 4, 2);
    let mut p = 6;
    let mut count = 0u64;
    loop {
        slice(b, p, 1, "listpack entry")?;
        let enc = b[p];
        if enc == 0xff {
            break;
        }
        let start = p;
        let (item, len) = if enc & 0x80 == 0 {
            (Item::Int(i64::from(enc & 0x7f)), 1)
        } else if enc & 0xc0 == 0x80 {
            let n = usize::from(enc & 0x3f);
            slice(b, p + 1, n, "listpack string")?;
            (Item::Str(&b[p + 1..p + 1 + n]), 1 + n)
        } else if enc & 0xe0 == 0xc0 {
            slice(b, p, 2, "listpack 13-bit integer")?;
            let v = (u64::from(enc & 0x1f) << 8) | u64::from(b[p + 1]);
            (Item::Int(sign_extend(v, 13)), 2)
        } else if enc & 0xf0 == 0xe0 {
            slice(b, p, 2, "listpack 12-bit length")?;
            let n = (usize::from(enc & 0x0f) << 8) | usize::from(b[p + 1]);
            slice(b, p + 2, n, "listpack string")?;
            (Item::Str(&b[p + 2..p + 2 + n]), 2 + n)
        } else {
            match enc {
                0xf0 => {
                    slice(b, p, 5, "listpack 32-bit length")?;
                    let n = le(b, p + 1, 4) as usize;
                    slice(b, p + 5, n, "listpack string")?;
                    (Item::Str(&b[p + 5..p + 5 + n]), 5 + n)
                }
                0xf1 => {
                    slice(b, p, 3, "listpack int16")?;
                    (Item::Int(sign_extend(le(b, p + 1, 2), 16)), 3)
                }
                0xf2 => {
                    slice(b, p, 4, "listpack int24")?;
                    (Item::Int(sign_extend(le(b, p + 1, 3), 24)), 4)
                }
                0xf3 => {
                    slice(b, p, 5, "listpack int32")?;
                    (Item::Int(sign_extend(le(b, p + 1, 4), 32)), 5)
                }
                0xf4 => {
                    slice(b, p, 9, "listpack int64")?;
                    (Item::Int(le(b, p + 1, 8) as i64), 9)
                }
                _ => return Err(format!("invalid listpack entry encoding {enc:#04x} at byte {start}")),
            }
        };
        let backlen = match len {
            0..=127 => 1,
            128..=16382 => 2,
            16383..=2097150 => 3,
            2097151..=268435454 => 4,
            _ => 5,
        };
        p = start + len;
        slice(b, p, backlen, "listpack back-length")?;
        p += backlen;
        count += 1;
        f(item)?;
    }
    if p + 1 != b.len() {
        return Err(format!("listpack end mark at byte {p} but the blob holds {} bytes", b.len()));
    }
    if declared != 0xffff && declared != count {
        return Err(format!("listpack header says {declared} entries but holds {count}"));
    }
    Ok(())
}

/// Walk an intset: `encoding u32 (2, 4 or 8), length u32, integers…` (little-endian).
pub fn intset(b: &[u8], mut f: impl FnMut(i64) -> Result<(), String>) -> Result<(), String> {
    if b.len() < 8 {
        return Err(format!("intset of {} bytes is shorter than its header", b.len()));
    }
    let width = le(b, 0, 4) as usize;
    let count = le(b, 4, 4) as usize;
    if !matches!(width, 2 | 4 | 8) {
        return Err(format!("intset integer width {width} is not 2, 4 or 8"));
    }
    if count.checked_mul(width).and_then(|n| n.checked_add(8)) != Some(b.len()) {
        return Err(format!("intset says {count} integers of {width} bytes but the blob holds {} bytes", b.len()));
    }
    for i in 0..count {
        let at = 8 + i * width;
        f(sign_extend(le(b, at, width), (width * 8) as u32))?;
    }
    Ok(())
}

/// Walk a zipmap (hashes before Redis 2.6): `count u8`, then
/// `len key len free value [free bytes]` pairs, then 0xff.
pub fn zipmap<'a>(b: &'a [u8], mut f: impl FnMut(&'a [u8], &'a [u8]) -> Result<(), String>) -> Result<(), String> {
    slice(b, 0, 1, "zipmap header")?;
    let mut p = 1;
    let read_len = |p: &mut usize| -> Result<Option<usize>, String> {
        slice(b, *p, 1, "zipmap length")?;
        let first = b[*p];
        match first {
            0..=253 => {
                *p += 1;
                Ok(Some(usize::from(first)))
            }
            254 => {
                slice(b, *p, 5, "zipmap 32-bit length")?;
                let n = le(b, *p + 1, 4) as usize;
                *p += 5;
                Ok(Some(n))
            }
            255 => Ok(None),
        }
    };
    while let Some(klen) = read_len(&mut p)? {
        slice(b, p, klen, "zipmap key")?;
        let key = &b[p..p + klen];
        p += klen;
        let Some(vlen) = read_len(&mut p)? else {
            return Err(format!("zipmap key at byte {p} has no value"));
        };
        slice(b, p, 1, "zipmap free byte")?;
        let free = usize::from(b[p]);
        p += 1;
        slice(b, p, vlen + free, "zipmap value")?;
        let value = &b[p..p + vlen];
        p += vlen + free;
        f(key, value)?;
    }
    if p + 1 != b.len() {
        return Err(format!("zipmap end mark at byte {p} but the blob holds {} bytes", b.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect_lp(b: &[u8]) -> Result<Vec<Item<'_>>, String> {
        let mut v = Vec::new();
        listpack(b, |i| {
            v.push(i);
            Ok(())
        })?;
        Ok(v)
    }

    #[test]
    fn listpack_small_values() {
        // total=13, count=3: 7-bit uint 5, 6-bit str "ab", 13-bit int -1.
        let b = [13, 0, 0, 0, 3, 0, 0x05, 0x01, 0x82, b'a', b'b', 0x03, 0xdf, 0xff, 0x02, 0xff];
        let b = {
            let mut v = b.to_vec();
            let n = v.len() as u32;
            v[..4].copy_from_slice(&n.to_le_bytes());
            v
        };
        assert_eq!(collect_lp(&b).unwrap(), vec![Item::Int(5), Item::Str(b"ab"), Item::Int(-1)]);
    }

    #[test]
    fn listpack_wrong_total_is_an_error() {
        assert!(collect_lp(&[99, 0, 0, 0, 0, 0, 0xff]).is_err());
    }

    #[test]
    fn intset_reads_signed() {
        let mut b = vec![2, 0, 0, 0, 2, 0, 0, 0];
        b.extend_from_slice(&(-2i16).to_le_bytes());
        b.extend_from_slice(&7i16.to_le_bytes());
        let mut v = Vec::new();
        intset(&b, |i| {
            v.push(i);
            Ok(())
        })
        .unwrap();
        assert_eq!(v, vec![-2, 7]);
    }

    #[test]
    fn intset_length_overflow_is_an_error() {
        let b = [8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(intset(&b, |_| Ok(())).is_err());
    }
}
