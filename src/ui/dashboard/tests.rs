//! The dashboard without a terminal: snapshots and keys in, state and
//! effects out; and its screens drawn at 80×24 and 160×48 (snapshots).

use std::path::PathBuf;

use crossterm::event::KeyCode;

use super::*;
use crate::engine::snapshot::ShardState;
use crate::ui::msg::Signal;
use crate::ui::testing::{alert, ch, ctrl, key, screen, shard, task_snapshot, T0};
use crate::verify::{DbCount, DiffKind, Difference};

fn info() -> TaskInfo {
    TaskInfo {
        name: "twemproxy-to-apsara".into(),
        destination: "10.0.0.20:6379".into(),
        sources: vec![
            ("server1".into(), "10.0.0.11:6379".into()),
            ("server2".into(), "10.0.0.12:6379".into()),
            ("server3".into(), "10.0.0.13:6379".into()),
        ],
        state_path: PathBuf::from("/var/lib/shardsync/twemproxy-to-apsara"),
        started_ms: T0 - 754_000,
    }
}

fn dashboard() -> Dashboard {
    Dashboard::new(info(), Theme::mono())
}

/// A dashboard that has seen a minute of snapshots, ending with `shards`.
fn after_a_minute(shards: impl Fn(i64) -> Vec<ShardSnapshot>) -> Dashboard {
    let mut d = dashboard();
    for i in 0..=240 {
        let t = T0 - 60_000 + i * 250;
        let mut snap = task_snapshot(shards(t), t);
        // A throughput curve, so the chart has a shape.
        for (n, s) in snap.shards.iter_mut().enumerate() {
            s.ops_per_sec = s.ops_per_sec * (40 + ((i / 4 + n as i64 * 7) % 20) as u64) / 60;
        }
        d.apply_snapshot(snap);
    }
    d
}

fn copying(t: i64) -> Vec<ShardSnapshot> {
    // Applied grows 5 MB a second, so the ETA is known.
    let mut a = shard("server1", ShardState::Rdb, t);
    a.rdb_applied = (300 << 20) + ((t - T0 + 60_000) / 200) as u64 * (1 << 20);
    a.rdb_bytes = a.rdb_applied + (120 << 20);
    let b = shard("server2", ShardState::Incremental, t);
    let mut c = shard("server3", ShardState::Connecting, t);
    c.waiting = Some("waiting for another full copy on host 10.0.0.11 to finish".into());
    vec![a, b, c]
}

fn states(t: i64) -> Vec<ShardSnapshot> {
    let mut a = shard("server1", ShardState::Rdb, t);
    a.rdb_applied = 300 << 20;
    let mut b = shard("server2", ShardState::Reconnecting, t);
    let mut c = shard("server3", ShardState::Failed, t);
    if t >= T0 - 30_000 {
        alert(
            &mut b,
            T0 - 30_000,
            None,
            "shard server2: source 10.0.0.12:6379 closed the connection; connecting again in 2 s",
        );
        alert(
            &mut c,
            T0 - 30_000,
            Some(4_242),
            "FLUSHALL from the source refused (sync.flush = \"refuse\"): the other shards' keys stay",
        );
        c.state = ShardState::Failed;
    } else {
        b.state = ShardState::Incremental;
        c.state = ShardState::Incremental;
    }
    vec![a, b, c]
}

fn incremental(t: i64) -> Vec<ShardSnapshot> {
    ["server1", "server2", "server3"].iter().map(|n| shard(n, ShardState::Incremental, t)).collect()
}

