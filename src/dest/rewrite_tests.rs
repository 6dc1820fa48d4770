//! Golden command lists for every form of `Rewriter`: each test feeds the
//! events of one or a few keys and compares the commands, rendered as
//! space-separated escaped arguments, with the expected list.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::*;
use crate::dest::caps::RedisVersion;
use crate::rdb::{ModuleId, ModuleValue, StreamConsumer, StreamEntry, StreamGroup};

const NOW: i64 = 1_700_000_000_000;
const LATER: i64 = NOW + 3_600_000;

fn caps(v: &str) -> DestCaps {
    DestCaps::new(RedisVersion::parse(v).unwrap())
}

fn opts(v: &str, conflict: Conflict) -> RewriteOptions {
    let mut o = RewriteOptions::new(caps(v), conflict);
    o.temp_tag = "tmp".to_owned();
    o
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn start(db: u64, key: &str, kind: ValueKind, expire_at_ms: Option<i64>) -> Event {
    Event::KeyStart(Box::new(KeyStart {
        db,
        key: b(key),
        kind,
        undecoded: false,
        rdb_type: 0,
        expire_at_ms,
        idle_secs: None,
        lfu_freq: None,
    }))
}

fn end(payload: Option<Bytes>) -> Event {
    Event::KeyEnd { payload }
}

/// A fake DUMP payload with the given trailer version.
fn payload(version: u16) -> Bytes {
    let mut p = b"\x00\x03abc".to_vec();
    p.extend_from_slice(&version.to_le_bytes());
    p.extend_from_slice(&[0xAA; 8]);
    Bytes::from(p)
}

fn render(cmds: &[ApplyCmd]) -> Vec<String> {
    cmds.iter()
        .map(|c| c.cmd.args().iter().map(|a| a.escape_ascii().to_string()).collect::<Vec<_>>().join(" "))
        .collect()
}

fn run(o: RewriteOptions, events: Vec<Event>) -> (Vec<ApplyCmd>, Rewriter) {
    let mut rw = Rewriter::new(o);
    let mut out = Vec::new();
    for (i, ev) in events.into_iter().enumerate() {
        rw.feed(ev, 100 + i as u64, NOW, &mut out).unwrap();
    }
    (out, rw)
}

fn golden(o: RewriteOptions, events: Vec<Event>, expected: &[&str]) -> Rewriter {
    let (out, rw) = run(o, events);
    assert_eq!(render(&out), expected);
    rw
}

fn grace_at() -> String {
    (NOW + 5_000).to_string()
}

#[test]
fn restore_with_absolute_ttl_and_replace() {
    let p = payload(9);
    let shown = p.escape_ascii().to_string();
    let rw = golden(
        opts("7.0.15", Conflict::Overwrite),
        vec![start(0, "k", ValueKind::String, Some(LATER)), Event::Chunk(Chunk::String(b("abc"))), end(Some(p))],
        &["SELECT 0", &format!("RESTORE k {LATER} {shown} ABSTTL REPLACE")],
    );
    assert_eq!(rw.stats().restored, 1);
    assert_eq!(rw.stats().keys, 1);
}

#[test]
fn restore_without_replace_is_if_absent_and_old_servers_get_relative_ttls() {
    let p = payload(8);
    let shown = p.escape_ascii().to_string();
    let (out, _) = run(
        opts("4.0.14", Conflict::Intercept),
        vec![start(0, "k", ValueKind::String, Some(LATER)), Event::Chunk(Chunk::String(b("abc"))), end(Some(p))],
    );
    assert_eq!(render(&out), ["SELECT 0".to_owned(), format!("RESTORE k 3600000 {shown}")]);
    assert_eq!(out[1].rule, ReplyRule::IfAbsent { temp: None });
    assert_eq!(out[1].origin, Origin { db: 0, key: b("k"), offset: 100 });
}

#[test]
fn payloads_newer_than_the_destination_or_too_big_use_commands() {
    let events =
        || vec![start(0, "k", ValueKind::String, None), Event::Chunk(Chunk::String(b("abc"))), end(Some(payload(10)))];
    golden(opts("6.0.9", Conflict::Overwrite), events(), &["SELECT 0", "SET k abc"]);
    let mut o = opts("7.0.15", Conflict::Overwrite);
    o.big_key_bytes = 0;
    let rw = golden(o, events(), &["SELECT 0", "SET k abc"]);
    assert_eq!((rw.stats().restored, rw.stats().rewritten), (0, 1));
}

#[test]
fn expired_and_nearly_expired_keys_get_the_grace_ttl() {
    let p = payload(9);
    let shown = p.escape_ascii().to_string();
    let g = grace_at();
    let rw = golden(
        opts("7.0.15", Conflict::Overwrite),
        vec![
            start(0, "gone", ValueKind::String, Some(NOW - 10)),
            Event::Chunk(Chunk::String(b("abc"))),
            end(Some(p.clone())),
            start(0, "soon", ValueKind::String, Some(NOW + 100)),
            Event::Chunk(Chunk::String(b("x"))),
            end(None),
            start(0, "fine", ValueKind::String, Some(LATER)),
            Event::Chunk(Chunk::String(b("y"))),
            end(None),
        ],
        &[
            "SELECT 0",
            &format!("RESTORE gone {g} {shown} ABSTTL REPLACE"),
            &format!("SET soon x PXAT {g}"),
            &format!("SET fine y PXAT {LATER}"),
        ],
    );
    assert_eq!((rw.stats().ttl_expired, rw.stats().ttl_raised), (1, 1));
}

#[test]
fn strings_are_one_set_nx_unless_overwriting() {
    golden(
        opts("6.0.9", Conflict::Intercept),
        vec![start(0, "k", ValueKind::String, Some(LATER)), Event::Chunk(Chunk::String(b("v"))), end(None)],
        &["SELECT 0", "SET k v PX 3600000 NX"],
    );
    let (out, _) = run(
        opts("7.0.15", Conflict::Skip),
        vec![start(0, "k", ValueKind::String, None), Event::Chunk(Chunk::String(b(""))), end(None)],
    );
    assert_eq!(render(&out)[1], "SET k  NX");
    assert_eq!(out[1].rule, ReplyRule::IfAbsent { temp: None });
}

#[test]
fn strings_longer_than_one_command_are_a_unit_of_setranges() {
    let mut o = opts("7.0.15", Conflict::Overwrite);
    o.chunk_bytes = 4;
    golden(
        o.clone(),
        vec![start(0, "s", ValueKind::String, None), Event::Chunk(Chunk::String(b("0123456789"))), end(None)],
        &["SELECT 0", "MULTI", "DEL s", "SETRANGE s 0 0123", "SETRANGE s 4 4567", "SETRANGE s 8 89", "EXEC"],
    );
    // Several parser chunks, each short.
    golden(
        o,
        vec![
            start(0, "s", ValueKind::String, None),
            Event::Chunk(Chunk::String(b("ab"))),
            Event::Chunk(Chunk::String(b("cd"))),
            end(None),
        ],
        &["SELECT 0", "MULTI", "DEL s", "SETRANGE s 0 ab", "SETRANGE s 2 cd", "EXEC"],
    );
    // Before 2.6.12 there is no SET ... NX PX: the unit form.
    golden(
        opts("2.6.0", Conflict::Skip),
        vec![start(0, "s", ValueKind::String, None), Event::Chunk(Chunk::String(b("v"))), end(None)],
        &["SELECT 0", "MULTI", "DEL {s}:tmp", "SETRANGE {s}:tmp 0 v", "RENAMENX {s}:tmp s", "EXEC"],
    );
}

#[test]
fn a_list_is_one_unit_in_chunks() {
    let mut o = opts("7.0.15", Conflict::Overwrite);
    o.chunk_items = 2;
    let (out, rw) = run(
        o,
        vec![
            start(0, "l", ValueKind::List, Some(LATER)),
            Event::Chunk(Chunk::ListItems(vec![b("a"), b("b"), b("c")])),
            Event::Chunk(Chunk::ListItems(vec![b("d")])),
            end(None),
        ],
    );
    assert_eq!(
        render(&out),
        [
            "SELECT 0",
            "MULTI",
            "DEL l",
            "RPUSH l a b",
            "RPUSH l c",
            "RPUSH l d",
            &format!("PEXPIREAT l {LATER}"),
            "EXEC"
        ]
    );
    assert_eq!(out[1].rule, ReplyRule::Multi);
    assert_eq!(out[7].rule, ReplyRule::Exec);
    assert!(out.iter().all(|c| c.build.is_none() && c.guard.is_none()));
    assert_eq!(rw.stats().rewritten, 1);
}

#[test]
fn intercept_units_build_on_a_temporary_key_then_renamenx() {
    let (out, _) = run(
        opts("7.0.15", Conflict::Intercept),
        vec![start(3, "s", ValueKind::Set, None), Event::Chunk(Chunk::SetMembers(vec![b("x"), b("y")])), end(None)],
    );
    assert_eq!(render(&out), ["SELECT 3", "MULTI", "DEL {s}:tmp", "SADD {s}:tmp x y", "RENAMENX {s}:tmp s", "EXEC"]);
    assert_eq!(out[4].rule, ReplyRule::IfAbsent { temp: Some(b("{s}:tmp")) });
}

#[test]
fn hashes_zsets_and_scores_that_round_trip() {
    let fields = vec![
        HashField { field: b("f"), value: b("1"), expire_at_ms: None },
        HashField { field: b("g"), value: b("2"), expire_at_ms: None },
    ];
    let scores =
        vec![(b("a"), f64::INFINITY), (b("b"), f64::NEG_INFINITY), (b("c"), 0.1), (b("d"), 1e300), (b("e"), -0.0)];
    golden(
        opts("7.0.15", Conflict::Overwrite),
        vec![
            start(0, "h", ValueKind::Hash, None),
            Event::Chunk(Chunk::HashFields(fields.clone())),
            end(None),
            start(0, "z", ValueKind::Zset, None),
            Event::Chunk(Chunk::ZsetMembers(scores)),
            end(None),
        ],
        &[
            "SELECT 0",
            "MULTI",
            "DEL h",
            "HSET h f 1 g 2",
            "EXEC",
            "MULTI",
            "DEL z",
            "ZADD z inf a -inf b 0.1 c 1e300 d -0.0 e",
            "EXEC",
        ],
    );
    golden(
        opts("3.2.12", Conflict::Overwrite),
        vec![start(0, "h", ValueKind::Hash, None), Event::Chunk(Chunk::HashFields(fields)), end(None)],
        &["SELECT 0", "MULTI", "DEL h", "HMSET h f 1 g 2", "EXEC"],
    );
    for x in [0.1, 1.0 / 3.0, 1e-310, f64::MAX, -2.5e-7, 123456789.0] {
        assert_eq!(format_score(x).parse::<f64>().unwrap(), x);
    }
}

#[test]
fn hash_field_ttls_need_7_4() {
    let fields = || {
        vec![
            HashField { field: b("a"), value: b("1"), expire_at_ms: Some(LATER) },
            HashField { field: b("b"), value: b("2"), expire_at_ms: Some(LATER) },
            HashField { field: b("c"), value: b("3"), expire_at_ms: Some(NOW - 1) },
            HashField { field: b("d"), value: b("4"), expire_at_ms: None },
        ]
    };
    let rw = golden(
        opts("7.4.0", Conflict::Overwrite),
        vec![start(0, "h", ValueKind::Hash, None), Event::Chunk(Chunk::HashFields(fields())), end(None)],
        &[
            "SELECT 0",
            "MULTI",
            "DEL h",
            "HSET h a 1 b 2 c 3 d 4",
            &format!("HPEXPIREAT h {} FIELDS 1 c", grace_at()),
            &format!("HPEXPIREAT h {LATER} FIELDS 2 a b"),
            "EXEC",
        ],
    );
    assert_eq!(rw.stats().field_ttls_expired, 1);
    let mut rw = golden(
        opts("7.0.15", Conflict::Overwrite),
        vec![start(0, "h", ValueKind::Hash, None), Event::Chunk(Chunk::HashFields(fields())), end(None)],
        &["SELECT 0", "MULTI", "DEL h", "HSET h a 1 b 2 c 3 d 4", "EXEC"],
    );
    assert_eq!(rw.stats().field_ttls_dropped, 3);
    let warnings = rw.take_warnings();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].message.contains("3 hash field TTL"), "{warnings:?}");
}

