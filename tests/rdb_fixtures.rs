//! The parser against what real servers said they held.
//!
//! * The project's corpus, `tests/fixtures/rdb/` (made by `make rdb-fixtures`,
//!   `examples/rdb_corpus.rs`, from every Redis and Valkey version at hand):
//!   each file parses to exactly the keys, values, TTLs, field TTLs, streams
//!   and functions its server reported. Always runs.
//! * The shared corpus, `../shared/fixtures/rdb/` (about a hundred files from
//!   other projects, corrupt ones included), when it is present beside the
//!   repository; reported as skipped, not passed, when it is not.
//!
//! Its own harness (`harness = false`), so an absent corpus shows as skipped.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use common::harness::Report;
use serde_json::Value;
use shardsync::rdb::json::JsonWriter;
use shardsync::rdb::{Event, ParserOptions, RdbError, RdbReader};

fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rdb")
}

fn shared_dir() -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/rdb");
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(format!("{} not present (an optional extra)", dir.display()))
    }
}

/// Parse a file into its canonical NDJSON lines (every line) and warnings.
fn parse_all(path: &Path) -> Result<(Vec<Value>, Vec<String>), RdbError> {
    let file = File::open(path).expect("fixture opens");
    let mut reader = RdbReader::new(file);
    let mut w = JsonWriter::new(Vec::new());
    let mut warnings = Vec::new();
    while let Some(ev) = reader.next_event()? {
        if let Event::Warning(w) = &ev {
            warnings.push(w.message.clone());
        }
        w.event(&ev).expect("rendering succeeds");
    }
    let text = String::from_utf8(w.into_inner()).expect("output is UTF-8");
    let lines = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect();
    Ok((lines, warnings))
}

/// Parse a file into its canonical NDJSON lines (keys only) and warnings.
fn parse(path: &Path) -> Result<(Vec<Value>, Vec<String>), RdbError> {
    let (lines, warnings) = parse_all(path)?;
    Ok((lines.into_iter().filter(|v| v.get("key").is_some()).collect(), warnings))
}

