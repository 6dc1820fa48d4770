//! The task file: what to copy from where, loaded, validated and saved.
//!
//! A task file (TOML; the schema is in `docs/task-file.md`) becomes a [`TaskConfig`]
//! in three steps: `raw` parses the text into serde structs that keep every
//! value's span and rejects unknown keys; `load` turns those into the typed
//! config below, checking each value and reading what the file points at
//! (`password_env` variables, the nutcracker.yml of `[twemproxy]`, through
//! `nutcracker`); every complaint is a [`ConfigError`] naming the key and the
//! line. `save` writes a config back as commented TOML, atomically and
//! readable by its owner only.
//!
//! Passwords are [`Secret`]s: formatting a config (`{:?}`) never shows them.
//! A password is given as `password = "..."` or read at load time from the
//! variable named by `password_env` (an unset variable is an error).
//!
//! Sources come from `[[source]]` tables or, instead, from a twemproxy pool:
//! `[twemproxy] config = "<nutcracker.yml>"` (relative to the task file's
//! directory), `pool = "<name>"` (may be left out when the file has one
//! pool). Each `servers:` entry `host:port:weight [name]` becomes a source
//! named `name`, or `host:port` when unnamed. The pool's `redis_auth` is the
//! password clients give the *proxy*; the servers behind it may have another
//! one or none, so it is not used: `password`/`password_env` inside
//! `[twemproxy]` apply to every server, and `[twemproxy.servers."<name>"]`
//! tables override them for one server.
//!
//! The tool's own keys are named here, as `docs/task-file.md` documents them: the
//! heartbeat key `<heartbeat_key>` on the sources, and one checkpoint key
//! per shard, [`TaskConfig::checkpoint_key`], on the destination.

mod addr;
mod error;
mod load;
pub mod nutcracker;
mod raw;
mod save;
mod secret;

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

pub use addr::{host_of, Addr, AddrError};
pub use error::{ConfigError, ErrorKind};
pub use save::{password_env_name, render, save, PasswordVar, SavePasswords};
pub use secret::Secret;

/// Where spools and checkpoints go when the file does not say.
pub const DEFAULT_STATE_DIR: &str = ".shardsync";
pub const DEFAULT_HEARTBEAT_KEY: &str = "SHARDSYNC_HEARTBEAT";
pub const DEFAULT_HEARTBEAT_MS: u64 = 1000;
/// Keys whose payload is larger than this go as chunked native commands
/// rather than one `RESTORE`: 16 MiB keeps each command well under Redis's
/// 512 MB `proto-max-bulk-len` and short enough not to stall the destination.
pub const DEFAULT_BIG_KEY_BYTES: u64 = 16 * 1024 * 1024;

/// One migration task: N source masters into one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskConfig {
    /// Names the state directory; only `[A-Za-z0-9._-]`.
    pub name: String,
    /// As loaded: already joined to the task file's directory when the file
    /// gave a relative path, so it is usable from any working directory.
    pub state_dir: PathBuf,
    /// Non-empty, with distinct names and addresses.
    pub sources: Vec<SourceConfig>,
    pub destination: DestConfig,
    pub sync: SyncConfig,
}

/// One source master (a shard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// The shard's name in progress output, checkpoint keys and state files.
    pub name: String,
    pub addr: Addr,
    pub password: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestConfig {
    pub addr: Addr,
    pub password: Secret,
    /// Standalone or Redis Cluster (`kind`); `Auto`: the server's
    /// `cluster_enabled` decides.
    pub kind: DestKind,
}

/// What the destination is (`[destination] kind`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum DestKind {
    /// `cluster_enabled:1` in the server's `INFO` means a Redis Cluster.
    #[default]
    Auto,
    Standalone,
    Cluster,
}

/// How the copy behaves (`[sync]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    pub conflict: ConflictMode,
    /// Source DBs to copy; `None`: every DB that has keys.
    pub databases: Option<Vec<u32>>,
    pub flush: FlushPolicy,
    pub heartbeat_key: String,
    pub heartbeat_ms: u64,
    pub big_key_bytes: u64,
    /// Source DB to destination DB; a DB not listed keeps its number.
    pub db_map: BTreeMap<u32, u32>,
    /// Where checkpoints are kept (the destination makes resumes exactly-once).
    pub checkpoint: CheckpointStore,
    /// Full copies at a time per source host (0: no limit), so masters
    /// sharing a host do not fork together.
    pub full_syncs_per_host: u32,
    /// Writer rate limits per shard (0: none): keys/commands and bytes a second.
    pub max_keys_per_sec: u64,
    pub max_bytes_per_sec: u64,
    /// What to do with keys that hold a module's value.
    pub modules: ModulePolicy,
}

