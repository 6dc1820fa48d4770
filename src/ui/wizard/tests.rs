//! The wizard without a terminal: keys and results in, state and effects
//! out; and every step drawn at 80×24 and 160×48 (snapshots).

use std::path::{Path, PathBuf};

use crossterm::event::KeyCode;

use super::*;
use crate::config::{ConflictMode, SavePasswords};
use crate::precheck::{CheckResult, CheckStatus};
use crate::ui::msg::{Effect, Msg, ProbeTarget};
use crate::ui::testing::{ch, ctrl, facts, key, screen, typed};

fn feed(w: &mut Wizard, msgs: impl IntoIterator<Item = Msg>) -> Vec<Effect> {
    msgs.into_iter().filter_map(|m| update(w, m)).collect()
}

/// Adds a source through the editor, as an operator types it.
fn add_source(w: &mut Wizard, name: &str, addr: &str, password: &str) {
    let mut keys = vec![ch('a')];
    keys.extend(typed(name));
    keys.push(key(KeyCode::Tab));
    keys.extend(typed(addr));
    keys.push(key(KeyCode::Tab));
    keys.extend(typed(password));
    keys.push(key(KeyCode::Enter));
    assert!(feed(w, keys).is_empty());
}

fn ok(addr: &str, keys: &[(u32, u64)]) -> Result<Box<crate::probe::ServerFacts>, String> {
    Ok(Box::new(facts(addr, "7.0.15", None, keys)))
}

fn check(id: &'static str, subject: &str, title: &str, status: CheckStatus, reason: &str) -> CheckResult {
    let fix = (status != CheckStatus::Pass).then(|| format!("fix for {id}"));
    CheckResult { id, subject: subject.into(), title: title.into(), status, reason: reason.into(), fix }
}

fn checks() -> Vec<CheckResult> {
    vec![
        check(
            "source.reachable",
            "source server1 (10.0.0.11:6379)",
            "reachable and authenticated",
            CheckStatus::Pass,
            "connected in 2 ms",
        ),
        check(
            "source.role",
            "source server2 (10.0.0.12:6379)",
            "a master",
            CheckStatus::Warn,
            "it is a replica of 10.0.0.2:6379",
        ),
        check(
            "destination.policy",
            "destination 10.0.0.20:6379",
            "maxmemory-policy noeviction",
            CheckStatus::Warn,
            "maxmemory-policy is allkeys-lru: keys may be evicted",
        ),
        check("state_dir.space", "state dir .shardsync", "free disk for the spool", CheckStatus::Pass, "41.2 GB free"),
    ]
}

/// A wizard at step `step` with two sources and a tested destination.
fn filled(step: Step) -> Wizard {
    let mut w = Wizard::new(Theme::mono());
    add_source(&mut w, "server1", "10.0.0.11:6379", "");
    add_source(&mut w, "server2", "10.0.0.12:6379", "s3cret-pw");
    let ids: Vec<u64> = w.sources.rows.iter().map(|r| r.id).collect();
    feed(
        &mut w,
        [
            Msg::Probed { target: ProbeTarget::Source(ids[0]), addr: "10.0.0.11:6379".into(), result: ok("10.0.0.11:6379", &[(0, 1_200_000), (2, 5_000)]) },
            Msg::Probed {
                target: ProbeTarget::Source(ids[1]),
                addr: "10.0.0.12:6379".into(),
                result: Err("cannot connect to 10.0.0.12:6379: connection refused: is the server running, and is this its port?".into()),
            },
        ],
    );
    w.destination = DestinationStep::new("10.0.0.20:6379", Secret::new("admin:Rp829dlwa"));
    w.destination.probe = Probe::Ok(Box::new(facts("10.0.0.20:6379", "7.2.4", None, &[(0, 12)])));
    w.step = step;
    w
}

#[test]
fn next_is_refused_until_a_source_is_there() {
    let mut w = Wizard::new(Theme::mono());
    assert_eq!(update(&mut w, ctrl('n')), None);
    assert_eq!(w.step, Step::Sources);
    assert!(w.notice.as_ref().is_some_and(|n| n.text.contains("add at least one source")));
    add_source(&mut w, "server1", "127.0.0.1:7001", "");
    assert_eq!(update(&mut w, ctrl('n')), None);
    assert_eq!(w.step, Step::Destination);
}