fn sid(ms: u64, seq: u64) -> StreamId {
    StreamId { ms, seq }
}

fn stream_events(entries: bool) -> Vec<Event> {
    let mut ev = vec![start(0, "st", ValueKind::Stream, None)];
    if entries {
        ev.push(Event::Chunk(Chunk::StreamEntries(vec![
            StreamEntry { id: sid(1, 0), fields: vec![b("f"), b("v")] },
            StreamEntry { id: sid(2, 5), fields: vec![b("a"), b("1"), b("b"), b("2")] },
        ])));
    }
    ev.push(Event::Chunk(Chunk::StreamMeta(Box::new(StreamMeta {
        length: if entries { 2 } else { 0 },
        last_id: sid(3, 0),
        first_id: Some(sid(1, 0)),
        max_deleted_id: Some(sid(3, 0)),
        entries_added: Some(3),
    }))));
    ev.push(Event::Chunk(Chunk::StreamGroup(Box::new(StreamGroup {
        name: b("g"),
        last_id: sid(2, 5),
        entries_read: Some(2),
    }))));
    ev.push(Event::Chunk(Chunk::StreamGroupPending(vec![
        PendingEntry { id: sid(1, 0), delivery_time_ms: 111, delivery_count: 1 },
        PendingEntry { id: sid(2, 5), delivery_time_ms: 111, delivery_count: 1 },
    ])));
    ev.push(Event::Chunk(Chunk::StreamConsumer(Box::new(StreamConsumer {
        name: b("alice"),
        seen_time_ms: 5,
        active_time_ms: None,
    }))));
    ev.push(Event::Chunk(Chunk::StreamConsumerPending(vec![sid(1, 0), sid(2, 5)])));
    ev.push(Event::Chunk(Chunk::StreamConsumer(Box::new(StreamConsumer {
        name: b("bob"),
        seen_time_ms: 5,
        active_time_ms: None,
    }))));
    ev.push(Event::Chunk(Chunk::StreamGroup(Box::new(StreamGroup {
        name: b("empty"),
        last_id: sid(0, 0),
        entries_read: Some(u64::MAX),
    }))));
    ev.push(end(None));
    ev
}

