//! The task file as written: serde structs that mirror the TOML text, with
//! the span of every value so that each later complaint can name its line.
//!
//! Loading is two passes over one parse. First [`check_keys`] walks the TOML
//! tree and rejects unknown keys with the section, the line and the keys
//! that section accepts; the lists come from the serde structs themselves
//! ([`fields_of`]), so they cannot drift from what is deserialized. Then
//! serde fills the structs below; `deny_unknown_fields` stays on as a second
//! guard. Required keys are `Option`s here so that their absence is reported
//! by `load` in words, not by serde.
//!
//! Password values are read as any TOML value and checked by hand: serde's
//! type errors quote the value they reject, and that value is a password.

use std::{collections::BTreeMap, ops::Range};

use serde::{
    de::{self, DeserializeOwned, Visitor},
    Deserialize, Deserializer,
};
use toml::{
    de::{DeTable, DeValue},
    Spanned,
};

use super::error::{ConfigError, ErrorKind};

/// The whole task file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTask {
    pub name: Option<Spanned<String>>,
    pub state_dir: Option<Spanned<String>>,
    /// `[[source]]` tables.
    #[serde(default)]
    pub source: Vec<Spanned<RawSource>>,
    pub twemproxy: Option<Spanned<RawTwemproxy>>,
    pub destination: Option<Spanned<RawServer>>,
    pub sync: Option<Spanned<RawSync>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub name: Option<Spanned<String>>,
    pub addr: Option<Spanned<String>>,
    pub password: Option<Spanned<toml::Value>>,
    pub password_env: Option<Spanned<String>>,
}

/// `[destination]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub addr: Option<Spanned<String>>,
    pub password: Option<Spanned<toml::Value>>,
    pub password_env: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTwemproxy {
    pub config: Option<Spanned<String>>,
    pub pool: Option<Spanned<String>>,
    pub password: Option<Spanned<toml::Value>>,
    pub password_env: Option<Spanned<String>>,
    /// Per-server password overrides, keyed by source name.
    #[serde(default)]
    pub servers: BTreeMap<String, Spanned<RawPassword>>,
}

/// `[twemproxy.servers.<name>]`: one server's password.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPassword {
    pub password: Option<Spanned<toml::Value>>,
    pub password_env: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    pub conflict: Option<Spanned<String>>,
    pub databases: Option<Spanned<Vec<Spanned<u32>>>>,
    pub flush: Option<Spanned<String>>,
    pub heartbeat_key: Option<Spanned<String>>,
    pub heartbeat_ms: Option<Spanned<u64>>,
    pub big_key_bytes: Option<Spanned<u64>>,
    /// Source DB (as a TOML key) to destination DB.
    pub db_map: Option<Spanned<BTreeMap<String, Spanned<u32>>>>,
    pub checkpoint: Option<Spanned<String>>,
    pub full_syncs_per_host: Option<Spanned<u32>>,
    pub max_keys_per_sec: Option<Spanned<u64>>,
    pub max_bytes_per_sec: Option<Spanned<u64>>,
    pub modules: Option<Spanned<String>>,
}

/// Byte offsets to 1-based line numbers.
pub(super) struct Lines<'a> {
    text: &'a str,
}