/// JSON equality where numbers compare by value (Python writes 1 where we write 1.0).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Keep only the stream fields the file itself holds (the rest is derived
/// by the loading server): those our output has, minus `lag`.
fn stream_expected(expected: &Value, ours: &Value) -> Value {
    let (Some(e), Some(o)) = (expected.as_object(), ours.as_object()) else { return expected.clone() };
    let mut out = serde_json::Map::new();
    for (k, v) in e {
        if !o.contains_key(k) {
            continue;
        }
        if k == "groups" {
            let gs = v.as_array().cloned().unwrap_or_default();
            let ogs = o[k].as_array().cloned().unwrap_or_default();
            let gs = gs.iter().zip(ogs.iter().chain(std::iter::repeat(&Value::Null))).map(|(g, og)| {
                let mut m = serde_json::Map::new();
                for (gk, gv) in g.as_object().into_iter().flatten() {
                    if og.get(gk).is_some() {
                        m.insert(gk.clone(), gv.clone());
                    }
                }
                Value::Object(m)
            });
            out.insert(k.clone(), Value::Array(gs.collect()));
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

fn every_fixture_matches_its_ground_truth(dir: &Path) {
    let mut metas: Vec<PathBuf> =
        std::fs::read_dir(dir).expect("fixtures dir").map(|e| e.expect("entry").path()).collect();
    metas.retain(|p| p.extension().is_some_and(|e| e == "json"));
    metas.sort();
    assert!(metas.len() >= 90, "expected the ~100 shared fixtures, found {}", metas.len());
    let mut failures = Vec::new();
    let mut checked = 0;
    for meta_path in &metas {
        let meta: Value = serde_json::from_reader(File::open(meta_path).expect("meta opens")).expect("meta JSON");
        let rdb = meta_path.with_extension("rdb");
        let name = rdb.file_name().expect("name").to_string_lossy().into_owned();
        let status = meta["status"].as_str().unwrap_or("");
        let result = std::panic::catch_unwind(|| parse(&rdb));
        let result = match result {
            Ok(r) => r,
            Err(_) => {
                failures.push(format!("{name}: the parser panicked"));
                continue;
            }
        };
        if meta["expect_rejected"].as_bool() == Some(true) {
            match result {
                Err(e) => assert!(!e.to_string().is_empty()),
                Ok(_) => failures.push(format!("{name}: corrupt file was accepted")),
            }
            continue;
        }
        if status == "corrupt" {
            // Deliberately empty collections: Redis loads nothing, and neither do we.
            match result {
                Ok((lines, warnings)) if lines.is_empty() && !warnings.is_empty() => {}
                Ok((lines, _)) => failures.push(format!("{name}: expected the empty keys skipped, got {lines:?}")),
                Err(e) => failures.push(format!("{name}: {e}")),
            }
            continue;
        }
        if meta["ground_truth"].as_bool() != Some(true) {
            continue;
        }
        let (lines, _) = match result {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        checked += 1;
        let mut ours: BTreeMap<(String, String), Value> = BTreeMap::new();
        for l in lines {
            let db = l["db"].to_string();
            let key = l["key"].as_str().expect("key is a string").to_owned();
            if ours.insert((db, key.clone()), l).is_some() {
                failures.push(format!("{name}: key {key} reported twice"));
            }
        }
        let mut want_keys = BTreeSet::new();
        for (db, keys) in meta["db"].as_object().into_iter().flatten() {
            for (key, exp) in keys.as_object().into_iter().flatten() {
                want_keys.insert((db.clone(), key.clone()));
                let Some(got) = ours.get(&(db.clone(), key.clone())) else { continue };
                let exp_type = exp["type"].as_str().unwrap_or("");
                let std_type = ["string", "list", "set", "hash", "zset", "stream"].contains(&exp_type);
                if std_type && got["type"] != exp["type"] {
                    failures.push(format!("{name}: {db}/{key}: type {} != {}", got["type"], exp["type"]));
                    continue;
                }
                if !std_type {
                    if got["type"] != "module" || got["module"] != exp["type"] {
                        failures.push(format!("{name}: {db}/{key}: module {} != {}", got["module"], exp["type"]));
                    }
                    continue;
                }
                if !same(&got["expire_at_ms"], &exp["expire_at_ms"]) {
                    failures
                        .push(format!("{name}: {db}/{key}: expire {} != {}", got["expire_at_ms"], exp["expire_at_ms"]));
                }
                let exp_value = if exp_type == "stream" {
                    stream_expected(&exp["value"], &got["value"])
                } else {
                    exp["value"].clone()
                };
                if !same(&got["value"], &exp_value) {
                    let g = got["value"].to_string();
                    let e = exp_value.to_string();
                    failures.push(format!(
                        "{name}: {db}/{key}: value differs\n  ours: {}\n  want: {}",
                        &g[..g.len().min(600)],
                        &e[..e.len().min(600)]
                    ));
                }
                let exp_fttl = exp.get("field_expire_at_ms").cloned().unwrap_or(Value::Null);
                let got_fttl = got.get("field_expire_at_ms").cloned().unwrap_or(Value::Null);
                if !same(&got_fttl, &exp_fttl) {
                    failures.push(format!("{name}: {db}/{key}: field TTLs {got_fttl} != {exp_fttl}"));
                }
            }
        }
        for k in meta["expired_at_load"].as_array().into_iter().flatten() {
            let db = k["db"].to_string().trim_matches('"').to_string();
            let key = k["key"].as_str().unwrap_or("").to_string();
            want_keys.insert((db, key));
        }
        let got_keys: BTreeSet<_> = ours.keys().cloned().collect();
        if got_keys != want_keys {
            failures.push(format!(
                "{name}: key sets differ: missing {:?}, extra {:?}",
                want_keys.difference(&got_keys).collect::<Vec<_>>(),
                got_keys.difference(&want_keys).collect::<Vec<_>>()
            ));
        }
    }
    assert!(checked >= 80, "only {checked} fixtures had ground truth to check");
    assert!(failures.is_empty(), "{} fixture failures:\n{}", failures.len(), failures.join("\n"));
}

/// Files without ground truth still parse or fail cleanly, as documented.
fn fixtures_without_ground_truth_parse_or_fail_cleanly(dir: &Path) {
    let must_parse = [
        "librdb__module.rdb",
        "librdb__module_aux.rdb",
        "librdb__module_aux_empty.rdb",
        "librdb__misc_with_stream.rdb",
        "rdbtools__redis_60_with_module_aux.rdb",
    ];
    for name in must_parse {
        let r = parse(&dir.join(name));
        assert!(r.is_ok(), "{name}: {:?}", r.err());
    }
    // Valkey 9's VALKEY080 file with a type-22 hash (field TTLs): read
    // whole, its checksum verified (issue 12; it was refused before).
    let (keys, _) = parse(&dir.join("hdt3213__valkey_hash2_with_hfe.rdb")).expect("the Valkey 9 file parses");
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["key"], "hash2-hfe");
    assert_eq!(keys[0]["value"].as_array().map(Vec::len), Some(3), "{keys:?}");
    let must_fail = [("replicator__module.rdb", "release-candidate format"), ("librdb__future_v19.rdb", "version 99")];
    for (name, why) in must_fail {
        match parse(&dir.join(name)) {
            Ok(_) => panic!("{name} should be rejected"),
            Err(e) => assert!(e.to_string().contains(why), "{name}: {e}"),
        }
    }
}

/// `ours` matches `want`: numbers by value, `{"$any": null}` matches
/// anything, objects and arrays member by member. Returns where they differ.
fn matches(ours: &Value, want: &Value, at: &str) -> Result<(), String> {
    if want.as_object().is_some_and(|o| o.len() == 1 && o.contains_key("$any")) {
        return Ok(());
    }
    match (ours, want) {
        (Value::Object(o), Value::Object(w)) => {
            let ok: BTreeSet<&String> = o.keys().collect();
            let wk: BTreeSet<&String> = w.keys().collect();
            if ok != wk {
                return Err(format!("{at}: fields {ok:?}, the server reported {wk:?}"));
            }
            w.iter().try_for_each(|(k, v)| matches(&o[k], v, &format!("{at}.{k}")))
        }
        (Value::Array(o), Value::Array(w)) => {
            if o.len() != w.len() {
                return Err(format!("{at}: {} items, the server reported {}", o.len(), w.len()));
            }
            o.iter().zip(w).enumerate().try_for_each(|(i, (a, b))| matches(a, b, &format!("{at}[{i}]")))
        }
        _ if same(ours, want) => Ok(()),
        _ => {
            let (a, b) = (ours.to_string(), want.to_string());
            Err(format!("{at}: {} where the server had {}", &a[..a.len().min(300)], &b[..b.len().min(300)]))
        }
    }
}

/// One file of the project corpus against what its server reported.
fn project_file(rdb: &Path) -> Result<usize, String> {
    let meta_path = rdb.with_extension("json");
    let meta: Value =
        serde_json::from_reader(File::open(&meta_path).map_err(|e| format!("{}: {e}", meta_path.display()))?)
            .map_err(|e| format!("{}: {e}", meta_path.display()))?;
    let (lines, warnings) = parse_all(rdb).map_err(|e| e.to_string())?;
    if !warnings.is_empty() {
        return Err(format!("warnings on a file a server wrote: {warnings:?}"));
    }
    let mut ours: BTreeMap<(String, String), &Value> = BTreeMap::new();
    let mut functions = BTreeSet::new();
    for l in &lines {
        if let Some(key) = l["key"].as_str() {
            if ours.insert((l["db"].to_string(), key.to_owned()), l).is_some() {
                return Err(format!("key {key} reported twice"));
            }
        } else if let Some(code) = l["function"]["code"].as_str() {
            functions.insert(code.to_owned());
        }
    }
    let mut want_keys = BTreeSet::new();
    let mut diffs = Vec::new();
    for (db, keys) in meta["db"].as_object().into_iter().flatten() {
        for (key, want) in keys.as_object().into_iter().flatten() {
            want_keys.insert((db.clone(), key.clone()));
            let Some(got) = ours.get(&(db.clone(), key.clone())) else { continue };
            let at = format!("db {db} key {key}");
            let fttl = got.get("field_expire_at_ms").cloned().unwrap_or(Value::Null);
            let want_fttl = want.get("field_expire_at_ms").cloned().unwrap_or(Value::Null);
            let checks = [
                matches(&got["type"], &want["type"], &format!("{at} type")),
                matches(&got["expire_at_ms"], &want["expire_at_ms"], &format!("{at} expire_at_ms")),
                matches(&got["value"], &want["value"], &format!("{at} value")),
                matches(&fttl, &want_fttl, &format!("{at} field_expire_at_ms")),
            ];
            diffs.extend(checks.into_iter().filter_map(Result::err));
        }
    }
    let got_keys: BTreeSet<_> = ours.keys().cloned().collect();
    if got_keys != want_keys {
        diffs.push(format!(
            "key sets differ: missing {:?}, extra {:?}",
            want_keys.difference(&got_keys).collect::<Vec<_>>(),
            got_keys.difference(&want_keys).collect::<Vec<_>>()
        ));
    }
    let want_functions: BTreeSet<String> = meta["functions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["code"].as_str().map(str::to_owned))
        .collect();
    if functions != want_functions {
        diffs.push(format!("functions {functions:?}, the server had {want_functions:?}"));
    }
    if diffs.is_empty() {
        Ok(want_keys.len())
    } else {
        Err(diffs.join("\n  "))
    }
}

/// Every file of the project corpus; the corpus must hold at least the
/// versions CI always has (system 7.0 and the `.deps` ones).
fn project_corpus_matches_what_its_servers_held() -> Result<String, String> {
    let dir = project_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .map(|e| e.map(|e| e.path()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "rdb"));
    files.sort();
    let names: Vec<String> =
        files.iter().filter_map(|p| p.file_stem()).map(|s| s.to_string_lossy().into_owned()).collect();
    for required in ["redis-6.0", "redis-6.2", "redis-7.0", "redis-7.4", "valkey-9.1"] {
        if !names.iter().any(|n| n.starts_with(&format!("{required}__"))) {
            return Err(format!("no {required} file in {} (make rdb-fixtures)", dir.display()));
        }
    }
    let mut failures = Vec::new();
    let mut keys = 0;
    for (rdb, name) in files.iter().zip(&names) {
        match std::panic::catch_unwind(|| project_file(rdb)) {
            Ok(Ok(n)) => keys += n,
            Ok(Err(e)) => failures.push(format!("{name}: {e}")),
            Err(_) => failures.push(format!("{name}: the parser panicked")),
        }
    }
    if failures.is_empty() {
        Ok(format!("{} files, {keys} keys", files.len()))
    } else {
        Err(failures.join("\n"))
    }
}

/// One parse with payloads captured: per key its DB, name, whether it came
/// undecoded, its chunk count and payload; and the parser's tally.
type Keys = Vec<(u64, bytes::Bytes, bool, usize, Option<bytes::Bytes>)>;

fn captured(rdb: &Path, restore_versions: u128) -> Result<(Keys, String), String> {
    let opts = ParserOptions { capture_payload: Some(64 << 20), restore_versions, ..ParserOptions::default() };
    let file = File::open(rdb).map_err(|e| e.to_string())?;
    let mut reader = RdbReader::with_options(file, opts);
    let mut keys: Keys = Vec::new();
    loop {
        match reader.next_event().map_err(|e| e.to_string())? {
            Some(Event::KeyStart(k)) => keys.push((k.db, k.key.clone(), k.undecoded, 0, None)),
            Some(Event::Chunk(_)) => keys.last_mut().ok_or("a chunk before any key")?.3 += 1,
            Some(Event::KeyEnd { payload }) => keys.last_mut().ok_or("a key end before any key")?.4 = payload,
            Some(_) => {}
            None => return Ok((keys, format!("{:?}", reader.tally()))),
        }
    }
}

/// A parser told that the destination restores the file's payloads leaves
/// compact values undecoded: the same keys, the same payloads byte for
/// byte, the same empty keys skipped, and no chunk for an undecoded key.
fn undecoded_values_give_the_same_payloads(dir: &Path) -> Result<String, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "rdb"))
        .collect();
    files.sort();
    let (mut undecoded, mut total) = (0, 0);
    for rdb in &files {
        let name = rdb.file_name().unwrap_or_default().to_string_lossy().into_owned();
        // Files the parser rejects are the robustness checks' business.
        let Ok((decoded, tally)) = captured(rdb, 0) else { continue };
        let (skipped, tally2) = captured(rdb, u128::MAX).map_err(|e| format!("{name}: {e}"))?;
        if tally != tally2 {
            return Err(format!("{name}: tally {tally} decoded, {tally2} undecoded"));
        }
        if decoded.len() != skipped.len() {
            return Err(format!("{name}: {} keys decoded, {} undecoded", decoded.len(), skipped.len()));
        }
        for (a, b) in decoded.iter().zip(&skipped) {
            let key = format!("{name}: db {} key {:?}", a.0, String::from_utf8_lossy(&a.1));
            if (a.0, &a.1, &a.4) != (b.0, &b.1, &b.4) {
                return Err(format!("{key}: not the same key or payload"));
            }
            if b.2 && b.3 != 0 {
                return Err(format!("{key}: undecoded, yet {} chunks", b.3));
            }
            if !b.2 && a.3 != b.3 {
                return Err(format!("{key}: {} chunks decoded, {} in the second parse", a.3, b.3));
            }
            undecoded += usize::from(b.2);
            total += 1;
        }
    }
    if undecoded == 0 {
        return Err(format!("no key of {total} came undecoded"));
    }
    Ok(format!("{undecoded} of {total} keys undecoded"))
}

/// Runs a check that panics on failure, as `#[test]` would.
fn catch(f: impl FnOnce() + std::panic::UnwindSafe) -> Result<String, String> {
    std::panic::catch_unwind(f).map(|()| String::new()).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    })
}

fn main() {
    let mut report = Report::new();
    let name = "project_corpus_matches_what_its_servers_held";
    if report.wants(name) {
        report.outcome(name, project_corpus_matches_what_its_servers_held());
    }
    let name = "undecoded_values_give_the_same_payloads";
    if report.wants(name) {
        report.outcome(name, undecoded_values_give_the_same_payloads(&project_dir()));
    }
    type Check = fn(&Path);
    let shared: [(&str, Check); 3] = [
        ("shared_corpus_matches_its_ground_truth", every_fixture_matches_its_ground_truth),
        (
            "shared_files_without_ground_truth_parse_or_fail_cleanly",
            fixtures_without_ground_truth_parse_or_fail_cleanly,
        ),
        ("shared_undecoded_values_give_the_same_payloads", |dir| {
            if let Err(e) = undecoded_values_give_the_same_payloads(dir) {
                panic!("{e}");
            }
        }),
    ];
    for (name, check) in shared {
        if !report.wants(name) {
            continue;
        }
        match shared_dir() {
            Err(why) => report.skipped(name, &why),
            Ok(dir) => report.outcome(name, catch(move || check(&dir))),
        }
    }
    report.finish();
}