#[test]
fn streams_on_7_0_carry_their_metadata_groups_and_pel() {
    let (out, _) = run(opts("7.0.15", Conflict::Overwrite), stream_events(true));
    assert_eq!(
        render(&out),
        [
            "SELECT 0",
            "MULTI",
            "DEL st",
            "XADD st 1-0 f v",
            "XADD st 2-5 a 1 b 2",
            "XSETID st 3-0 ENTRIESADDED 3 MAXDELETEDID 3-0",
            "XGROUP CREATE st g 2-5 ENTRIESREAD 2",
            "XCLAIM st g alice 0 1-0 2-5 TIME 111 RETRYCOUNT 1 FORCE JUSTID",
            "XGROUP CREATECONSUMER st g bob",
            "XGROUP CREATE st empty 0-0",
            "EXEC",
        ]
    );
    assert_eq!(out[3].rule, ReplyRule::StreamAdd);
    assert_eq!(out[6].rule, ReplyRule::GroupCreate);
}

#[test]
fn streams_on_6_0_drop_7_0_metadata_and_create_consumers_by_reading() {
    golden(
        opts("6.0.9", Conflict::Overwrite),
        stream_events(false),
        &[
            "SELECT 0",
            "MULTI",
            "DEL st",
            "XGROUP CREATE st shardsync-mkstream 0 MKSTREAM",
            "XGROUP DESTROY st shardsync-mkstream",
            "XSETID st 3-0",
            "XGROUP CREATE st g 2-5",
            "XCLAIM st g alice 0 1-0 2-5 TIME 111 RETRYCOUNT 1 FORCE JUSTID",
            "XREADGROUP GROUP g bob COUNT 1 STREAMS st 0",
            "XGROUP CREATE st empty 0-0",
            "EXEC",
        ],
    );
}