impl Default for SyncConfig {
    fn default() -> SyncConfig {
        SyncConfig {
            conflict: ConflictMode::default(),
            databases: None,
            flush: FlushPolicy::default(),
            heartbeat_key: DEFAULT_HEARTBEAT_KEY.to_owned(),
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            big_key_bytes: DEFAULT_BIG_KEY_BYTES,
            db_map: BTreeMap::new(),
            checkpoint: CheckpointStore::default(),
            full_syncs_per_host: 1,
            max_keys_per_sec: 0,
            max_bytes_per_sec: 0,
            modules: ModulePolicy::default(),
        }
    }
}

impl SyncConfig {
    /// The destination DB that source DB `db` is written to.
    pub fn target_db(&self, db: u32) -> u32 {
        self.db_map.get(&db).copied().unwrap_or(db)
    }

    /// Whether source DB `db` is copied.
    pub fn copies_db(&self, db: u32) -> bool {
        self.databases.as_ref().is_none_or(|dbs| dbs.contains(&db))
    }

    /// The destination key holding shard `shard`'s checkpoint:
    /// `<heartbeat_key>:ckpt:<shard>`.
    pub fn checkpoint_key(&self, shard: &str) -> String {
        format!("{}:ckpt:{shard}", self.heartbeat_key)
    }
}

/// What to do with keys the destination already has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ConflictMode {
    /// Refuse to start while a selected destination DB holds keys (unless
    /// the task resumes from its own checkpoint).
    #[default]
    Intercept,
    /// The source's key replaces the destination's.
    Overwrite,
    /// The destination's key is kept, and counted.
    Skip,
}

/// What to do with a `FLUSHALL`/`FLUSHDB` from a source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum FlushPolicy {
    /// Do not apply it; raise an alert. One shard's flush must not wipe the
    /// other shards' keys in a merged destination.
    #[default]
    Refuse,
    /// Apply it on the destination.
    Forward,
}

/// What to do with a key holding a module's value (a RedisJSON document, a
/// Bloom filter…), which only a destination with the same module can hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ModulePolicy {
    /// Stop the shard, naming the key and the module: nothing is copied
    /// short of what the sources hold unless the operator says so.
    #[default]
    Fail,
    /// Leave such keys out, each counted (`keys_skipped.module`) and named
    /// in an alert.
    Skip,
    /// Copy them with `RESTORE` (the destination must have the module
    /// loaded, and read the source's RDB version).
    Restore,
}

/// Where a shard's checkpoint is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum CheckpointStore {
    /// In the destination, in the same MULTI/EXEC as the writes it covers
    /// (a resume neither loses nor repeats a write), and in the local state
    /// file as a copy.
    #[default]
    Destination,
    /// Only in the local state file, written once a second after the writes
    /// it covers: for destinations without MULTI/EXEC. A crash can repeat
    /// up to a second of writes.
    Local,
}

/// The words the task file uses for an enum, in one place for parsing,
/// writing and error messages.
trait Words: Sized + Copy + PartialEq + 'static {
    const ALL: &'static [(&'static str, Self)];

    fn word(self) -> &'static str {
        Self::ALL.iter().find(|(_, v)| *v == self).map_or("", |(w, _)| w)
    }
}

impl Words for ConflictMode {
    const ALL: &'static [(&'static str, Self)] =
        &[("intercept", Self::Intercept), ("overwrite", Self::Overwrite), ("skip", Self::Skip)];
}

impl Words for CheckpointStore {
    const ALL: &'static [(&'static str, Self)] = &[("destination", Self::Destination), ("local", Self::Local)];
}

impl Words for ModulePolicy {
    const ALL: &'static [(&'static str, Self)] =
        &[("fail", Self::Fail), ("skip", Self::Skip), ("restore", Self::Restore)];
}

impl Words for DestKind {
    const ALL: &'static [(&'static str, Self)] =
        &[("auto", Self::Auto), ("standalone", Self::Standalone), ("cluster", Self::Cluster)];
}

impl Words for FlushPolicy {
    const ALL: &'static [(&'static str, Self)] = &[("refuse", Self::Refuse), ("forward", Self::Forward)];
}