#[test]
fn snapshots_feed_events_history_and_the_eta() {
    let d = after_a_minute(states);
    let messages: Vec<&str> = d.events.iter().map(|e| e.message.as_str()).collect();
    assert!(messages.contains(&"full copy started"), "{messages:?}");
    // The alert says why the link was lost; the state change adds nothing.
    assert!(!messages.iter().any(|m| m.starts_with("reconnecting")), "{messages:?}");
    assert!(messages.iter().any(|m| m.ends_with("closed the connection; connecting again in 2 s")), "{messages:?}");
    assert!(messages.iter().any(|m| m.starts_with("FAILED: shard server3")), "{messages:?}");
    assert!(messages.iter().any(|m| m.starts_with("FLUSHALL from the source refused") && m.ends_with("(offset 4242)")));
    // Each alert is logged once, though every snapshot carries it.
    assert_eq!(messages.iter().filter(|m| m.starts_with("FLUSHALL")).count(), 1);
    assert_eq!(d.throughput.len(), 61);
    assert_eq!(d.elapsed_ms(), 754_000);

    let d = after_a_minute(copying);
    let s = &d.snapshot.shards[0];
    let eta = d.eta_ms(s).unwrap();
    // 200 MB left at 5 MB/s.
    assert!((35_000..=45_000).contains(&eta), "{eta}");
}

#[test]
fn an_unchanged_snapshot_within_the_second_needs_no_redraw() {
    let mut d = dashboard();
    assert!(d.apply_snapshot(task_snapshot(incremental(T0), T0)));
    assert!(!d.apply_snapshot(task_snapshot(incremental(T0 + 250), T0 + 250)));
    let lagging = |t| {
        let mut s = incremental(t);
        s[0].lag_ms = Some(40);
        task_snapshot(s, t)
    };
    assert!(d.apply_snapshot(lagging(T0 + 500)));
    assert!(!d.apply_snapshot(lagging(T0 + 750)));
    // The clock shown moves once a second.
    assert!(d.apply_snapshot(lagging(T0 + 1000)));
}

#[test]
fn pause_and_resume_the_selected_shard() {
    let mut d = dashboard();
    d.apply_snapshot(task_snapshot(incremental(T0), T0));
    update(&mut d, key(KeyCode::Down));
    assert_eq!(update(&mut d, ch('p')), Some(Effect::Engine(Command::PauseShard("server2".into()))));
    let mut shards = incremental(T0 + 250);
    shards[1].state = ShardState::Stopped;
    d.apply_snapshot(task_snapshot(shards, T0 + 250));
    assert_eq!(update(&mut d, ch('p')), Some(Effect::Engine(Command::ResumeShard("server2".into()))));
    assert_eq!(update(&mut d, ch('R')), Some(Effect::Engine(Command::ResumeAll)));
}

#[test]
fn quit_asks_then_stops_cleanly_once() {
    let mut d = dashboard();
    d.apply_snapshot(task_snapshot(incremental(T0), T0));
    assert_eq!(update(&mut d, ch('q')), None);
    assert_eq!(d.overlay, Some(Overlay::ConfirmQuit));
    assert_eq!(update(&mut d, ch('n')), None);
    assert!(d.phase == Phase::Running && d.overlay.is_none());
    update(&mut d, ctrl('c'));
    assert_eq!(update(&mut d, ch('y')), Some(Effect::StopTask));
    assert_eq!(d.phase, Phase::Stopping);
    assert_eq!(update(&mut d, Msg::Signal(Signal::Hangup)), None, "already stopping");
    assert_eq!(update(&mut d, ch('p')), None, "keys wait while stopping");
}

#[test]
fn a_hangup_stops_without_asking() {
    let mut d = dashboard();
    assert_eq!(update(&mut d, Msg::Signal(Signal::Hangup)), Some(Effect::StopTask));
    assert!(d.events.back().is_some_and(|e| e.message.starts_with("the terminal hung up")));
    let mut d = dashboard();
    assert_eq!(update(&mut d, Msg::InputClosed), Some(Effect::StopTask));
}