#[test]
fn xclaim_runs_split_on_delivery_time_and_count() {
    let mut o = opts("7.0.15", Conflict::Overwrite);
    o.chunk_items = 2;
    let (out, _) = run(
        o,
        vec![
            start(0, "st", ValueKind::Stream, None),
            Event::Chunk(Chunk::StreamEntries(
                (1..=4).map(|i| StreamEntry { id: sid(i, 0), fields: vec![b("f"), b("v")] }).collect(),
            )),
            Event::Chunk(Chunk::StreamMeta(Box::new(StreamMeta {
                length: 4,
                last_id: sid(4, 0),
                first_id: None,
                max_deleted_id: None,
                entries_added: None,
            }))),
            Event::Chunk(Chunk::StreamGroup(Box::new(StreamGroup {
                name: b("g"),
                last_id: sid(4, 0),
                entries_read: None,
            }))),
            Event::Chunk(Chunk::StreamGroupPending(
                [(1, 10, 1), (2, 10, 1), (3, 10, 1), (4, 20, 3)]
                    .map(|(ms, t, c)| PendingEntry { id: sid(ms, 0), delivery_time_ms: t, delivery_count: c })
                    .to_vec(),
            )),
            Event::Chunk(Chunk::StreamConsumer(Box::new(StreamConsumer {
                name: b("c"),
                seen_time_ms: 0,
                active_time_ms: None,
            }))),
            Event::Chunk(Chunk::StreamConsumerPending(vec![sid(1, 0), sid(2, 0), sid(3, 0), sid(4, 0)])),
            end(None),
        ],
    );
    let claims: Vec<String> = render(&out).into_iter().filter(|c| c.starts_with("XCLAIM")).collect();
    assert_eq!(
        claims,
        [
            "XCLAIM st g c 0 1-0 2-0 TIME 10 RETRYCOUNT 1 FORCE JUSTID",
            "XCLAIM st g c 0 3-0 TIME 10 RETRYCOUNT 1 FORCE JUSTID",
            "XCLAIM st g c 0 4-0 TIME 20 RETRYCOUNT 3 FORCE JUSTID",
        ]
    );
    // A stream without 7.0 metadata: plain XSETID even on 7.0.
    assert!(render(&out).contains(&"XSETID st 4-0".to_owned()));
}

