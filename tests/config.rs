//! The task file module against the files in tests/fixtures/config/: good
//! files load to exactly the expected config; each bad file states, in its
//! `# expect:` and `# expect-line:` header comments, what the error must say
//! and which line it must point at. Plus `password_env` with the real
//! environment, redaction, and save/load round trips.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use shardsync::config::{
    save, Addr, CheckpointStore, ConflictMode, DestConfig, ErrorKind, FlushPolicy, ModulePolicy, SavePasswords, Secret,
    SourceConfig, SyncConfig, TaskConfig,
};

/// Every password the fixtures contain; none may appear in formatted output.
const FIXTURE_PASSWORDS: &[&str] = &[
    "s2-secret",
    "Rp829dlwa",
    "fixture-secret",
    "fixture-dest-secret",
    "server2-own-secret",
    "twelve",
    "hunter2",
    "8675309",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

fn fixture_env(var: &str) -> Option<String> {
    match var {
        "SHARDSYNC_FIXTURE_PASSWORD" => Some("fixture-secret".into()),
        "SHARDSYNC_FIXTURE_DEST_PASSWORD" => Some("fixture-dest-secret".into()),
        _ => None,
    }
}

fn load(relative: &str) -> TaskConfig {
    let path = fixtures().join(relative);
    TaskConfig::load_with_env(&path, &fixture_env).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn addr(text: &str) -> Addr {
    text.parse().expect("a valid address in the test")
}

fn assert_no_password(text: &str) {
    for password in FIXTURE_PASSWORDS {
        assert!(!text.contains(password), "`{password}` leaked into:\n{text}");
    }
}

#[test]
fn bad_files_name_the_problem_and_the_line() {
    let mut checked = 0;
    let mut entries: Vec<_> = fs::read_dir(fixtures().join("bad")).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let text = fs::read_to_string(&path).unwrap();
        let expects: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# expect: ")).collect();
        let line = text.lines().find_map(|l| l.strip_prefix("# expect-line: ")).expect("an expect-line header");
        assert!(!expects.is_empty(), "{}: no `# expect:` header", path.display());

        let err = TaskConfig::load_with_env(&path, &fixture_env).expect_err(&path.display().to_string());
        let message = err.to_string();
        assert!(message.starts_with(&path.display().to_string()), "{message}");
        for expect in expects {
            assert!(message.contains(expect), "{}:\n  got:      {message}\n  expected: {expect}", path.display());
        }
        let expected_line = if line == "none" { None } else { Some(line.parse::<usize>().unwrap()) };
        assert_eq!(err.line(), expected_line, "{message}");
        assert_no_password(&message);
        assert_no_password(&format!("{err:?}"));
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} bad fixtures");
}

#[test]
fn unknown_key_error_is_typed() {
    let err = TaskConfig::load_with_env(&fixtures().join("bad/unknown-key-sync.toml"), &fixture_env).unwrap_err();
    match err.kind() {
        ErrorKind::UnknownKey { key, section, line, expected } => {
            assert_eq!((key.as_str(), section.as_str(), *line), ("conflcit", "[sync]", 14));
            assert!(expected.contains(&"conflict"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn full_file_loads_every_key() {
    let config = load("good/full.toml");
    let expected = TaskConfig {
        name: "twemproxy-to-apsara".into(),
        state_dir: fixtures().join("good/.shardsync"),
        sources: vec![
            SourceConfig { name: "server1".into(), addr: addr("127.0.0.1:7001"), password: Secret::none() },
            SourceConfig { name: "server2".into(), addr: addr("127.0.0.1:7002"), password: Secret::new("s2-secret") },
        ],
        destination: DestConfig {
            addr: addr("127.0.0.1:6379"),
            password: Secret::new("admin:Rp829dlwa"),
            kind: Default::default(),
        },
        sync: SyncConfig {
            conflict: ConflictMode::Overwrite,
            databases: Some(vec![0, 1, 2]),
            flush: FlushPolicy::Forward,
            heartbeat_key: "MY_HEARTBEAT".into(),
            heartbeat_ms: 250,
            big_key_bytes: 1 << 20,
            db_map: BTreeMap::from([(1, 0), (2, 3)]),
            checkpoint: CheckpointStore::Local,
            full_syncs_per_host: 2,
            max_keys_per_sec: 50_000,
            max_bytes_per_sec: 10_000_000,
            modules: ModulePolicy::Skip,
        },
    };
    assert_eq!(config, expected);
    assert_eq!(config.state_path(), fixtures().join("good/.shardsync/twemproxy-to-apsara"));
    assert_eq!(config.checkpoint_key("server2"), "MY_HEARTBEAT:ckpt:server2");
    assert_eq!(config.sync.target_db(1), 0);
    let creds = config.destination.password.credentials().unwrap();
    assert_eq!((creds.user(), creds.password()), (Some("admin"), "Rp829dlwa"));
}

#[test]
fn minimal_file_gets_the_defaults() {
    let config = load("good/minimal.toml");
    assert_eq!(config.sync, SyncConfig::default());
    assert_eq!(config.state_dir, fixtures().join("good/.shardsync"));
    assert_eq!(config.destination.addr.to_string(), "[::1]:6380");
    assert!(config.sources[0].password.is_empty() && config.destination.password.is_empty());
    assert_eq!(config.checkpoint_key("only"), "SHARDSYNC_HEARTBEAT:ckpt:only");
}

#[test]
fn twemproxy_pool_with_names_and_password_overrides() {
    let config = load("good/twemproxy.toml");
    let sources: Vec<_> =
        config.sources.iter().map(|s| (s.name.as_str(), s.addr.to_string(), s.password.expose())).collect();
    assert_eq!(
        sources,
        [
            ("server1", "127.0.0.1:7001".to_owned(), "fixture-secret"),
            ("server2", "127.0.0.1:7002".to_owned(), "server2-own-secret"),
        ]
    );
    assert_eq!(config.sources[0].password.env_var(), Some("SHARDSYNC_FIXTURE_PASSWORD"));
    assert_eq!(config.destination.password.expose(), "fixture-dest-secret");
    assert_eq!(config.state_path(), Path::new("/var/lib/shardsync/from-alpha"));
}

#[test]
fn twemproxy_pool_without_names_uses_host_port() {
    let config = load("good/twemproxy-unnamed.toml");
    let sources: Vec<_> = config.sources.iter().map(|s| (s.name.as_str(), s.password.expose())).collect();
    assert_eq!(sources, [("10.0.0.11:6379", ""), ("10.0.0.12:6379", "twelve"), ("[fd00::13]:6379", "")]);
    assert_eq!(config.sources[2].addr.host(), "fd00::13");
    assert_eq!(config.checkpoint_key("10.0.0.11:6379"), "SHARDSYNC_HEARTBEAT:ckpt:10.0.0.11:6379");
}

#[test]
fn formatted_configs_and_errors_never_show_passwords() {
    for file in ["good/full.toml", "good/twemproxy.toml", "good/twemproxy-unnamed.toml"] {
        let config = load(file);
        assert_no_password(&format!("{config:?}"));
        assert_no_password(&format!("{config:#?}"));
        for source in &config.sources {
            assert_no_password(&format!("{} {} {:?}", source.name, source.password, source.password));
        }
    }
    assert!(format!("{:?}", load("good/full.toml")).contains("password: ***"));
}

/// The process environment, with variable names no other test uses.
#[test]
fn password_env_reads_the_process_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("task.toml");
    fs::write(
        &path,
        "name = \"env\"\n\n[[source]]\nname = \"s1\"\naddr = \"127.0.0.1:7001\"\npassword_env = \"SHARDSYNC_IT_SOURCE_PW\"\n\n\
         [destination]\naddr = \"127.0.0.1:6379\"\npassword_env = \"SHARDSYNC_IT_DEST_PW\"\n",
    )
    .unwrap();

    std::env::set_var("SHARDSYNC_IT_SOURCE_PW", "from-the-env");
    let err = TaskConfig::load(&path).unwrap_err();
    assert_eq!(err.line(), Some(10));
    assert!(
        err.to_string().contains(
            "the environment variable `SHARDSYNC_IT_DEST_PW` is not set (password_env of destination, line 10)"
        ),
        "{err}"
    );

    std::env::set_var("SHARDSYNC_IT_DEST_PW", "user:dest-from-env");
    let config = TaskConfig::load(&path).unwrap();
    assert_eq!(config.sources[0].password.expose(), "from-the-env");
    assert_eq!(config.destination.password.expose(), "user:dest-from-env");
    let shown = format!("{config:?}");
    assert!(!shown.contains("from-the-env") && !shown.contains("dest-from-env"), "{shown}");

    let secret = Secret::from_env("SHARDSYNC_IT_SOURCE_PW").unwrap();
    assert_eq!((secret.expose(), secret.env_var()), ("from-the-env", Some("SHARDSYNC_IT_SOURCE_PW")));
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).expect("the saved file exists").permissions().mode() & 0o777
}

#[test]
fn save_then_load_gives_the_same_config() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["good/full.toml", "good/minimal.toml", "good/twemproxy.toml", "good/twemproxy-unnamed.toml"] {
        let config = load(file);
        let path = dir.path().join("saved.toml");
        let vars = save(&config, &path, SavePasswords::Include).unwrap();
        assert!(vars.is_empty());
        let again = TaskConfig::load_with_env(&path, &|_| None).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(again, config, "{file}:\n{}", fs::read_to_string(&path).unwrap());
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
    }
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["saved.toml"], "no temporary file is left behind");
}

#[test]
fn save_as_env_writes_variable_names_not_passwords() {
    let config = load("good/full.toml");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("task.toml");
    let vars = save(&config, &path, SavePasswords::AsEnv).unwrap();
    let pairs: Vec<_> = vars.iter().map(|v| (v.entry.as_str(), v.var.as_str())).collect();
    assert_eq!(
        pairs,
        [("source `server2`", "SHARDSYNC_SERVER2_PASSWORD"), ("destination", "SHARDSYNC_DESTINATION_PASSWORD")]
    );
    let text = fs::read_to_string(&path).unwrap();
    assert_no_password(&text);
    assert!(text.contains("password_env = \"SHARDSYNC_SERVER2_PASSWORD\""), "{text}");

    let env = |var: &str| match var {
        "SHARDSYNC_SERVER2_PASSWORD" => Some("s2-secret".to_owned()),
        "SHARDSYNC_DESTINATION_PASSWORD" => Some("admin:Rp829dlwa".to_owned()),
        _ => None,
    };
    // The state dir lies outside the new file's directory: it is written
    // absolute and so still names the same place.
    assert!(text.contains(&format!("state_dir = \"{}\"", config.state_dir.display())), "{text}");
    assert_eq!(TaskConfig::load_with_env(&path, &env).unwrap(), config);
}

#[test]
fn save_keeps_the_variables_passwords_came_from() {
    let config = load("good/twemproxy.toml");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("task.toml");
    let vars = save(&config, &path, SavePasswords::AsEnv).unwrap();
    let names: Vec<_> = vars.iter().map(|v| v.var.as_str()).collect();
    assert_eq!(names, ["SHARDSYNC_FIXTURE_PASSWORD", "SHARDSYNC_SERVER2_PASSWORD", "SHARDSYNC_FIXTURE_DEST_PASSWORD"]);
    let env = |var: &str| {
        fixture_env(var).or_else(|| (var == "SHARDSYNC_SERVER2_PASSWORD").then(|| "server2-own-secret".into()))
    };
    assert_eq!(TaskConfig::load_with_env(&path, &env).unwrap(), config);
}

#[cfg(unix)]
#[test]
fn save_replaces_a_readable_file_with_a_private_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("task.toml");
    fs::write(&path, "old").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    save(&load("good/full.toml"), &path, SavePasswords::Include).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert!(fs::read_to_string(&path).unwrap().starts_with("# shardsync task file"));
}

#[test]
fn state_dir_is_relative_to_the_task_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("task.toml");
    fs::write(
        &path,
        "name = \"rel\"\nstate_dir = \"state\"\n[[source]]\nname = \"a\"\naddr = \"h:1\"\n[destination]\naddr = \"h:2\"\n",
    )
    .unwrap();
    let config = TaskConfig::load(&path).unwrap();
    assert_eq!(config.state_path(), dir.path().join("state").join("rel"));
    save(&config, &path, SavePasswords::Include).unwrap();
    assert!(fs::read_to_string(&path).unwrap().contains("state_dir = \"state\""));
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let path = fixtures().join("no-such-task.toml");
    let err = TaskConfig::load(&path).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Io { .. }));
    let message = err.to_string();
    assert!(message.contains("no-such-task.toml") && message.contains("cannot read the task file"), "{message}");
}
