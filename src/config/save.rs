//! Writes a [`TaskConfig`] back as a task file: the schema of `docs/task-file.md` with
//! the comments a person editing it wants, created atomically (a temporary
//! file in the same directory, then a rename) and readable by its owner only
//! (mode 0600), since it may hold passwords.
//!
//! Passwords are written either as they are ([`SavePasswords::Include`]) or
//! as `password_env` names ([`SavePasswords::AsEnv`]). A password that was
//! read from a variable keeps that variable's name; any other gets
//! [`password_env_name`] of its entry (`SHARDSYNC_SERVER1_PASSWORD`,
//! `SHARDSYNC_DESTINATION_PASSWORD`), with `_2`, `_3`… appended should two
//! entries map to the same name. The caller tells the user which variables
//! to export: [`save`] returns them.
//!
//! Sources are always written as `[[source]]` tables, also when they were
//! read from a twemproxy pool: the file then says exactly what is copied.

use std::{
    fmt::Write as _,
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use super::{ConfigError, ErrorKind, Secret, TaskConfig};

/// How [`save`] writes passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavePasswords {
    /// `password = "<the password>"`.
    Include,
    /// `password_env = "<VARIABLE>"`; the file holds no password.
    AsEnv,
}

/// An environment variable a saved file reads a password from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordVar {
    /// `source `server1`` or `destination`.
    pub entry: String,
    pub var: String,
}

/// The variable [`SavePasswords::AsEnv`] uses for `entry` (a source name, or
/// `destination`): `SHARDSYNC_<ENTRY>_PASSWORD`, upper case, every character
/// other than a letter or digit replaced by `_`.
pub fn password_env_name(entry: &str) -> String {
    let middle: String =
        entry.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("SHARDSYNC_{middle}_PASSWORD")
}

/// Writes `config` to `path` (mode 0600, atomically). Returns the variables
/// the file expects, empty with [`SavePasswords::Include`].
pub fn save(config: &TaskConfig, path: &Path, passwords: SavePasswords) -> Result<Vec<PasswordVar>, ConfigError> {
    let (text, vars) = render_with_vars(config, path, passwords);
    write_private(path, text.as_bytes())
        .map_err(|source| ConfigError::new(path, ErrorKind::Io { action: "write the task file".into(), source }))?;
    Ok(vars)
}

/// The text [`save`] writes to `path` (which relative paths are made
/// relative to).
pub fn render(config: &TaskConfig, path: &Path, passwords: SavePasswords) -> String {
    render_with_vars(config, path, passwords).0
}