#[test]
fn big_lists_are_built_under_a_temporary_name_with_guards() {
    let mut o = opts("7.0.15", Conflict::Overwrite);
    o.buffer_bytes = 40;
    o.chunk_items = 2;
    let items = |r: std::ops::Range<u32>| Event::Chunk(Chunk::ListItems(r.map(|i| b(&format!("e{i}"))).collect()));
    let (out, rw) =
        run(o, vec![start(0, "big", ValueKind::List, None), items(0..2), items(2..5), items(5..6), end(None)]);
    assert_eq!(
        render(&out),
        [
            "SELECT 0",
            "DEL {big}:tmp",
            "RPUSH {big}:tmp e0 e1",
            "RPUSH {big}:tmp e2 e3",
            "RPUSH {big}:tmp e4",
            "RPUSH {big}:tmp e5",
            "RENAME {big}:tmp big",
        ]
    );
    let temp = b("{big}:tmp");
    assert_eq!(out[1].build, Some(Build { id: 0, step: BuildStep::Start }));
    assert_eq!(out[4].build, Some(Build { id: 0, step: BuildStep::Part }));
    assert_eq!(out[4].guard.as_deref().cloned(), Some(Guard::ListLen { temp: temp.clone(), after: 5 }));
    assert!(!out[4].free);
    assert_eq!(out[6].build, Some(Build { id: 0, step: BuildStep::Finish }));
    assert_eq!(out[6].guard.as_deref().cloned(), Some(Guard::Renamed { temp }));
    assert_eq!(rw.stats().built, 1);
}

