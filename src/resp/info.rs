//! The `INFO` reply, read in one place.
//!
//! An `INFO` reply is text: `# Section` headings, then `field:value` lines
//! (CRLF-terminated). Everything the tool reads of it goes through here:
//!
//! * [`info_field`]: one field, from any section (`master_repl_offset`,
//!   `rdb_bgsave_in_progress`, `redis_version`, `run_id`…);
//! * [`Info`]: every field at once, for a caller that reads many (the probe);
//! * [`parse_keyspace`]: the `dbN:keys=..,expires=..` lines of `# Keyspace`;
//! * [`commandstats`]: the calls per command of `INFO commandstats`.
//!
//! A reply that is not UTF-8 has no fields. Values are trimmed; a field name
//! is everything before the line's first `:`.

use std::collections::{BTreeMap, HashMap};

/// One `dbN:keys=..,expires=..` line of `INFO keyspace`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbKeys {
    pub keys: u64,
    pub expires: u64,
}

/// The `field:value` lines of an `INFO` reply, in order, section headings
/// left out.
pub fn fields(raw: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    std::str::from_utf8(raw)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k, v.trim()))
}

/// A field of an `INFO` reply (the first line of that name).
pub fn info_field<'a>(info: &'a [u8], name: &str) -> Option<&'a str> {
    fields(info).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// An `INFO` reply as `field → value`.
#[derive(Debug, Clone, Default)]
pub struct Info<'a> {
    fields: HashMap<&'a str, &'a str>,
}

impl<'a> Info<'a> {
    pub fn parse(raw: &'a [u8]) -> Info<'a> {
        Info { fields: fields(raw).collect() }
    }

    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.fields.get(name).copied()
    }

    /// A field as an unsigned number; `None` when missing or not a number.
    pub fn num(&self, name: &str) -> Option<u64> {
        self.get(name)?.parse().ok()
    }

    /// Keys per DB, from the `dbN:keys=..,expires=..` fields.
    pub fn keyspace(&self) -> BTreeMap<u32, DbKeys> {
        self.fields.iter().filter_map(|(k, v)| keyspace_line(k, v)).collect()
    }
}

/// A `dbN` field's DB and counts (`keys=12,expires=3,avg_ttl=0`); `None`
/// for any other field.
fn keyspace_line(name: &str, value: &str) -> Option<(u32, DbKeys)> {
    let db = name.strip_prefix("db")?.parse().ok()?;
    let field = |name: &str| value.split(',').find_map(|f| f.strip_prefix(name)?.parse().ok());
    Some((db, DbKeys { keys: field("keys=")?, expires: field("expires=").unwrap_or(0) }))
}

/// Keys per DB of an `INFO keyspace` reply (or of any `INFO` holding that
/// section).
pub fn parse_keyspace(raw: &[u8]) -> BTreeMap<u32, DbKeys> {
    Info::parse(raw).keyspace()
}

/// Calls per command of `INFO commandstats` (`cmdstat_set:calls=12,…`),
/// names in lower case (`function|load` for subcommands). Bytes that are
/// not UTF-8 do not hide the other lines.
pub fn commandstats(raw: &[u8]) -> BTreeMap<String, u64> {
    String::from_utf8_lossy(raw)
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|f| f.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields() {
        let info = b"# Replication\r\nrole:master\r\nmaster_repl_offset:4242\r\nsecond_repl_offset:-1\r\n";
        assert_eq!(info_field(info, "master_repl_offset"), Some("4242"));
        assert_eq!(info_field(info, "role"), Some("master"));
        assert_eq!(info_field(info, "repl"), None);
        assert_eq!(info_field(b"run_id: abc \r\n", "run_id"), Some("abc"));
        assert_eq!(info_field(b"a:b:c\r\n", "a"), Some("b:c"));
        assert_eq!(info_field(b"# Server\r\n", "# Server"), None);
        assert_eq!(info_field(b"role:\xff\r\n", "role"), None);
    }

    #[test]
    fn info_fields_and_keyspace() {
        let raw = b"# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n# Keyspace\r\ndb0:keys=12,expires=3,avg_ttl=5\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n";
        let info = Info::parse(raw);
        assert_eq!(info.get("redis_version"), Some("7.0.15"));
        assert_eq!(info.num("redis_version"), None);
        let ks = info.keyspace();
        assert_eq!(ks[&0], DbKeys { keys: 12, expires: 3 });
        assert_eq!(ks[&3].keys, 1);
        assert_eq!(ks.len(), 2);
        assert_eq!(parse_keyspace(raw), ks);
        assert!(parse_keyspace(b"# Keyspace\r\n").is_empty());
        // A line without keys= is not a DB; one without expires= counts none.
        assert_eq!(
            parse_keyspace(b"db1:expires=3\r\ndb2:keys=4\r\n"),
            BTreeMap::from([(2, DbKeys { keys: 4, expires: 0 })])
        );
    }

    #[test]
    fn calls_per_command() {
        let raw = b"# Commandstats\r\ncmdstat_set:calls=12,usec=30,usec_per_call=2.50\r\n\
                    cmdstat_function|load:calls=1,usec=9\r\ncmdstat_get:usec=1\r\nnot_a_stat:calls=3\r\n";
        let used = commandstats(raw);
        assert_eq!(used, BTreeMap::from([("function|load".to_owned(), 1), ("set".to_owned(), 12)]));
    }
}
