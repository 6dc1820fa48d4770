//! From the parsed file ([`raw`](super::raw)) to a [`TaskConfig`]: each
//! value checked, defaults filled in, `password_env` variables read, and the
//! sources taken from `[[source]]` tables or from a twemproxy pool.
//!
//! Every error names the entry (`source `server1``, `[sync]`), the key and
//! the line; a problem in the nutcracker.yml names that file's line instead.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::{
    is_valid_source_name, is_valid_task_name, nutcracker,
    raw::{self, Lines, RawServer, RawSource, RawSync, RawTask, RawTwemproxy},
    Addr, ConfigError, DestConfig, DestKind, ErrorKind, Secret, SourceConfig, SyncConfig, TaskConfig,
    DEFAULT_STATE_DIR,
};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(super) fn build(text: &str, file: &Path, env: Env<'_>) -> Result<TaskConfig, ConfigError> {
    let raw = raw::parse(text, file)?;
    let loader = Loader {
        file,
        base_dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        lines: Lines::new(text),
        env,
    };
    loader.task(raw)
}

struct Loader<'a> {
    file: &'a Path,
    /// The task file's directory, which relative paths are relative to.
    base_dir: PathBuf,
    lines: Lines<'a>,
    env: Env<'a>,
}

/// Sources as found, with the line each came from: in the task file, or in
/// the nutcracker.yml `yml` when that is set.
struct FoundSources {
    sources: Vec<(SourceConfig, usize)>,
    yml: Option<PathBuf>,
}