#[test]
fn verify_runs_from_the_chooser_and_keeps_its_result() {
    let mut d = dashboard();
    assert_eq!(update(&mut d, ch('v')), None);
    assert_eq!(d.overlay, Some(Overlay::VerifyChoose));
    assert_eq!(update(&mut d, ch('c')), Some(Effect::Verify(VerifyMode::Counts)));
    assert_eq!(d.overlay, Some(Overlay::VerifyPanel));
    update(
        &mut d,
        Msg::VerifyProgress(VerifyProgress { phase: "counting".into(), compared: 1, total: 2, differences: 0 }),
    );
    assert!(matches!(&d.verify, VerifyState::Running { progress, .. } if progress.compared == 1));
    assert_eq!(update(&mut d, ch('x')), Some(Effect::CancelVerify));
    update(&mut d, key(KeyCode::Esc));
    assert_eq!(d.overlay, None);
    update(&mut d, Msg::VerifyDone(Ok(report(false))));
    assert!(matches!(&d.verify, VerifyState::Done(r) if r.differences_total == 2));
    assert!(d.events.back().is_some_and(|e| e.message == "verify (full): 2 difference(s) (v shows them)"));
    update(&mut d, ch('v'));
    assert_eq!(d.overlay, Some(Overlay::VerifyPanel));
    update(&mut d, ch('n'));
    assert_eq!(d.overlay, Some(Overlay::VerifyChoose));
}