#[test]
fn big_keys_in_intercept_mode_finish_with_ttl_and_renamenx_in_a_unit() {
    let mut o = opts("7.0.15", Conflict::Intercept);
    o.buffer_bytes = 10;
    o.chunk_bytes = 4;
    let (out, _) = run(
        o,
        vec![
            start(0, "s", ValueKind::String, Some(LATER)),
            Event::Chunk(Chunk::String(b("0123456789"))),
            Event::Chunk(Chunk::String(b("abcdef"))),
            end(None),
        ],
    );
    assert_eq!(
        render(&out),
        [
            "SELECT 0",
            "DEL {s}:tmp",
            "SETRANGE {s}:tmp 0 0123",
            "SETRANGE {s}:tmp 4 4567",
            "SETRANGE {s}:tmp 8 89",
            "SETRANGE {s}:tmp 10 abcd",
            "SETRANGE {s}:tmp 14 ef",
            "MULTI",
            &format!("PEXPIREAT {{s}}:tmp {LATER}"),
            "RENAMENX {s}:tmp s",
            "EXEC",
        ]
    );
    assert!(out[2..7].iter().all(|c| c.free && c.guard.is_none()));
    assert_eq!(out[7].guard.as_deref().cloned(), Some(Guard::Renamed { temp: b("{s}:tmp") }));
    assert!(out[7..].iter().all(|c| c.build.map(|b| b.step) == Some(BuildStep::Finish)));
}

#[test]
fn module_values_follow_the_module_policy() {
    let module =
        || Event::Chunk(Chunk::Module(Box::new(ModuleValue { id: ModuleId(1), name: "ReJSON-RL".to_owned() })));
    let events = |payload| vec![start(0, "json", ValueKind::Module, None), module(), end(payload)];
    let with = |keys: ModuleKeys| {
        let mut o = opts("7.0.15", Conflict::Overwrite);
        o.modules = keys;
        o
    };
    // Fail (the default): the copy stops, naming key and module.
    let mut rw = Rewriter::new(opts("7.0.15", Conflict::Overwrite));
    let mut out = Vec::new();
    let mut err = None;
    for e in events(Some(payload(9))) {
        if let Err(e) = rw.feed(e, 0, NOW, &mut out) {
            err = Some(e);
        }
    }
    let err = err.expect("fail stops");
    assert!(
        matches!(&err, RewriteError::ModulePolicy { key, module, .. } if key == "json" && module == "ReJSON-RL"),
        "{err}"
    );
    assert!(err.to_string().contains("modules = \"restore\""), "{err}");
    // Restore: RESTORE when the payload can go, an error naming why not otherwise.
    let mut rw = Rewriter::new(with(ModuleKeys::Restore));
    let mut out = Vec::new();
    rw.feed(start(0, "json", ValueKind::Module, None), 0, NOW, &mut out).unwrap();
    rw.feed(module(), 0, NOW, &mut out).unwrap();
    let err = rw.feed(end(None), 0, NOW, &mut out).unwrap_err();
    assert!(
        matches!(&err, RewriteError::Module { key, module, .. } if key == "json" && module == "ReJSON-RL"),
        "{err}"
    );
    let (out, _) = run(with(ModuleKeys::Restore), events(Some(payload(9))));
    assert!(render(&out)[1].starts_with("RESTORE json 0"));
    // Skip: nothing written, counted and named.
    let mut rw = Rewriter::new(with(ModuleKeys::Skip));
    let mut out = Vec::new();
    for e in events(Some(payload(9))) {
        rw.feed(e, 0, NOW, &mut out).unwrap();
    }
    assert!(out.iter().all(|c| c.rule == ReplyRule::Select), "{:?}", render(&out));
    assert_eq!(rw.stats().module_skipped, 1);
    assert!(rw.take_warnings()[0].message.contains("module `ReJSON-RL`"));
}

#[test]
fn dbs_are_mapped_filtered_and_selected_once() {
    let mut o = opts("7.0.15", Conflict::Overwrite);
    o.db_map = Some(BTreeMap::from([(0, 2), (1, 1)]));
    let key = |db, k: &str| vec![start(db, k, ValueKind::String, None), Event::Chunk(Chunk::String(b("v"))), end(None)];
    let events = [key(0, "a"), key(0, "b"), key(5, "skipped"), key(1, "c")].concat();
    let (out, rw) = run(o, events);
    assert_eq!(render(&out), ["SELECT 2", "SET a v", "SET b v", "SELECT 1", "SET c v"]);
    assert_eq!(out[1].origin.db, 2);
    assert_eq!(out[3].rule, ReplyRule::Select);
    assert_eq!((rw.stats().keys, rw.stats().filtered), (3, 1));
}