impl Loader<'_> {
    fn line<T>(&self, value: &Spanned<T>) -> usize {
        self.lines.of(value.span())
    }

    fn invalid_at(&self, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.file, ErrorKind::Invalid { line, message: message.into() })
    }

    fn invalid<T>(&self, at: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.invalid_at(self.line(at), message)
    }

    fn incomplete(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.file, ErrorKind::Incomplete { message: message.into() })
    }

    fn in_yml(&self, yml: &Path, line: Option<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.file, ErrorKind::Twemproxy { file: yml.to_path_buf(), line, message: message.into() })
    }

    fn task(&self, raw: RawTask) -> Result<TaskConfig, ConfigError> {
        let name = raw.name.ok_or_else(|| {
            self.incomplete(
                "missing key `name` at the top level; add name = \"<task name>\" (it names the state directory)",
            )
        })?;
        if !is_valid_task_name(name.get_ref()) {
            return Err(self.invalid(
                &name,
                format!(
                    "`name` {:?} cannot be a directory name; use letters, digits, `.`, `_` and `-`",
                    name.get_ref()
                ),
            ));
        }
        let state_dir = match &raw.state_dir {
            None => self.base_dir.join(DEFAULT_STATE_DIR),
            Some(dir) if dir.get_ref().is_empty() => {
                return Err(self.invalid(dir, format!("`state_dir` is empty; remove it to use `{DEFAULT_STATE_DIR}`")));
            }
            Some(dir) => self.base_dir.join(dir.get_ref()),
        };

        let found = match (raw.twemproxy, raw.source.first()) {
            (Some(twemproxy), Some(first)) => {
                return Err(self.invalid(
                    &twemproxy,
                    format!("[twemproxy] and [[source]] (line {}) cannot be used together; keep one", self.line(first)),
                ));
            }
            (Some(twemproxy), None) => self.twemproxy_sources(twemproxy)?,
            (None, Some(_)) => self.listed_sources(raw.source)?,
            (None, None) => {
                return Err(self.incomplete(
                    "no sources: add a [[source]] table (name, addr) for each Redis-Server master, \
                     or a [twemproxy] section with the nutcracker.yml and the pool",
                ));
            }
        };
        self.check_distinct(&found)?;
        let sources: Vec<SourceConfig> = found.sources.into_iter().map(|(s, _)| s).collect();

        let destination = self.destination(raw.destination, &sources)?;
        let sync = self.sync(raw.sync)?;
        Ok(TaskConfig { name: name.into_inner(), state_dir, sources, destination, sync })
    }

    fn listed_sources(&self, entries: Vec<Spanned<RawSource>>) -> Result<FoundSources, ConfigError> {
        let mut sources = Vec::with_capacity(entries.len());
        for (n, entry) in entries.into_iter().enumerate() {
            let section = format!("[[source]] #{}", n + 1);
            let header = self.line(&entry);
            let RawSource { name, addr, password, password_env } = entry.into_inner();
            let name = name.ok_or_else(|| {
                self.invalid_at(header, format!("missing key `name` in {section}; write name = \"<shard name>\""))
            })?;
            if !is_valid_source_name(name.get_ref()) {
                return Err(self.invalid(
                    &name,
                    format!(
                        "`name` {:?} in {section} cannot be used in file and key names: no spaces, `/` or `\\`",
                        name.get_ref()
                    ),
                ));
            }
            let label = format!("source `{}`", name.get_ref());
            let addr = addr.ok_or_else(|| {
                self.invalid_at(header, format!("{label} ({section}): missing key `addr`; write addr = \"host:port\""))
            })?;
            let addr = self.addr(&label, &addr)?;
            let password = self.secret(&label, password, password_env)?.unwrap_or_default();
            sources.push((SourceConfig { name: name.get_ref().clone(), addr, password }, self.line(&name)));
        }
        Ok(FoundSources { sources, yml: None })
    }

    fn twemproxy_sources(&self, section: Spanned<RawTwemproxy>) -> Result<FoundSources, ConfigError> {
        let header = self.line(&section);
        let RawTwemproxy { config, pool, password, password_env, servers } = section.into_inner();
        let config = config.ok_or_else(|| {
            self.invalid_at(header, "missing key `config` in [twemproxy]; write config = \"<path of nutcracker.yml>\"")
        })?;
        let yml = self.base_dir.join(config.get_ref());
        let text = std::fs::read_to_string(&yml)
            .map_err(|e| self.invalid(&config, format!("[twemproxy] config: cannot read {}: {e}", yml.display())))?;
        let pools = nutcracker::parse(&text).map_err(|e| self.in_yml(&yml, Some(e.line), e.message))?;
        let pool_names = || pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ");
        let pool = match &pool {
            Some(wanted) => pools.iter().find(|p| p.name == *wanted.get_ref()).ok_or_else(|| {
                self.invalid(
                    wanted,
                    format!(
                        "[twemproxy] pool `{}` is not in {}; its pools are: {}",
                        wanted.get_ref(),
                        yml.display(),
                        pool_names()
                    ),
                )
            })?,
            None if pools.is_empty() => return Err(self.in_yml(&yml, None, "the file defines no pool")),
            None if pools.len() == 1 => &pools[0],
            None => {
                return Err(self.invalid_at(
                    header,
                    format!("missing key `pool` in [twemproxy]; {} has the pools: {}", yml.display(), pool_names()),
                ));
            }
        };
        if !pool.redis {
            return Err(self.in_yml(
                &yml,
                Some(pool.line),
                format!("pool `{}` is a memcached pool (it has no `redis: true`); shardsync copies Redis", pool.name),
            ));
        }
        if pool.servers.is_empty() {
            return Err(self.in_yml(&yml, Some(pool.line), format!("pool `{}` has no servers", pool.name)));
        }

        let server_name = |s: &nutcracker::Server| s.name.clone().unwrap_or_else(|| s.addr.to_string());
        let default_password = self.secret("[twemproxy]", password, password_env)?.unwrap_or_default();
        let mut overrides = Vec::new();
        for (name, entry) in servers {
            let label = format!("[twemproxy.servers.{}]", raw::toml_key(&name));
            if !pool.servers.iter().any(|s| server_name(s) == name) {
                let known = pool.servers.iter().map(server_name).collect::<Vec<_>>().join(", ");
                return Err(self.invalid(
                    &entry,
                    format!("{label}: pool `{}` has no server named `{name}`; its servers are: {known}", pool.name),
                ));
            }
            let line = self.line(&entry);
            let entry = entry.into_inner();
            let secret = self
                .secret(&label, entry.password, entry.password_env)?
                .ok_or_else(|| self.invalid_at(line, format!("{label} sets neither `password` nor `password_env`")))?;
            overrides.push((name, secret));
        }

        let mut sources = Vec::with_capacity(pool.servers.len());
        for server in &pool.servers {
            let name = server_name(server);
            if !is_valid_source_name(&name) {
                return Err(self.in_yml(
                    &yml,
                    Some(server.line),
                    format!("server name {name:?} cannot be used in file and key names: no `/` or `\\`"),
                ));
            }
            let password = overrides
                .iter()
                .find(|(n, _)| *n == name)
                .map_or_else(|| default_password.clone(), |(_, secret)| secret.clone());
            sources.push((SourceConfig { name, addr: server.addr.clone(), password }, server.line));
        }
        Ok(FoundSources { sources, yml: Some(yml) })
    }

    /// Two shards with one name would share a checkpoint; one master listed
    /// twice would be copied twice.
    fn check_distinct(&self, found: &FoundSources) -> Result<(), ConfigError> {
        let at = |line: usize, message: String| match &found.yml {
            Some(yml) => self.in_yml(yml, Some(line), message),
            None => self.invalid_at(line, message),
        };
        for (i, (source, line)) in found.sources.iter().enumerate() {
            for (earlier, first_line) in &found.sources[..i] {
                if earlier.name == source.name {
                    return Err(at(
                        *line,
                        format!(
                            "source name `{}` is used twice (first at line {first_line}); give each shard its own name",
                            source.name
                        ),
                    ));
                }
                if earlier.addr.same_server(&source.addr) {
                    return Err(at(
                        *line,
                        format!(
                            "source `{}` has the same addr `{}` as source `{}` (line {first_line}); list each master once",
                            source.name, source.addr, earlier.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn destination(
        &self,
        raw: Option<Spanned<RawServer>>,
        sources: &[SourceConfig],
    ) -> Result<DestConfig, ConfigError> {
        let raw = raw.ok_or_else(|| {
            self.incomplete("missing the [destination] table; add [destination] with addr = \"host:port\"")
        })?;
        let header = self.line(&raw);
        let RawServer { addr, password, password_env, kind } = raw.into_inner();
        let addr_value = addr.ok_or_else(|| {
            self.invalid_at(header, "missing key `addr` in [destination]; write addr = \"host:port\"")
        })?;
        let addr = self.addr("destination", &addr_value)?;
        if let Some(source) = sources.iter().find(|s| s.addr.same_server(&addr)) {
            return Err(self.invalid(
                &addr_value,
                format!(
                    "destination addr `{addr}` is also source `{}`; the destination must be another server",
                    source.name
                ),
            ));
        }
        let password = self.secret("destination", password, password_env)?.unwrap_or_default();
        let kind = match &kind {
            Some(k) => k.get_ref().parse().map_err(|e| self.invalid(k, format!("`kind` in [destination]: {e}")))?,
            None => DestKind::Auto,
        };
        Ok(DestConfig { addr, password, kind })
    }

    fn sync(&self, raw: Option<Spanned<RawSync>>) -> Result<SyncConfig, ConfigError> {
        let mut sync = SyncConfig::default();
        let Some(raw) = raw else { return Ok(sync) };
        let raw = raw.into_inner();
        if let Some(conflict) = &raw.conflict {
            sync.conflict =
                conflict.get_ref().parse().map_err(|e| self.invalid(conflict, format!("`conflict` in [sync]: {e}")))?;
        }
        if let Some(modules) = &raw.modules {
            sync.modules =
                modules.get_ref().parse().map_err(|e| self.invalid(modules, format!("`modules` in [sync]: {e}")))?;
        }
        if let Some(flush) = &raw.flush {
            sync.flush = flush.get_ref().parse().map_err(|e| self.invalid(flush, format!("`flush` in [sync]: {e}")))?;
        }
        if let Some(databases) = &raw.databases {
            if databases.get_ref().is_empty() {
                return Err(self.invalid(
                    databases,
                    "`databases` in [sync] is empty; list the source DBs to copy, or remove it to copy every DB that has keys",
                ));
            }
            let mut list = Vec::new();
            for db in databases.get_ref() {
                if list.contains(db.get_ref()) {
                    return Err(self.invalid(db, format!("`databases` in [sync] lists DB {} twice", db.get_ref())));
                }
                list.push(*db.get_ref());
            }
            sync.databases = Some(list);
        }
        if let Some(key) = raw.heartbeat_key {
            if key.get_ref().is_empty() || key.get_ref().chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(self.invalid(&key, "`heartbeat_key` in [sync] must be non-empty, without spaces"));
            }
            sync.heartbeat_key = key.into_inner();
        }
        if let Some(ms) = &raw.heartbeat_ms {
            if *ms.get_ref() == 0 {
                return Err(
                    self.invalid(ms, "`heartbeat_ms` in [sync] must be at least 1 (milliseconds between heartbeats)")
                );
            }
            sync.heartbeat_ms = *ms.get_ref();
        }
        if let Some(bytes) = &raw.big_key_bytes {
            if *bytes.get_ref() == 0 {
                return Err(self.invalid(bytes, "`big_key_bytes` in [sync] must be at least 1"));
            }
            sync.big_key_bytes = *bytes.get_ref();
        }
        if let Some(store) = &raw.checkpoint {
            sync.checkpoint =
                store.get_ref().parse().map_err(|e| self.invalid(store, format!("`checkpoint` in [sync]: {e}")))?;
        }
        if let Some(n) = &raw.full_syncs_per_host {
            sync.full_syncs_per_host = *n.get_ref();
        }
        if let Some(n) = &raw.max_keys_per_sec {
            sync.max_keys_per_sec = *n.get_ref();
        }
        if let Some(n) = &raw.max_bytes_per_sec {
            sync.max_bytes_per_sec = *n.get_ref();
        }
        if let Some(map) = raw.db_map {
            for (from, to) in map.into_inner() {
                let from_db = from.parse::<u32>().map_err(|_| {
                    self.invalid(
                        &to,
                        format!(
                            "`db_map` in [sync]: `{from}` is not a DB number; write \"<source DB>\" = <destination DB>"
                        ),
                    )
                })?;
                if !sync.copies_db(from_db) {
                    return Err(self.invalid(
                        &to,
                        format!("`db_map` in [sync] maps DB {from_db}, which `databases` does not select"),
                    ));
                }
                sync.db_map.insert(from_db, to.into_inner());
            }
        }
        Ok(sync)
    }

    fn addr(&self, label: &str, value: &Spanned<String>) -> Result<Addr, ConfigError> {
        value.get_ref().parse().map_err(|e| self.invalid(value, format!("{label}: addr {e}")))
    }

    /// The password of `label` from `password` or `password_env` (not both);
    /// `None` when neither is set.
    fn secret(
        &self,
        label: &str,
        password: Option<Spanned<toml::Value>>,
        password_env: Option<Spanned<String>>,
    ) -> Result<Option<Secret>, ConfigError> {
        match (password, password_env) {
            (Some(password), Some(var)) => Err(self.invalid(
                &var,
                format!(
                    "{label}: `password` (line {}) and `password_env` are both set; keep one",
                    self.line(&password)
                ),
            )),
            (Some(password), None) => match password.get_ref().as_str() {
                Some(value) => Ok(Some(Secret::new(value))),
                None => Err(self.invalid(&password, format!("{label}: `password` must be a string"))),
            },
            (None, Some(var)) => {
                let name = var.get_ref();
                if name.is_empty() || name.contains(['=', '\0']) {
                    return Err(self.invalid(&var, format!("{label}: `password_env` {name:?} is not a variable name")));
                }
                match (self.env)(name) {
                    Some(value) => Ok(Some(Secret::new(value).with_env_var(name))),
                    None => Err(ConfigError::new(
                        self.file,
                        ErrorKind::MissingEnv { var: name.clone(), entry: label.to_owned(), line: self.line(&var) },
                    )),
                }
            }
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    const BASE: &str = "name = \"t\"\n[[source]]\nname = \"a\"\naddr = \"h:1\"\n[destination]\naddr = \"h:2\"\n";

    fn load(text: &str) -> Result<TaskConfig, ConfigError> {
        build(text, Path::new("task.toml"), &|var| (var == "SET").then(|| "value".to_owned()))
    }

    fn error(text: &str) -> (String, Option<usize>) {
        let err = load(text).unwrap_err();
        (err.to_string(), err.line())
    }

    #[test]
    fn a_bare_file_name_keeps_paths_relative_to_the_working_directory() {
        let config = load(BASE).unwrap();
        assert_eq!(config.state_dir, Path::new(".shardsync"));
        assert_eq!(config.state_path(), Path::new(".shardsync/t"));
    }

    #[test]
    fn sync_values_are_checked_with_their_line() {
        let cases = [
            ("[sync]\nheartbeat_key = \"a b\"\n", 8, "`heartbeat_key` in [sync] must be non-empty, without spaces"),
            ("[sync]\nbig_key_bytes = 0\n", 8, "`big_key_bytes` in [sync] must be at least 1"),
            ("[sync]\ndatabases = [1, 2, 1]\n", 8, "`databases` in [sync] lists DB 1 twice"),
            ("[sync.db_map]\nzero = 1\n", 8, "`db_map` in [sync]: `zero` is not a DB number"),
            ("[sync.db_map]\n\"0\" = -1\n", 8, "`0` in [sync.db_map]: invalid value: integer `-1`, expected u32"),
        ];
        for (tail, line, words) in cases {
            let (message, at) = error(&format!("{BASE}{tail}"));
            assert!(message.contains(words), "{message}");
            assert_eq!(at, Some(line), "{message}");
        }
    }

    #[test]
    fn password_env_names_are_checked_and_read() {
        let with = |line: &str| {
            format!("name = \"t\"\n[[source]]\nname = \"a\"\naddr = \"h:1\"\n{line}\n[destination]\naddr = \"h:2\"\n")
        };
        let config = load(&with("password_env = \"SET\"")).unwrap();
        assert_eq!((config.sources[0].password.expose(), config.sources[0].password.env_var()), ("value", Some("SET")));
        let (message, line) = error(&with("password_env = \"A=B\""));
        assert!(message.contains("source `a`: `password_env` \"A=B\" is not a variable name"), "{message}");
        assert_eq!(line, Some(5));
        let (message, _) = error(&with("password_env = \"\""));
        assert!(message.contains("is not a variable name"), "{message}");
    }

    fn twemproxy(yml: &str, section: &str) -> Result<TaskConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("nutcracker.yml"), yml).unwrap();
        let text = format!(
            "name = \"t\"\n[twemproxy]\nconfig = \"nutcracker.yml\"\n{section}\n[destination]\naddr = \"d:1\"\n"
        );
        build(&text, &dir.path().join("task.toml"), &|var| (var == "SET").then(|| "value".to_owned()))
    }

    #[test]
    fn a_single_pool_needs_no_pool_key() {
        let config = twemproxy("only:\n  redis: true\n  servers:\n   - a:1:1\n   - b:1:1 bee\n", "").unwrap();
        let names: Vec<_> = config.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a:1", "bee"]);
    }

    #[test]
    fn twemproxy_password_applies_to_every_server() {
        let config =
            twemproxy("p:\n  redis: true\n  servers:\n   - a:1:1\n   - b:1:1\n", "password_env = \"SET\"").unwrap();
        assert!(config.sources.iter().all(|s| s.password.expose() == "value"));
        let err = twemproxy("p:\n  redis: true\n  servers:\n   - a:1:1\n", "password = 5").unwrap_err();
        assert_eq!((err.to_string().contains("[twemproxy]: `password` must be a string"), err.line()), (true, Some(4)));
    }

    #[test]
    fn problems_inside_the_pool_name_the_yml_line() {
        let cases = [
            (
                "p:\n  redis: true\n  servers:\n   - a:1:1 x\n   - b:1:1 x\n",
                "at line 5: source name `x` is used twice (first at line 4)",
            ),
            (
                "p:\n  redis: true\n  servers:\n   - a:1:1 x\n   - A:1:1 y\n",
                "at line 5: source `y` has the same addr `A:1` as source `x`",
            ),
            ("p:\n  redis: true\n  servers:\n", "at line 1: pool `p` has no servers"),
            ("p:\n  redis: true\n  servers:\n   - a:1:1 x/y\n", "at line 4: server name \"x/y\" cannot be used"),
            ("# nothing\n", "the file defines no pool"),
            ("p:\n  redis: true\n  servers:\n   - a:1 x\n", "at line 4: expected `host:port:weight [name]`"),
        ];
        for (yml, words) in cases {
            let err = twemproxy(yml, "").unwrap_err();
            assert!(err.to_string().contains(words), "{err}");
            assert!(matches!(err.kind(), ErrorKind::Twemproxy { .. }), "{err}");
        }
    }

    #[test]
    fn an_override_needs_a_password() {
        let err = twemproxy("p:\n  redis: true\n  servers:\n   - a:1:1 x\n", "[twemproxy.servers.x]").unwrap_err();
        assert!(err.to_string().contains("[twemproxy.servers.x] sets neither `password` nor `password_env`"), "{err}");
    }
}