fn render_with_vars(config: &TaskConfig, path: &Path, passwords: SavePasswords) -> (String, Vec<PasswordVar>) {
    let entries: Vec<(String, &Secret)> = config
        .sources
        .iter()
        .map(|s| (format!("source `{}`", s.name), &s.password))
        .chain([("destination".to_owned(), &config.destination.password)])
        .collect();
    let vars = match passwords {
        SavePasswords::Include => vec![None; entries.len()],
        SavePasswords::AsEnv => assign_vars(config),
    };
    let mut out = String::new();
    let w = &mut out;

    line(w, format_args!("# shardsync task file, written by shardsync {}.", env!("CARGO_PKG_VERSION")));
    line(w, format_args!("# Run it with `shardsync run --config <this file>`; check it first with `shardsync check`."));
    let listed: Vec<PasswordVar> = entries
        .iter()
        .zip(&vars)
        .filter_map(|((entry, _), var)| var.clone().map(|var| PasswordVar { entry: entry.clone(), var }))
        .collect();
    match passwords {
        SavePasswords::Include if entries.iter().any(|(_, s)| !s.is_empty()) => {
            line(w, format_args!("# This file holds passwords: keep it private (it is written with mode 0600)."));
        }
        SavePasswords::AsEnv if !listed.is_empty() => {
            line(w, format_args!("# Passwords are read from the environment; export these before running:"));
            let mut seen = Vec::new();
            for PasswordVar { entry, var } in &listed {
                if !seen.contains(&var) {
                    seen.push(var);
                    line(w, format_args!("#   {var}  (password of {entry})"));
                }
            }
        }
        _ => {}
    }
    line(w, format_args!("# A password is \"<password>\" or \"<user>:<password>\" (split on the first `:`)."));
    line(w, format_args!(""));
    line(w, format_args!("# Names the state directory."));
    line(w, format_args!("name = {}", quote(&config.name)));
    line(w, format_args!("# Spools and checkpoints live in <state_dir>/<name>/; relative to this file's directory."));
    line(w, format_args!("state_dir = {}", quote(&state_dir_text(&config.state_dir, path))));

    line(w, format_args!(""));
    line(
        w,
        format_args!("# One [[source]] per Redis-Server master: the server's own address, not the twemproxy listener."),
    );
    for (source, var) in config.sources.iter().zip(&vars) {
        line(w, format_args!("[[source]]"));
        line(w, format_args!("name = {}", quote(&source.name)));
        line(w, format_args!("addr = {}", quote(&source.addr.to_string())));
        password_line(w, &source.password, var.as_deref());
        line(w, format_args!(""));
    }

    line(w, format_args!("[destination]"));
    line(w, format_args!("addr = {}", quote(&config.destination.addr.to_string())));
    password_line(w, &config.destination.password, vars.last().and_then(Option::as_deref));
    if config.destination.kind != crate::config::DestKind::Auto {
        line(w, format_args!("kind = \"{}\"", config.destination.kind));
    }

    let sync = &config.sync;
    line(w, format_args!(""));
    line(w, format_args!("[sync]"));
    line(w, format_args!("# intercept: start only if the selected destination DBs are empty (or this task resumes)"));
    line(
        w,
        format_args!(
            "# | overwrite: the source's key replaces the destination's | skip: the destination's key is kept"
        ),
    );
    line(w, format_args!("conflict = \"{}\"", sync.conflict));
    line(w, format_args!("# Source DBs to copy; without this key, every DB that has keys."));
    match &sync.databases {
        Some(dbs) => {
            let list: Vec<String> = dbs.iter().map(u32::to_string).collect();
            line(w, format_args!("databases = [{}]", list.join(", ")));
        }
        None => line(w, format_args!("# databases = [0]")),
    }
    line(
        w,
        format_args!("# FLUSHALL/FLUSHDB from a source: refuse (not applied, reported as an alert, so one shard's"),
    );
    line(w, format_args!("# flush cannot wipe the other shards' keys) | forward (applied on the destination)"));
    line(w, format_args!("flush = \"{}\"", sync.flush));
    line(w, format_args!("# Keys holding a module's value: fail (the shard stops, naming key and module) | skip"));
    line(w, format_args!("# (each counted and named) | restore (RESTORE; the destination needs the module)"));
    line(w, format_args!("modules = \"{}\"", sync.modules));
    line(w, format_args!("# Written on every source every heartbeat_ms to measure lag; never copied. The destination"));
    line(w, format_args!("# keeps each shard's checkpoint in \"<heartbeat_key>:ckpt:<source name>\"."));
    line(w, format_args!("heartbeat_key = {}", quote(&sync.heartbeat_key)));
    line(w, format_args!("heartbeat_ms = {}", sync.heartbeat_ms));
    line(w, format_args!("# Keys larger than this many bytes are copied as chunked commands rather than one RESTORE."));
    line(w, format_args!("big_key_bytes = {}", sync.big_key_bytes));
    line(
        w,
        format_args!("# destination: checkpoints in the destination, atomic with the writes (exactly-once resume)"),
    );
    line(
        w,
        format_args!("# | local: only in the state dir, for destinations without MULTI/EXEC (a crash may repeat ~1 s)"),
    );
    line(w, format_args!("checkpoint = \"{}\"", sync.checkpoint));
    line(
        w,
        format_args!("# Full copies at a time per source host (0: no limit): masters sharing a host fork one by one."),
    );
    line(w, format_args!("full_syncs_per_host = {}", sync.full_syncs_per_host));
    line(w, format_args!("# Destination write limits per source (0: none)."));
    line(w, format_args!("max_keys_per_sec = {}", sync.max_keys_per_sec));
    line(w, format_args!("max_bytes_per_sec = {}", sync.max_bytes_per_sec));
    if !sync.db_map.is_empty() {
        line(w, format_args!(""));
        line(w, format_args!("# \"<source DB>\" = <destination DB>; a DB not listed keeps its number."));
        line(w, format_args!("[sync.db_map]"));
        for (from, to) in &sync.db_map {
            line(w, format_args!("\"{from}\" = {to}"));
        }
    }
    (out, listed)
}

fn line(out: &mut String, args: std::fmt::Arguments<'_>) {
    // Writing to a String cannot fail.
    let _ = out.write_fmt(args);
    out.push('\n');
}

fn password_line(out: &mut String, secret: &Secret, var: Option<&str>) {
    match var {
        Some(var) => line(out, format_args!("password_env = {}", quote(var))),
        None if secret.is_empty() => {}
        None => line(out, format_args!("password = {}", quote(secret.expose()))),
    }
}

/// A TOML string literal for `s`, escaped by the toml crate.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The variable each entry's password is saved as (sources, then the
/// destination), `None` for entries without a password. Names a password
/// was read from are kept, and reserved first, so that a generated name
/// never takes one of them.
fn assign_vars(config: &TaskConfig) -> Vec<Option<String>> {
    let entries: Vec<(&str, &Secret)> = config
        .sources
        .iter()
        .map(|s| (s.name.as_str(), &s.password))
        .chain([("destination", &config.destination.password)])
        .collect();
    let mut used: Vec<String> = entries.iter().filter_map(|(_, s)| s.env_var().map(str::to_owned)).collect();
    entries
        .iter()
        .map(|(entry, secret)| {
            if let Some(var) = secret.env_var() {
                return Some(var.to_owned());
            }
            if secret.is_empty() {
                return None;
            }
            let base = password_env_name(entry);
            let var = std::iter::once(base.clone())
                .chain((2..).map(|n| format!("{base}_{n}")))
                .find(|candidate| !used.contains(candidate))?;
            used.push(var.clone());
            Some(var)
        })
        .collect()
}