#[test]
fn the_editor_validates_and_an_empty_name_takes_the_address() {
    let mut w = Wizard::new(Theme::mono());
    let mut keys = vec![ch('a'), key(KeyCode::Tab)];
    keys.extend(typed("no-port"));
    keys.push(key(KeyCode::Tab));
    keys.push(key(KeyCode::Enter));
    feed(&mut w, keys);
    match &w.sources.dialog {
        Some(SourcesDialog::Edit(ed)) => {
            assert!(ed.error.as_deref().is_some_and(|e| e.contains("has no port")), "{ed:?}")
        }
        other => panic!("editor closed: {other:?}"),
    }
    feed(&mut w, [key(KeyCode::Esc)]);
    add_source(&mut w, "", "127.0.0.1:7001", "");
    assert_eq!(w.sources.rows[0].name, "127.0.0.1:7001");
    // The same server twice is refused.
    add_source(&mut w, "other", "127.0.0.1:7001", "");
    assert!(
        matches!(&w.sources.dialog, Some(SourcesDialog::Edit(ed)) if ed.error.as_deref().is_some_and(|e| e.contains("already has address")))
    );
}

#[test]
fn a_test_probes_the_row_and_its_answer_finds_it() {
    let mut w = Wizard::new(Theme::mono());
    add_source(&mut w, "server1", "127.0.0.1:7001", "pw");
    let effect = update(&mut w, ch('t'));
    let id = w.sources.rows[0].id;
    match effect {
        Some(Effect::Probe(reqs)) => {
            assert_eq!(reqs.len(), 1);
            assert_eq!(reqs[0].target, ProbeTarget::Source(id));
            assert_eq!(reqs[0].addr, "127.0.0.1:7001");
            assert_eq!(reqs[0].password.expose(), "pw");
            assert_eq!(reqs[0].own_keys, ["SHARDSYNC_HEARTBEAT"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.sources.rows[0].probe, Probe::Testing);
    // An answer for an address since changed is dropped.
    update(
        &mut w,
        Msg::Probed { target: ProbeTarget::Source(id), addr: "127.0.0.1:9999".into(), result: ok("x", &[]) },
    );
    assert_eq!(w.sources.rows[0].probe, Probe::Testing);
    update(
        &mut w,
        Msg::Probed { target: ProbeTarget::Source(id), addr: "127.0.0.1:7001".into(), result: ok("x", &[(0, 3)]) },
    );
    assert!(matches!(w.sources.rows[0].probe, Probe::Ok(_)));
}

#[test]
fn import_takes_a_pool_and_its_server_names() {
    let mut w = Wizard::new(Theme::mono());
    add_source(&mut w, "old", "127.0.0.1:1", "");
    let mut keys = vec![ch('i'), ctrl('u')];
    keys.extend(typed("/etc/nutcracker.yml"));
    keys.push(key(KeyCode::Enter));
    assert_eq!(feed(&mut w, keys), [Effect::ReadNutcracker(PathBuf::from("/etc/nutcracker.yml"))]);
    let pools = crate::config::nutcracker::parse(
        "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  servers:\n   - 127.0.0.1:7001:1 server1\n   - 127.0.0.1:7002:1\nbeta:\n  redis: true\n  servers:\n   - 127.0.0.1:7101:1 b1\n",
    )
    .unwrap();
    update(&mut w, Msg::NutcrackerRead { path: PathBuf::from("/etc/nutcracker.yml"), result: Ok(pools) });
    assert!(matches!(
        &w.sources.dialog,
        Some(SourcesDialog::Import(ImportDialog { phase: ImportPhase::Pools { .. }, .. }))
    ));
    feed(&mut w, [key(KeyCode::Enter)]);
    assert!(w.sources.dialog.is_none());
    let rows: Vec<(&str, &str)> = w.sources.rows.iter().map(|r| (r.name.as_str(), r.addr.as_str())).collect();
    assert_eq!(rows, [("server1", "127.0.0.1:7001"), ("127.0.0.1:7002", "127.0.0.1:7002")]);
}

#[test]
fn a_file_that_cannot_be_read_says_why_in_the_dialog() {
    let mut w = Wizard::new(Theme::mono());
    feed(&mut w, [ch('i'), key(KeyCode::Enter)]);
    update(
        &mut w,
        Msg::NutcrackerRead {
            path: PathBuf::from("/etc/nutcracker/nutcracker.yml"),
            result: Err("cannot read it".into()),
        },
    );
    assert!(
        matches!(&w.sources.dialog, Some(SourcesDialog::Import(ImportDialog { phase: ImportPhase::Path(Some(e)), .. })) if e == "cannot read it")
    );
}

#[test]
fn destination_validates_and_entering_conflicts_probes_it() {
    let mut w = Wizard::new(Theme::mono());
    add_source(&mut w, "server1", "127.0.0.1:7001", "");
    feed(&mut w, [ctrl('n')]);
    feed(&mut w, typed("127.0.0.1:7001"));
    assert_eq!(update(&mut w, ctrl('n')), None);
    assert!(w.notice.as_ref().is_some_and(|n| n.text.contains("is also source server1")));
    feed(&mut w, [ctrl('u')]);
    feed(&mut w, typed("127.0.0.1:7010"));
    feed(&mut w, [key(KeyCode::Tab)]);
    feed(&mut w, typed("admin:pw"));
    match update(&mut w, ctrl('n')) {
        Some(Effect::Probe(r)) => {
            assert_eq!(r[0].target, ProbeTarget::Destination);
            assert_eq!(r[0].password.expose(), "admin:pw");
            assert_eq!(r[0].own_keys, ["SHARDSYNC_HEARTBEAT:ckpt:server1"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.step, Step::Conflict);
    feed(&mut w, [key(KeyCode::Down)]);
    assert_eq!(w.conflict.mode, ConflictMode::Overwrite);
}

#[test]
fn databases_default_to_those_with_keys_and_toggle() {
    let mut w = filled(Step::Conflict);
    let effect = update(&mut w, ctrl('n'));
    // Both sources are asked again: counts change while they are written.
    assert!(matches!(effect, Some(Effect::Probe(r)) if r.len() == 2));
    let ids: Vec<u64> = w.sources.rows.iter().map(|r| r.id).collect();
    update(
        &mut w,
        Msg::Probed {
            target: ProbeTarget::Source(ids[0]),
            addr: "10.0.0.11:6379".into(),
            result: ok("a", &[(0, 10), (3, 4)]),
        },
    );
    update(
        &mut w,
        Msg::Probed { target: ProbeTarget::Source(ids[1]), addr: "10.0.0.12:6379".into(), result: ok("b", &[(0, 5)]) },
    );
    assert_eq!(w.databases.selected(), [0, 3]);
    assert_eq!(w.databases.rows[0].keys(), 15);
    feed(&mut w, [key(KeyCode::Down), ch(' ')]);
    assert_eq!(w.databases.selected(), [0]);
    feed(&mut w, [ch('a')]);
    assert_eq!(w.databases.selected(), [0, 3]);
    feed(&mut w, [ch('a')]);
    assert!(w.databases.selected().is_empty());
    assert_eq!(update(&mut w, ctrl('n')), None);
    assert_eq!(w.step, Step::Databases);
}

#[test]
fn precheck_blocks_on_a_fail_and_wants_each_warning_acknowledged() {
    let mut w = filled(Step::Databases);
    w.databases.refresh(&w.sources.rows, None);
    let effect = update(&mut w, ctrl('n'));
    let task = match effect {
        Some(Effect::Precheck(t)) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(task.sources.len(), 2);
    assert_eq!(task.sync.databases, Some(vec![0, 2]));
    assert_eq!(w.precheck.state, PrecheckState::Running);
    // Entering again with the same task does not run it twice.
    feed(&mut w, [ctrl('p')]);
    assert_eq!(update(&mut w, ctrl('n')), None);

    let mut lines = checks();
    lines.push(check(
        "destination.empty",
        "destination 10.0.0.20:6379",
        "target DBs empty",
        CheckStatus::Fail,
        "db0 holds 12 keys",
    ));
    for l in lines.clone() {
        update(&mut w, Msg::PrecheckLine(l));
    }
    update(&mut w, Msg::PrecheckDone(lines));
    assert_eq!(w.precheck.lines[0].status, CheckStatus::Fail, "fails come first");
    assert_eq!(update(&mut w, ctrl('n')), None);
    assert!(w.notice.as_ref().is_some_and(|n| n.text.contains("1 check(s) failed")));

    // Rerun: the fail is fixed, two warnings remain.
    assert!(matches!(update(&mut w, ch('r')), Some(Effect::Precheck(_))));
    update(&mut w, Msg::PrecheckDone(checks()));
    assert_eq!(w.precheck.unacknowledged(), 2);
    assert_eq!(update(&mut w, ctrl('n')), None);
    assert!(w.notice.as_ref().is_some_and(|n| n.text.contains("2 warning(s) to acknowledge")));
    feed(&mut w, [ch('a')]);
    assert_eq!(w.precheck.unacknowledged(), 1);
    feed(&mut w, [key(KeyCode::Down), key(KeyCode::Enter)]);
    assert!(w.precheck.detail, "Enter on a line opens its details while the precheck does not pass");
    feed(&mut w, [ch('a')]);
    assert!(!w.precheck.detail);
    assert_eq!(w.precheck.unacknowledged(), 0);
    assert_eq!(update(&mut w, ctrl('n')), None);
    assert_eq!(w.step, Step::Review);
}

/// Walks a filled wizard through the precheck (all pass) to the review.
fn at_review() -> Wizard {
    let mut w = filled(Step::Databases);
    w.databases.refresh(&w.sources.rows, None);
    update(&mut w, ctrl('n'));
    update(&mut w, Msg::PrecheckDone(vec![checks()[0].clone()]));
    update(&mut w, ctrl('n'));
    assert_eq!(w.step, Step::Review);
    w
}

#[test]
fn review_saves_without_passwords_then_starts() {
    let mut w = at_review();
    let effect = update(&mut w, key(KeyCode::Enter));
    let task = match effect {
        Some(Effect::Save { config, path, passwords }) => {
            assert_eq!(path, Path::new("migration.toml"));
            assert_eq!(passwords, SavePasswords::AsEnv);
            config
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(task.state_dir, Path::new(".").join(".shardsync"));
    assert_eq!(w.review.phase, ReviewPhase::Saving);
    assert_eq!(update(&mut w, ch('q')), None, "keys wait while saving");
    let vars = vec![("source `server2`".to_owned(), "SHARDSYNC_SERVER2_PASSWORD".to_owned())];
    assert_eq!(update(&mut w, Msg::Saved(Ok(vars.clone()))), Some(Effect::Start(task)));
    assert_eq!(w.review.vars, vars);
}

#[test]
fn review_asks_for_the_precheck_again_when_the_task_changed() {
    let mut w = at_review();
    // Typing in the task name changes the task (and its state directory).
    feed(&mut w, [key(KeyCode::Tab)]);
    feed(&mut w, typed("-2"));
    feed(&mut w, [key(KeyCode::BackTab)]);
    assert!(matches!(update(&mut w, key(KeyCode::Enter)), Some(Effect::Precheck(_))));
    assert_eq!(w.step, Step::Precheck);
}

#[test]
fn a_save_error_is_shown_and_keys_work_again() {
    let mut w = at_review();
    update(&mut w, key(KeyCode::Enter));
    update(&mut w, Msg::Saved(Err("cannot write /ro/migration.toml: read-only file system".into())));
    assert!(matches!(&w.review.phase, ReviewPhase::Failed(e) if e.contains("read-only")));
    assert_eq!(update(&mut w, key(KeyCode::Tab)), None);
    assert_eq!(w.review.focus, ReviewField::Name);
}

#[test]
fn quit_asks_first() {
    let mut w = filled(Step::Sources);
    assert_eq!(update(&mut w, ch('q')), None);
    assert!(w.confirm_quit);
    assert_eq!(update(&mut w, ch('n')), None);
    assert!(!w.confirm_quit);
    update(&mut w, ctrl('c'));
    assert_eq!(update(&mut w, ch('y')), Some(Effect::Exit));
    // In a text field, q is a letter.
    let mut w = filled(Step::Destination);
    update(&mut w, ch('q'));
    assert!(!w.confirm_quit);
}

#[test]
fn prefilled_from_a_task_file_keeps_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(
        &path,
        "name = \"t1\"\n[[source]]\nname = \"a\"\naddr = \"127.0.0.1:7001\"\npassword = \"pw\"\n\
         [destination]\naddr = \"127.0.0.1:7010\"\n[sync]\nconflict = \"overwrite\"\ndatabases = [0, 5]\nheartbeat_key = \"HB\"\n",
    )
    .unwrap();
    let task = TaskConfig::load(&path).unwrap();
    let w = Wizard::prefilled(&task, &path, Theme::mono());
    assert_eq!(w.conflict.mode, ConflictMode::Overwrite);
    assert!(w.review.save_passwords, "a file that held a password keeps it");
    let mut again = w.task_config().unwrap();
    again.sync.databases = Some(vec![0, 5]);
    assert_eq!(again, task);
}

#[test]
fn preview_never_shows_a_password() {
    let w = at_review();
    let text = screen(&w, 160, 48);
    assert!(!text.contains("s3cret-pw") && !text.contains("Rp829dlwa"), "{text}");
    assert!(text.contains("password_env = \"SHARDSYNC_SERVER2_PASSWORD\""), "{text}");
}

mod snapshots {
    use super::*;

    fn both(name: &str, w: &Wizard) {
        insta::assert_snapshot!(format!("{name}_80x24"), screen(w, 80, 24));
        insta::assert_snapshot!(format!("{name}_160x48"), screen(w, 160, 48));
    }

    #[test]
    fn step1_sources() {
        let mut w = filled(Step::Sources);
        w.sources.selected = 1;
        both("wizard_1_sources", &w);
    }

    #[test]
    fn step1_editor_and_import() {
        let mut w = filled(Step::Sources);
        update(&mut w, ch('e'));
        insta::assert_snapshot!("wizard_1_editor_80x24", screen(&w, 80, 24));
        update(&mut w, key(KeyCode::Esc));
        update(&mut w, ch('i'));
        update(&mut w, key(KeyCode::Enter));
        let pools = crate::config::nutcracker::parse(
            "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  servers:\n   - 10.0.0.11:6379:1 server1\n   - 10.0.0.12:6379:1 server2\n",
        )
        .unwrap();
        update(
            &mut w,
            Msg::NutcrackerRead { path: PathBuf::from("/etc/nutcracker/nutcracker.yml"), result: Ok(pools) },
        );
        insta::assert_snapshot!("wizard_1_import_80x24", screen(&w, 80, 24));
    }

    #[test]
    fn step2_destination() {
        both("wizard_2_destination", &filled(Step::Destination));
    }

    #[test]
    fn step2_destination_a_cluster_node() {
        let mut w = filled(Step::Destination);
        let mut facts = facts("10.0.0.20:6379", "7.2.4", None, &[]);
        facts.mode = crate::probe::ServerMode::Cluster;
        w.destination.probe = Probe::Ok(Box::new(facts));
        both("wizard_2_destination_cluster", &w);
    }

    #[test]
    fn step3_conflict() {
        both("wizard_3_conflict", &filled(Step::Conflict));
    }

    #[test]
    fn step4_databases() {
        let mut w = filled(Step::Databases);
        w.databases.refresh(&w.sources.rows, w.destination.probe.info());
        both("wizard_4_databases", &w);
    }

    #[test]
    fn step5_precheck() {
        let mut w = filled(Step::Precheck);
        w.precheck.state = PrecheckState::Running;
        update(&mut w, Msg::PrecheckDone(checks()));
        update(&mut w, ch('a'));
        both("wizard_5_precheck", &w);
        update(&mut w, key(KeyCode::Down));
        update(&mut w, ch('d'));
        insta::assert_snapshot!("wizard_5_precheck_detail_80x24", screen(&w, 80, 24));
    }

    #[test]
    fn step6_review() {
        both("wizard_6_review", &at_review());
    }

    #[test]
    fn quit_confirmation() {
        let mut w = filled(Step::Sources);
        update(&mut w, ch('q'));
        insta::assert_snapshot!("wizard_quit_80x24", screen(&w, 80, 24));
    }
}

#[test]
fn tiny_terminals_draw_without_panicking() {
    for step in Step::ALL {
        let mut w = filled(step);
        if step == Step::Precheck {
            w.precheck.state = PrecheckState::Running;
            update(&mut w, Msg::PrecheckDone(checks()));
            w.precheck.detail = true;
        }
        for (width, height) in [(1, 1), (20, 5), (40, 10), (79, 23)] {
            screen(&w, width, height);
        }
    }
    let mut w = filled(Step::Sources);
    update(&mut w, ch('a'));
    screen(&w, 30, 8);
}
