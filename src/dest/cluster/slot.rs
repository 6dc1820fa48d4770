//! Redis Cluster's key → slot function: CRC16 (XMODEM: polynomial 0x1021,
//! initial value 0) of the key's hash tag, modulo 16384. The hash tag is the
//! part between the first `{` and the first `}` after it, when that part is
//! not empty; otherwise the whole key is hashed.
//!
//! Also the tags the tool uses to put one of its own keys in a chosen slot
//! (each slot's checkpoint key, see the cluster layout).

pub const SLOTS: usize = 16384;

/// CRC16/XMODEM, table-driven.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc = (crc << 8) ^ TABLE[usize::from(((crc >> 8) as u8) ^ b)];
    }
    crc
}

const TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// The part of `key` that is hashed (see the module docs). A plain search:
/// keys are short, and for them `memchr`'s dispatch cost more than the
/// search (this runs for every key written into a cluster).
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(len) = rest.iter().position(|&b| b == b'}') {
            if len > 0 {
                return &rest[..len];
            }
        }
    }
    key
}

/// The slot of `key`.
pub fn slot_of(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) & (SLOTS as u16 - 1)
}

/// For every slot, a short tag whose hash lands in it: `{tag}` in a key
/// puts the key in that slot. Found by counting up in base 36 (every slot
/// is reached within a few hundred thousand candidates); computed once.
pub fn slot_tags() -> &'static [String] {
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TAGS.get_or_init(|| {
        let mut tags: Vec<Option<String>> = vec![None; SLOTS];
        let mut left = SLOTS;
        let mut n: u64 = 0;
        while left > 0 {
            let tag = base36(n);
            let slot = usize::from(slot_of(tag.as_bytes()));
            if tags[slot].is_none() {
                tags[slot] = Some(tag);
                left -= 1;
            }
            n += 1;
        }
        tags.into_iter().map(|t| t.unwrap_or_default()).collect()
    })
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_cluster_specification() {
        // The check value of CRC16/XMODEM, and the example of the cluster spec.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot_of(b"123456789"), 0x31C3 & 16383);
    }

    #[test]
    fn known_slots_as_redis_reports_them() {
        // CLUSTER KEYSLOT on Redis 7.0.
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"bar"), 5061);
        assert_eq!(slot_of(b"somekey"), 11058);
        assert_eq!(slot_of(b""), 0);
    }

    #[test]
    fn hash_tags_follow_the_first_braces_with_content() {
        assert_eq!(hash_tag(b"{user1000}.following"), b"user1000");
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"{user1000}.followers"));
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"no}open{"), b"no}open{");
    }

    #[test]
    fn every_slot_has_a_tag_that_lands_in_it() {
        let tags = slot_tags();
        assert_eq!(tags.len(), SLOTS);
        for (slot, tag) in tags.iter().enumerate() {
            assert_eq!(usize::from(slot_of(format!("x:{{{tag}}}").as_bytes())), slot);
            assert!(tag.len() <= 4, "{tag}");
        }
    }
}