/// `state_dir` as the file should say it: relative to the file's directory
/// when it lies below it, else absolute.
fn state_dir_text(state_dir: &Path, file: &Path) -> String {
    let dir = file.parent().unwrap_or(Path::new(""));
    let absolute = |p: &Path| -> Option<PathBuf> {
        if p.as_os_str().is_empty() {
            std::env::current_dir().ok()
        } else {
            std::path::absolute(p).ok()
        }
    };
    let text = match (absolute(state_dir), absolute(dir)) {
        (Some(state), Some(base)) => match state.strip_prefix(&base) {
            Ok(rel) if rel.as_os_str().is_empty() => PathBuf::from("."),
            Ok(rel) => rel.to_path_buf(),
            Err(_) => state,
        },
        _ => state_dir.to_path_buf(),
    };
    text.to_string_lossy().into_owned()
}

/// Replaces `path` with `bytes` in one rename, the new file readable and
/// writable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let file_name =
        path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file"))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let temp = dir.join(format!(".{}.{}.tmp", file_name.to_string_lossy(), std::process::id()));
    // A leftover from a crashed save by a process with the same id.
    let _ = fs::remove_file(&temp);
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            options.mode(0o600);
            let file = options.open(&temp)?;
            // The umask may have taken bits away; set exactly 0600.
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            write_and_sync(file, bytes)?;
        }
        #[cfg(not(unix))]
        write_and_sync(options.open(&temp)?, bytes)?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    // Make the rename itself durable.
    #[cfg(unix)]
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn write_and_sync(mut file: fs::File, bytes: &[u8]) -> io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Addr, DestConfig, SourceConfig, SyncConfig};

    fn config(passwords: [&str; 3]) -> TaskConfig {
        let source = |name: &str, port: u16, password: &str| SourceConfig {
            name: name.into(),
            addr: Addr::new("127.0.0.1", port).unwrap(),
            password: Secret::new(password),
        };
        TaskConfig {
            name: "t".into(),
            state_dir: PathBuf::from("/var/lib/shardsync"),
            sources: vec![source("a-b", 1, passwords[0]), source("a.b", 2, passwords[1])],
            destination: DestConfig {
                addr: Addr::new("127.0.0.1", 3).unwrap(),
                password: Secret::new(passwords[2]),
                kind: Default::default(),
            },
            sync: SyncConfig::default(),
        }
    }

    #[test]
    fn env_names_are_upper_case_and_distinct() {
        assert_eq!(password_env_name("server1"), "SHARDSYNC_SERVER1_PASSWORD");
        assert_eq!(password_env_name("127.0.0.1:7001"), "SHARDSYNC_127_0_0_1_7001_PASSWORD");
        let vars = assign_vars(&config(["x", "y", "z"]));
        assert_eq!(
            vars,
            [
                Some("SHARDSYNC_A_B_PASSWORD".to_owned()),
                Some("SHARDSYNC_A_B_PASSWORD_2".to_owned()),
                Some("SHARDSYNC_DESTINATION_PASSWORD".to_owned())
            ]
        );
    }

    #[test]
    fn kept_names_win_and_empty_passwords_get_none() {
        let mut config = config(["x", "", "z"]);
        config.destination.password = Secret::new("z").with_env_var("SHARDSYNC_A_B_PASSWORD");
        assert_eq!(
            assign_vars(&config),
            [Some("SHARDSYNC_A_B_PASSWORD_2".to_owned()), None, Some("SHARDSYNC_A_B_PASSWORD".to_owned())]
        );
    }

    #[test]
    fn as_env_writes_no_password() {
        let text =
            render(&config(["secret-one", "", "user:secret-two"]), Path::new("/tmp/t.toml"), SavePasswords::AsEnv);
        assert!(!text.contains("secret-one") && !text.contains("secret-two"), "{text}");
        assert!(text.contains("password_env = \"SHARDSYNC_A_B_PASSWORD\""), "{text}");
        assert!(text.contains("#   SHARDSYNC_DESTINATION_PASSWORD  (password of destination)"), "{text}");
    }

    #[test]
    fn state_dir_is_written_relative_when_below_the_file() {
        let file = Path::new("/srv/tasks/t.toml");
        assert_eq!(state_dir_text(Path::new("/srv/tasks/.shardsync"), file), ".shardsync");
        assert_eq!(state_dir_text(Path::new("/srv/tasks"), file), ".");
        assert_eq!(state_dir_text(Path::new("/var/lib/s"), file), "/var/lib/s");
        assert_eq!(state_dir_text(Path::new(".shardsync"), Path::new("t.toml")), ".shardsync");
    }
}