/// A word that is not one of the allowed ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not one of: {}", allowed.join(", "))]
pub struct UnknownWord {
    pub given: String,
    pub allowed: Vec<&'static str>,
}

fn parse_word<T: Words>(s: &str) -> Result<T, UnknownWord> {
    T::ALL
        .iter()
        .find(|(w, _)| *w == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| UnknownWord { given: s.to_owned(), allowed: T::ALL.iter().map(|(w, _)| *w).collect() })
}

macro_rules! words_traits {
    ($($t:ty),*) => {$(
        impl FromStr for $t {
            type Err = UnknownWord;
            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                parse_word(s)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.word())
            }
        }
    )*};
}

words_traits!(ConflictMode, FlushPolicy, CheckpointStore, ModulePolicy, DestKind);

impl TaskConfig {
    /// Reads and validates a task file; `password_env` variables come from
    /// the process environment.
    pub fn load(path: impl AsRef<Path>) -> Result<TaskConfig, ConfigError> {
        TaskConfig::load_with_env(path.as_ref(), &|var| std::env::var(var).ok())
    }

    /// As [`TaskConfig::load`], with `env` answering `password_env` look-ups.
    pub fn load_with_env(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<TaskConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::new(path, ErrorKind::Io { action: "read the task file".into(), source }))?;
        TaskConfig::from_toml(&text, path, env)
    }

    /// Validates task file text as if it had been read from `file`, which
    /// names it in messages and anchors relative paths (`state_dir`,
    /// `[twemproxy] config`) to its directory.
    pub fn from_toml(text: &str, file: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<TaskConfig, ConfigError> {
        load::build(text, file, env)
    }

    /// `<state_dir>/<name>`: this task's spools and checkpoints.
    pub fn state_path(&self) -> PathBuf {
        self.state_dir.join(&self.name)
    }

    /// The destination key holding shard `shard`'s checkpoint.
    pub fn checkpoint_key(&self, shard: &str) -> String {
        self.sync.checkpoint_key(shard)
    }

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }
}

/// Task names end up in a directory name: keep to characters every file
/// system and shell takes as they are.
pub fn is_valid_task_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Source names are freer (twemproxy names unnamed servers `host:port`) but
/// still become part of file and key names: no separators, spaces or
/// control characters.
pub fn is_valid_source_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_parse_print_and_list_their_words() {
        assert_eq!("skip".parse::<ConflictMode>(), Ok(ConflictMode::Skip));
        assert_eq!(FlushPolicy::Forward.to_string(), "forward");
        let err = "Skip".parse::<ConflictMode>().unwrap_err();
        assert_eq!(err.to_string(), "`Skip` is not one of: intercept, overwrite, skip");
    }

    #[test]
    fn sync_defaults_match_the_design() {
        let sync = SyncConfig::default();
        assert_eq!((sync.conflict, sync.flush), (ConflictMode::Intercept, FlushPolicy::Refuse));
        assert_eq!((sync.heartbeat_key.as_str(), sync.heartbeat_ms), ("SHARDSYNC_HEARTBEAT", 1000));
        assert_eq!(sync.big_key_bytes, 16 << 20);
        assert_eq!(sync.checkpoint_key("server1"), "SHARDSYNC_HEARTBEAT:ckpt:server1");
    }

    #[test]
    fn db_selection_and_mapping() {
        let sync = SyncConfig { databases: Some(vec![0, 2]), db_map: [(2, 0)].into(), ..SyncConfig::default() };
        assert!(sync.copies_db(0) && sync.copies_db(2) && !sync.copies_db(1));
        assert_eq!((sync.target_db(2), sync.target_db(0), sync.target_db(5)), (0, 0, 5));
        assert!(SyncConfig::default().copies_db(15));
    }

    #[test]
    fn name_rules() {
        assert!(is_valid_task_name("twemproxy-to-apsara_2.0"));
        for bad in ["", ".", "..", "a b", "a/b", "a:b", "é"] {
            assert!(!is_valid_task_name(bad), "{bad:?}");
        }
        assert!(is_valid_source_name("127.0.0.1:7001") && is_valid_source_name("[::1]:7001"));
        for bad in ["", "..", "a b", "a/b", "a\\b", "a\tb"] {
            assert!(!is_valid_source_name(bad), "{bad:?}");
        }
    }
}