#[test]
fn temporary_names_keep_the_hash_slot() {
    assert_eq!(temp_name(b"user:1", b"t"), "{user:1}:t");
    assert_eq!(temp_name(b"{user}:1", b"t"), "{user}:1:t");
    assert_eq!(temp_name(b"a{b", b"t"), "{a{b}:t");
    assert_eq!(temp_name(b"a}b", b"t"), "a}b:t");
    assert_eq!(temp_name(b"{}x", b"t"), "{}x:t");
    // Braces in the tag would make a new hash tag: replaced.
    let rw = Rewriter::new(RewriteOptions { temp_tag: "x{y}".to_owned(), ..opts("7.0.15", Conflict::Skip) });
    assert_eq!(rw.temp_tag, "x_y_");
}

#[test]
fn events_out_of_order_are_errors() {
    let mut rw = Rewriter::new(opts("7.0.15", Conflict::Overwrite));
    let mut out = Vec::new();
    assert!(matches!(rw.feed(end(None), 7, NOW, &mut out), Err(RewriteError::Sequence { offset: 7, .. })));
    assert!(rw.feed(Event::Chunk(Chunk::String(b("x"))), 8, NOW, &mut out).is_err());
    rw.feed(start(0, "k", ValueKind::String, None), 9, NOW, &mut out).unwrap();
    assert!(rw.feed(start(0, "k2", ValueKind::String, None), 10, NOW, &mut out).is_err());
}

#[test]
fn streams_cannot_go_to_servers_without_them() {
    let mut rw = Rewriter::new(opts("4.0.14", Conflict::Overwrite));
    let err = rw.feed(start(0, "st", ValueKind::Stream, None), 0, NOW, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("has no streams"), "{err}");
}

#[test]
fn an_abandoned_build_deletes_its_temporary_key() {
    let mut o = opts("7.0.15", Conflict::Overwrite);
    o.buffer_bytes = 40;
    o.chunk_items = 2;
    let items = |r: std::ops::Range<u32>| Event::Chunk(Chunk::ListItems(r.map(|i| b(&format!("e{i}"))).collect()));
    let (_, mut rw) = run(o.clone(), vec![start(0, "big", ValueKind::List, None), items(0..2), items(2..5)]);
    assert!(rw.in_key());
    let mut out = Vec::new();
    rw.abandon(&mut out);
    assert_eq!(render(&out), ["DEL {big}:tmp"]);
    assert!(!rw.in_key());
    // A small key still being buffered left nothing on the destination.
    let (_, mut rw) = run(o, vec![start(0, "small", ValueKind::List, None), items(0..1)]);
    let mut out = Vec::new();
    rw.abandon(&mut out);
    assert!(out.is_empty());
}

#[test]
fn the_versions_left_undecoded_are_those_the_destination_restores() {
    let o = opts("7.0.15", Conflict::Intercept);
    assert_eq!(o.restore_versions(), (1u128 << 11) - 1, "RDB 0 to 10");
    let none = RewriteOptions { big_key_bytes: 0, ..opts("7.0.15", Conflict::Intercept) };
    assert_eq!(none.restore_versions(), 0, "commands only");
    assert_eq!(opts("2.4.0", Conflict::Intercept).restore_versions(), 0, "no RESTORE");
}

#[test]
fn an_undecoded_key_whose_payload_is_not_restored_stops_rather_than_write_it_empty() {
    let mut rw = Rewriter::new(opts("6.0.9", Conflict::Intercept));
    let mut out = Vec::new();
    let key = KeyStart {
        db: 0,
        key: b("h"),
        kind: ValueKind::Hash,
        undecoded: true,
        rdb_type: 16,
        expire_at_ms: None,
        idle_secs: None,
        lfu_freq: None,
    };
    rw.feed(Event::KeyStart(Box::new(key)), 1, NOW, &mut out).unwrap();
    // RDB 10 is newer than what 6.0 reads.
    let err = rw.feed(end(Some(payload(10))), 2, NOW, &mut out).unwrap_err();
    assert!(matches!(err, RewriteError::Undecoded { .. }), "{err}");
    assert!(err.to_string().contains("key \"h\" in db 0 (snapshot byte 1) came as a payload only"), "{err}");
    assert!(render(&out).iter().all(|c| !c.contains("HSET")), "{:?}", render(&out));
}