#[test]
fn a_report_is_saved_where_the_operator_says() {
    let mut d = after_a_minute(states);
    update(&mut d, ch('s'));
    let Some(Overlay::ReportPath(field)) = &d.overlay else { panic!("{:?}", d.overlay) };
    assert_eq!(field.value(), "/var/lib/shardsync/twemproxy-to-apsara/status-20251125-095000.txt");
    match update(&mut d, key(KeyCode::Enter)) {
        Some(Effect::SaveReport { path, text }) => {
            assert!(path.ends_with("status-20251125-095000.txt"));
            assert!(text.contains("server3      failed"), "{text}");
            assert!(text.contains("FLUSHALL from the source refused"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    update(&mut d, Msg::ReportSaved(Ok(PathBuf::from("/tmp/r.txt"))));
    assert!(d.notice.as_ref().is_some_and(|n| n.text == "status report saved to /tmp/r.txt"));
}

#[test]
fn events_scroll_and_open() {
    let mut d = after_a_minute(states);
    update(&mut d, key(KeyCode::Tab));
    assert_eq!(d.focus, Focus::Events);
    update(&mut d, key(KeyCode::Up));
    assert_eq!(d.event_cursor, 1);
    update(&mut d, key(KeyCode::Enter));
    assert_eq!(d.overlay, Some(Overlay::EventDetail));
}

#[test]
fn copy_bar_shows_applied_received_and_the_rest() {
    assert_eq!(render::copy_bar(50, 25, 100, 8), "██▒▒░░░░");
    assert_eq!(render::copy_bar(100, 100, 100, 4), "████");
    assert_eq!(render::copy_bar(0, 0, 0, 3), "░░░");
}

/// A full verify that found two keys missing (or none).
fn report(equal: bool) -> Box<VerifyReport> {
    let missing = |shard: &str, key: &str| Difference {
        shard: shard.into(),
        db: 0,
        key: bytes::Bytes::copy_from_slice(key.as_bytes()),
        kind: DiffKind::Missing,
        detail: "not on the destination".into(),
    };
    let source_total = 4_691_356;
    Box::new(VerifyReport {
        mode: VerifyMode::Full,
        counts: vec![
            DbCount {
                db: 0,
                sources: vec![("server1".into(), 0, 2_000_000), ("server2".into(), 0, 2_691_356)],
                source_total,
                destination: if equal { source_total } else { source_total - 2 },
            },
            DbCount { db: 2, sources: vec![("server1".into(), 2, 5_000)], source_total: 5_000, destination: 5_000 },
        ],
        compared: 4_696_356,
        differences: if equal { vec![] } else { vec![missing("server1", "user:1042"), missing("server2", "cart:77")] },
        differences_total: if equal { 0 } else { 2 },
        unsettled: vec![],
        unsettled_total: 0,
        not_rechecked: 0,
        elapsed: std::time::Duration::from_millis(27_300),
    })
}

mod snapshots {
    use super::*;

    fn both(name: &str, d: &Dashboard) {
        insta::assert_snapshot!(format!("{name}_80x24"), screen(d, 80, 24));
        insta::assert_snapshot!(format!("{name}_160x48"), screen(d, 160, 48));
    }

    #[test]
    fn rdb_with_progress() {
        both("dashboard_rdb", &after_a_minute(copying));
    }

    #[test]
    fn incremental() {
        both("dashboard_incremental", &after_a_minute(super::incremental));
    }

    #[test]
    fn a_cluster_destination_shows_its_masters() {
        let mut d = after_a_minute(super::incremental);
        let mut snap = d.snapshot.clone();
        snap.destination_nodes = (0..3u64)
            .map(|i| crate::engine::snapshot::NodeStats {
                addr: format!("10.0.1.{}:6379", 21 + i),
                slots: [5461, 5462, 5461][i as usize],
                stats: crate::engine::snapshot::DestStats {
                    ts_ms: snap.shards[0].ts_ms,
                    keys: 1_890_000 + i * 1_234,
                    used_memory: (520 + i * 7) << 20,
                    maxmemory: 4 << 30,
                    ops_per_sec: 17_000 + i * 100,
                },
                // The last master failed over a minute ago.
                errors: if i == 2 { 3 } else { 0 },
            })
            .collect();
        d.apply_snapshot(snap);
        both("dashboard_cluster_destination", &d);
    }

    #[test]
    fn reconnecting_and_failed() {
        both("dashboard_reconnecting_failed", &after_a_minute(states));
    }

    #[test]
    fn shard_detail() {
        let mut d = after_a_minute(states);
        update(&mut d, key(KeyCode::Down));
        update(&mut d, key(KeyCode::Enter));
        both("dashboard_detail", &d);
        // The shard in its full copy: the bar and the byte counts on one line.
        update(&mut d, key(KeyCode::Up));
        insta::assert_snapshot!("dashboard_detail_rdb_80x24", screen(&d, 80, 24));
    }

    #[test]
    fn help() {
        let mut d = after_a_minute(super::incremental);
        update(&mut d, ch('?'));
        both("dashboard_help", &d);
    }

    #[test]
    fn alert_pane_focused() {
        let mut d = after_a_minute(states);
        for i in 0..12 {
            let t = T0 + i * 1000;
            let mut shards = states(t);
            for _ in 0..=i {
                alert(
                    &mut shards[0],
                    t,
                    Some(1_000 + i as u64),
                    &format!("key user:{i} in db 0: value too big for one RESTORE, sent as native commands"),
                );
            }
            shards[0].alerts_total = (i + 1) as u64;
            d.apply_snapshot(task_snapshot(shards, t));
        }
        update(&mut d, key(KeyCode::Tab));
        update(&mut d, key(KeyCode::Up));
        both("dashboard_alerts", &d);
        update(&mut d, key(KeyCode::Enter));
        insta::assert_snapshot!("dashboard_alert_detail_80x24", screen(&d, 80, 24));
    }

    #[test]
    fn verify_panel_and_quit() {
        let mut d = after_a_minute(super::incremental);
        update(&mut d, ch('v'));
        insta::assert_snapshot!("dashboard_verify_choose_80x24", screen(&d, 80, 24));
        update(&mut d, ch('c'));
        update(&mut d, Msg::VerifyDone(Ok(report(false))));
        both("dashboard_verify_result", &d);
        update(&mut d, key(KeyCode::Esc));
        update(&mut d, ch('q'));
        insta::assert_snapshot!("dashboard_quit_80x24", screen(&d, 80, 24));
        update(&mut d, ch('y'));
        insta::assert_snapshot!("dashboard_stopping_80x24", screen(&d, 80, 24));
    }

    #[test]
    fn colour_off_and_on_draw_the_same_text() {
        let mut d = after_a_minute(states);
        let mono = screen(&d, 80, 24);
        d.theme = Theme { color: true };
        assert_eq!(screen(&d, 80, 24), mono);
    }
}

#[test]
fn tiny_terminals_draw_without_panicking() {
    let mut d = after_a_minute(states);
    for overlay in [None, Some(Overlay::Help), Some(Overlay::ConfirmQuit), Some(Overlay::VerifyChoose)] {
        d.overlay = overlay;
        for (w, h) in [(1, 1), (20, 5), (40, 10), (79, 23)] {
            screen(&d, w, h);
        }
    }
    d.view = View::Detail;
    screen(&d, 30, 8);
}
