//! `shardsync verify --config F [--mode counts|keys|full] [--json]`: the
//! command-line front end of `shardsync::verify`.
//!
//! Human output: progress on stderr (a line rewritten in place on a
//! terminal, else a line a second), then on stdout the counts table, the
//! differences and unsettled keys (`db KEY detail [shard]`) and a result
//! line. `--json`: on stdout, one `{"event":"progress",…}` record a second
//! while it runs, then one `{"event":"report",…}` record (the report, plus
//! `equal`). Exit codes: 0 equal, 1 different or not proven equal (also on
//! a connection failure), 2 bad task file.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use shardsync::config::TaskConfig;
use shardsync::headless::group_digits;
use shardsync::verify::{self, Difference, VerifyMode, VerifyOptions, VerifyProgress, VerifyReport};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::exit::{EXIT_FAILED, EXIT_OK};

pub fn run(config: &Path, mode: VerifyMode, json: bool) -> i32 {
    let (task, rt) = match super::task_and_runtime(config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    rt.block_on(verify_task(task, VerifyOptions::with_mode(mode), json))
}

async fn verify_task(task: TaskConfig, opts: VerifyOptions, json: bool) -> i32 {
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    let (tx, rx) = watch::channel(VerifyProgress::default());
    let stop = CancellationToken::new();
    let printer = tokio::spawn(show_progress(rx, json, stop.clone()));
    let result = verify::run(&task, &opts, tx, cancel).await;
    stop.cancel();
    let _ = printer.await;
    match result {
        Ok(report) => {
            if json {
                let mut record = serde_json::to_value(&report).unwrap_or_default();
                if let Some(fields) = record.as_object_mut() {
                    fields.insert("event".into(), json!("report"));
                    fields.insert("equal".into(), json!(report.is_equal()));
                }
                println!("{record}");
            } else {
                print!("{}", render(&task, &report));
            }
            if report.is_equal() {
                EXIT_OK
            } else {
                EXIT_FAILED
            }
        }
        Err(e) => {
            if json {
                println!("{}", json!({"event": "error", "error": e.to_string()}));
            }
            eprintln!("error: {e}");
            EXIT_FAILED
        }
    }
}

async fn cancel_on_signal(cancel: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term_recv = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term_recv => {},
    }
    cancel.cancel();
}

/// Progress until `stop`: NDJSON records on stdout once a second, or a
/// line on stderr (rewritten in place four times a second on a terminal,
/// else once a second).
async fn show_progress(rx: watch::Receiver<VerifyProgress>, json: bool, stop: CancellationToken) {
    let tty = !json && std::io::stderr().is_terminal();
    let every = if tty { Duration::from_millis(250) } else { Duration::from_secs(1) };
    let started = Instant::now();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut drawn = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let p = rx.borrow().clone();
        if json {
            let mut record = serde_json::to_value(&p).unwrap_or_default();
            if let Some(fields) = record.as_object_mut() {
                fields.insert("event".into(), json!("progress"));
                fields.insert("elapsed_ms".into(), json!(started.elapsed().as_millis() as u64));
            }
            println!("{record}");
        } else if tty {
            eprint!("\r{}\x1b[K", progress_line(&p));
            drawn = true;
        } else {
            eprintln!("{}", progress_line(&p));
        }
    }
    if drawn {
        eprint!("\r\x1b[K");
    }
}

fn progress_line(p: &VerifyProgress) -> String {
    let mut line = format!("verify: {}", p.phase);
    if p.total > 0 || p.compared > 0 {
        line.push_str(&format!(": {} of ~{} keys compared", group_digits(p.compared), group_digits(p.total)));
        if let Some(percent) = (p.compared * 100).checked_div(p.total) {
            line.push_str(&format!(" ({}%)", percent.min(100)));
        }
        line.push_str(&format!(", {} differences so far", group_digits(p.differences)));
    }
    line
}

/// The human report.
fn render(task: &TaskConfig, r: &VerifyReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "verify --mode {} of task {}: {} source(s) → destination {}\n\n",
        r.mode,
        task.name,
        task.sources.len(),
        task.destination.addr
    ));
    out.push_str("keys per DB (the heartbeat and checkpoint keys left out):\n");
    let width = r.counts.iter().flat_map(|c| c.sources.iter().map(|s| s.0.len())).max().unwrap_or(0).max(7);
    for c in &r.counts {
        for (i, (shard, db, keys)) in c.sources.iter().enumerate() {
            let head = if i == 0 { format!("db{}", c.db) } else { String::new() };
            out.push_str(&format!("  {head:<5} {shard:<width$} db{db:<3} {:>13}\n", group_digits(*keys)));
        }
        let verdict = match c.destination.cmp(&c.source_total) {
            std::cmp::Ordering::Equal => "equal".to_owned(),
            std::cmp::Ordering::Less => {
                format!("destination has {} fewer", group_digits(c.source_total - c.destination))
            }
            std::cmp::Ordering::Greater => {
                format!("destination has {} more", group_digits(c.destination - c.source_total))
            }
        };
        out.push_str(&format!(
            "  {:<5} {:<width$}      {:>13}   destination {}   {verdict}\n",
            "",
            "sources",
            group_digits(c.source_total),
            group_digits(c.destination)
        ));
    }
    if r.counts.is_empty() {
        out.push_str("  (no selected DB holds keys)\n");
    }
    if r.mode != VerifyMode::Counts {
        list(&mut out, "differences", &r.differences, r.differences_total);
        if r.not_rechecked > 0 {
            out.push_str(&format!(
                "  {} of them were seen once and not re-checked: more than the suspect limit differ\n",
                group_digits(r.not_rechecked)
            ));
        }
        list(
            &mut out,
            "unsettled (written during every re-check: not proven equal, not proven different)",
            &r.unsettled,
            r.unsettled_total,
        );
        out.push_str(&format!(
            "\ncompared {} keys in {:.1} s ({} keys/s): {} differences, {} unsettled\n",
            group_digits(r.compared),
            r.elapsed.as_secs_f64(),
            group_digits(r.keys_per_sec() as u64),
            group_digits(r.differences_total),
            group_digits(r.unsettled_total)
        ));
    }
    out.push_str(&format!("result: {}\n", verdict(r)));
    out
}

fn list(out: &mut String, title: &str, items: &[Difference], total: u64) {
    if total == 0 {
        return;
    }
    let shown = if items.len() as u64 == total {
        format!("{total}")
    } else {
        format!("{} of {}, the first listed", items.len(), group_digits(total))
    };
    out.push_str(&format!("\n{title} ({shown}):\n"));
    for d in items {
        out.push_str(&format!("  db{} {} {} [{}]\n", d.db, d.key_shown(), d.detail, d.shard));
    }
}

fn verdict(r: &VerifyReport) -> String {
    match r.mode {
        VerifyMode::Counts if r.is_equal() => {
            "EQUAL key counts in every DB (counts only; --mode keys or full compares the keys themselves)".into()
        }
        VerifyMode::Counts => "DIFFERENT key counts (--mode keys or full names the keys)".into(),
        _ if r.is_equal() => format!("EQUAL: every source key is on the destination with the same {}", what(r.mode)),
        _ if r.differences_total > 0 => format!("DIFFERENT: {} keys differ", group_digits(r.differences_total)),
        _ => format!(
            "NOT PROVEN EQUAL: {} keys were written during every re-check; run verify again when writes calm down",
            group_digits(r.unsettled_total)
        ),
    }
}

fn what(mode: VerifyMode) -> &'static str {
    match mode {
        VerifyMode::Full => "type, value and TTL",
        _ => "type",
    }
}