impl<'a> Lines<'a> {
    pub fn new(text: &'a str) -> Lines<'a> {
        Lines { text }
    }

    pub fn of(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }
}

/// Parses `text` and reads it into a [`RawTask`], reporting syntax errors,
/// unknown keys and TOML type errors with their lines.
pub(super) fn parse(text: &str, file: &std::path::Path) -> Result<RawTask, ConfigError> {
    let lines = Lines::new(text);
    let syntax = |e: toml::de::Error| {
        let span = e.span().unwrap_or(0..0);
        let mut message = e.message().to_owned();
        // The span of this one is the key (never a value, so never a password).
        if message == "duplicate key" {
            if let Some(key) = text.get(span.clone()) {
                message = format!("duplicate key `{}`", key.trim_matches('"'));
            }
        }
        ConfigError::new(file, ErrorKind::Syntax { line: lines.of(span), message })
    };
    let root = DeTable::parse(text).map_err(syntax)?;
    check_keys(root.get_ref(), &lines).map_err(|kind| ConfigError::new(file, kind))?;
    let keys = KeyIndex::new(root.get_ref());
    RawTask::deserialize(toml::de::Deserializer::from(root)).map_err(|e| {
        let Some(span) = e.span() else {
            return ConfigError::new(file, ErrorKind::Incomplete { message: e.message().to_owned() });
        };
        let line = lines.of(span.clone());
        let message = match keys.at(span.start) {
            Some((section, "password")) => {
                format!("`password` in {section} must be a string")
            }
            Some((section, "source")) if section == TOP => {
                "`source` is written [[source]] (two brackets), one table per source".to_owned()
            }
            Some((section, key @ ("destination" | "sync" | "twemproxy"))) if section == TOP => {
                format!("`{key}` is written [{key}] (one bracket): a single table")
            }
            Some((section, key)) => format!("`{key}` in {section}: {}", e.message()),
            None => e.message().to_owned(),
        };
        ConfigError::new(file, ErrorKind::Syntax { line, message })
    })
}

const TOP: &str = "the top level";

/// Rejects keys that no section of the schema has.
fn check_keys(root: &DeTable<'_>, lines: &Lines<'_>) -> Result<(), ErrorKind> {
    check_table(root, TOP, fields_of::<RawTask>(), lines)?;
    for (key, value) in root {
        match (key.get_ref().as_ref(), value.get_ref()) {
            ("source", DeValue::Array(items)) => {
                for (n, item) in items.iter().enumerate() {
                    if let DeValue::Table(t) = item.get_ref() {
                        check_table(t, &format!("[[source]] #{}", n + 1), fields_of::<RawSource>(), lines)?;
                    }
                }
            }
            ("destination", DeValue::Table(t)) => check_table(t, "[destination]", fields_of::<RawServer>(), lines)?,
            ("sync", DeValue::Table(t)) => check_table(t, "[sync]", fields_of::<RawSync>(), lines)?,
            ("twemproxy", DeValue::Table(t)) => {
                check_table(t, "[twemproxy]", fields_of::<RawTwemproxy>(), lines)?;
                if let Some(DeValue::Table(servers)) = t.get("servers").map(Spanned::get_ref) {
                    for (name, value) in servers {
                        if let DeValue::Table(t) = value.get_ref() {
                            let section = format!("[twemproxy.servers.{}]", toml_key(name.get_ref()));
                            check_table(t, &section, fields_of::<RawPassword>(), lines)?;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_table(
    table: &DeTable<'_>,
    section: &str,
    expected: &[&'static str],
    lines: &Lines<'_>,
) -> Result<(), ErrorKind> {
    match table.keys().find(|k| !expected.contains(&k.get_ref().as_ref())) {
        Some(key) => Err(ErrorKind::UnknownKey {
            key: key.get_ref().to_string(),
            section: section.to_owned(),
            line: lines.of(key.span()),
            expected: expected.to_vec(),
        }),
        None => Ok(()),
    }
}

/// `key` as a TOML key: bare when it can be, else quoted.
pub(super) fn toml_key(key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        toml::Value::String(key.to_owned()).to_string()
    }
}

/// Which key (and in which section) a byte offset belongs to, so that a
/// serde error, which knows only a span, can name its key.
struct KeyIndex {
    /// `(section, key, span of key and value)`, outer tables first.
    entries: Vec<(String, String, Range<usize>)>,
}

impl KeyIndex {
    fn new(root: &DeTable<'_>) -> KeyIndex {
        let mut entries = Vec::new();
        collect(root, TOP, &mut entries);
        KeyIndex { entries }
    }

    /// The innermost key whose text contains `offset`.
    fn at(&self, offset: usize) -> Option<(&str, &str)> {
        self.entries
            .iter()
            .filter(|(_, _, span)| span.contains(&offset))
            .min_by_key(|(_, _, span)| span.len())
            .map(|(section, key, _)| (section.as_str(), key.as_str()))
    }
}

fn collect(table: &DeTable<'_>, section: &str, out: &mut Vec<(String, String, Range<usize>)>) {
    for (key, value) in table {
        let name = key.get_ref().to_string();
        let (k, v) = (key.span(), value.span());
        out.push((section.to_owned(), name.clone(), k.start.min(v.start)..k.end.max(v.end)));
        let inner = match section {
            TOP => format!("[{}]", toml_key(&name)),
            _ => format!("{}.{}]", section.trim_end_matches(']'), toml_key(&name)),
        };
        match value.get_ref() {
            DeValue::Table(t) => collect(t, &inner, out),
            DeValue::Array(items) => {
                for (n, item) in items.iter().enumerate() {
                    if let DeValue::Table(t) = item.get_ref() {
                        collect(t, &format!("[[{name}]] #{}", n + 1), out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The field names serde's derive gives a struct, in declaration order:
/// asks `T` to deserialize itself from a probe that records the list it
/// passes to `deserialize_struct` and then fails.
pub(super) fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probe only"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
            unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _probe_always_fails = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_lists_serde_names_in_order() {
        assert_eq!(
            fields_of::<RawSync>(),
            [
                "conflict",
                "databases",
                "flush",
                "heartbeat_key",
                "heartbeat_ms",
                "big_key_bytes",
                "db_map",
                "checkpoint",
                "full_syncs_per_host",
                "max_keys_per_sec",
                "max_bytes_per_sec",
                "modules"
            ]
        );
        assert_eq!(fields_of::<RawServer>(), ["addr", "password", "password_env", "kind"]);
    }

    #[test]
    fn lines_count_from_one() {
        let lines = Lines::new("a\nb\n\nc");
        assert_eq!([lines.of(0..1), lines.of(2..3), lines.of(5..6), lines.of(99..100)], [1, 2, 4, 4]);
    }

    #[test]
    fn key_index_finds_the_innermost_key() {
        let text = "name = \"x\"\n[sync]\nheartbeat_ms = \"abc\"\n[[source]]\naddr = 5\n";
        let root = DeTable::parse(text).unwrap();
        let index = KeyIndex::new(root.get_ref());
        let at = |needle: &str| index.at(text.find(needle).unwrap());
        assert_eq!(at("\"abc\""), Some(("[sync]", "heartbeat_ms")));
        assert_eq!(at("5"), Some(("[[source]] #1", "addr")));
        assert_eq!(at("\"x\""), Some((TOP, "name")));
    }
}
