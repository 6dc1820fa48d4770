//! `make soak`: the production-size soak of the sync engine.
//!
//! Each run starts a fresh sandbox of real servers — two masters on one
//! host, one with diskless and one with disk-based replication, each with a
//! replica, behind nutcracker, and an empty destination with an ACL user —
//! loads about a million keys of every type and encoding (plus 1 MiB
//! strings, streams and a DB 1 per master), starts `shardsync run
//! --headless --json` on DBs 0 and 1 with `conflict = "intercept"` under
//! `/usr/bin/time -v`, and runs a writer of every seed command from the
//! task's start for `--writer-secs`. Then it writes a unique key on every
//! master, waits for each on the destination (a drain: everything before
//! it is applied), compares every key itself (type, value, TTL; see
//! `compare`), stops the task and reads its peak RSS and CPU.
//!
//! Per run it prints the keys compared, the timings and every difference
//! with its shard, type, encoding, TTL and idle time on the source, and the
//! tool's last progress record per shard. It exits 1 when any run differs;
//! with `--benchmarks-md FILE` it writes its section there.

mod compare;
mod dataset;
mod writer;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use shardsync::resp::{Cmd, ConnectOptions, Connection, Credentials};
use shardsync::sandbox::{MasterSync, Sandbox, DEST_PASSWORD, DEST_USER};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug, Clone)]
#[command(about = "Production-size soak: full copy + live writes, then every key compared")]
struct Args {
    /// Runs, each on fresh servers.
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// Keys loaded through the proxy.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// 1 MiB strings.
    #[arg(long, default_value_t = 100)]
    big: u64,
    /// Streams per master (DB 0, written directly).
    #[arg(long, default_value_t = 1000)]
    streams: u64,
    /// Keys per master in DB 1 (written directly).
    #[arg(long, default_value_t = 25_000)]
    db1_keys: u64,
    /// How long the writer runs from the task's start.
    #[arg(long, default_value_t = 20)]
    writer_secs: u64,
    /// Writer rounds a second (each about 130 commands); 0: as fast as
    /// the servers answer.
    #[arg(long, default_value_t = 0)]
    rounds_per_sec: u64,
    /// `repl-diskless-sync-delay` of the diskless master (Redis's default: 5).
    #[arg(long, default_value_t = 5)]
    diskless_delay: u32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The shardsync binary.
    #[arg(long, default_value = "target/release/shardsync")]
    bin: PathBuf,
    /// Write the results into this BENCHMARKS.md.
    #[arg(long)]
    benchmarks_md: Option<PathBuf>,
    /// The longest wait for the drain keys.
    #[arg(long, default_value_t = 900)]
    drain_timeout_secs: u64,
    /// When the comparison starts: `synced` (the drain keys are on the
    /// destination and every shard is incremental), or `keys` (the drain
    /// keys alone, which issue 11's runs used: a shard still applying its
    /// snapshot then looks as if it had lost keys).
    #[arg(long, value_enum, default_value_t = Drain::Synced)]
    drain: Drain,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    Synced,
    Keys,
}

/// What one run measured.
#[derive(Debug, Default)]
struct RunResult {
    loaded: u64,
    load_s: f64,
    full_copy_s: Option<f64>,
    drained_s: f64,
    compared: u64,
    first_reading: u64,
    differences: Vec<compare::Difference>,
    writer: writer::Written,
    rss_kb: Option<u64>,
    cpu_s: Option<f64>,
    last_records: Vec<String>,
    alerts: Vec<String>,
    exit: Option<i32>,
}

/// The tool's output as it arrives: NDJSON on stdout, alerts and
/// `/usr/bin/time -v` on stderr.
#[derive(Default)]
struct Output {
    /// Latest record per shard.
    records: std::collections::BTreeMap<String, serde_json::Value>,
    /// When every shard was first incremental.
    all_incremental: Option<Instant>,
    events: Vec<String>,
    stderr: Vec<String>,
}

fn task_file(dir: &Path, sb: &Sandbox) -> PathBuf {
    let mut t = format!("name = \"soak\"\nstate_dir = \"{}\"\n", dir.join("state").display());
    for (i, m) in sb.masters.iter().enumerate() {
        t.push_str(&format!("\n[[source]]\nname = \"server{}\"\naddr = \"{m}\"\n", i + 1));
    }
    t.push_str(&format!(
        "\n[destination]\naddr = \"{}\"\npassword_env = \"SOAK_DEST_PASSWORD\"\n\n[sync]\nconflict = \"intercept\"\ndatabases = [0, 1]\n",
        sb.destination
    ));
    let p = dir.join("task.toml");
    std::fs::write(&p, t).expect("writing the task file");
    p
}

fn spawn_tool(bin: &Path, task: &Path, out: Arc<Mutex<Output>>) -> std::io::Result<Child> {
    let mut child = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(bin)
        .args(["run", "--config"])
        .arg(task)
        .args(["--headless", "--json"])
        .env("SOAK_DEST_PASSWORD", format!("{DEST_USER}:{DEST_PASSWORD}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let o = out.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            let mut o = o.lock().expect("output");
            if let Some(shard) = v.get("shard").and_then(|s| s.as_str()).filter(|_| v.get("event").is_none()) {
                o.records.insert(shard.to_owned(), v.clone());
                let all = o.records.len() >= 2 && o.records.values().all(|r| r["state"] == "incremental");
                if all && o.all_incremental.is_none() {
                    o.all_incremental = Some(Instant::now());
                }
            } else {
                o.events.push(line);
            }
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            out.lock().expect("output").stderr.push(line);
        }
    });
    Ok(child)
}

/// `/usr/bin/time -v`'s figure named `label`.
fn time_field(lines: &[String], label: &str) -> Option<f64> {
    lines.iter().find_map(|l| l.trim().strip_prefix(label)?.trim().strip_prefix(':')?.trim().parse().ok())
}

/// A unique key written on every master, waited for on the destination;
/// with `Drain::Synced`, also every shard incremental (its snapshot applied:
/// a drain key written before a shard's fork is in its snapshot, which is
/// applied in the snapshot's own order, not the order of the writes).
async fn drain(
    sb: &Sandbox,
    run: u32,
    mode: Drain,
    timeout: Duration,
    child: &mut Child,
    out: &Arc<Mutex<Output>>,
) -> Result<(), String> {
    let mut d = Connection::connect(&sb.destination, &dest_options()).await.map_err(|e| e.to_string())?;
    let mut keys = Vec::new();
    for (i, m) in sb.masters.iter().enumerate() {
        let key = format!("soak:drain:{run}:{i}");
        let mut c = Connection::connect(m, &ConnectOptions::default()).await.map_err(|e| e.to_string())?;
        c.query(&Cmd::new("SET").arg(&key).arg("drained")).await.map_err(|e| e.to_string())?;
        keys.push(key);
    }
    let start = Instant::now();
    let mut waiting: Vec<&String> = keys.iter().collect();
    loop {
        let mut still = Vec::new();
        for key in waiting {
            if d.query(&Cmd::new("GET").arg(key)).await.map_err(|e| e.to_string())?.is_nil() {
                still.push(key);
            }
        }
        waiting = still;
        let incremental = {
            let o = out.lock().expect("output");
            o.records.len() == sb.masters.len() && o.records.values().all(|r| r["state"] == "incremental")
        };
        if waiting.is_empty() && (mode == Drain::Keys || incremental) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("shardsync exited ({status}) before the drain ended"));
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "not drained in {timeout:?}: keys {waiting:?} missing, every shard incremental: {incremental}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn dest_options() -> ConnectOptions {
    ConnectOptions { credentials: Some(Credentials::new(Some(DEST_USER), DEST_PASSWORD)), ..ConnectOptions::default() }
}

async fn one_run(args: &Args, run: u32) -> Result<RunResult, String> {
    let mut r = RunResult::default();
    let cancel = CancellationToken::new();
    let sb = Sandbox::start_with(
        &[MasterSync::Diskless { delay_secs: args.diskless_delay }, MasterSync::Disk],
        &mut |_| {},
        &cancel,
    )
    .map_err(|e| e.to_string())?;
    let shape = dataset::Shape {
        seed: args.seed,
        keys: args.keys,
        big: args.big,
        streams_per_master: args.streams,
        db1_keys_per_master: args.db1_keys,
    };
    let t0 = Instant::now();
    r.loaded = dataset::load(&sb.proxy, &sb.masters, &shape).await?;
    r.load_s = t0.elapsed().as_secs_f64();
    println!("run {run}: loaded {} keys in {:.1} s", r.loaded, r.load_s);
    let task = task_file(sb.dir(), &sb);
    let out = Arc::new(Mutex::new(Output::default()));
    let started = Instant::now();
    let mut child =
        spawn_tool(&args.bin, &task, out.clone()).map_err(|e| format!("starting {}: {e}", args.bin.display()))?;
    let stop_writer = CancellationToken::new();
    let w = tokio::spawn(writer::run(
        sb.proxy.clone(),
        sb.masters.clone(),
        args.keys,
        args.rounds_per_sec,
        args.seed ^ u64::from(run),
        stop_writer.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(args.writer_secs)).await;
    stop_writer.cancel();
    r.writer = w.await.map_err(|e| e.to_string())??;
    let drained = drain(&sb, run, args.drain, Duration::from_secs(args.drain_timeout_secs), &mut child, &out).await;
    r.drained_s = started.elapsed().as_secs_f64();
    r.full_copy_s = out.lock().expect("output").all_incremental.map(|t| (t - started).as_secs_f64());
    if let Err(e) = drained {
        stop(&mut child);
        collect(&mut r, &out);
        return Err(format!("{e}\n{}", r.alerts.join("\n")));
    }
    let mut sources: Vec<(String, String)> =
        sb.masters.iter().enumerate().map(|(i, m)| (format!("server{}", i + 1), m.clone())).collect();
    // A shard still copying is compared first (only `--drain keys` lets
    // the comparison start then).
    {
        let o = out.lock().expect("output");
        sources.sort_by_key(|(name, _)| o.records.get(name).is_some_and(|r| r["state"] == "incremental"));
    }
    let t1 = Instant::now();
    let cmp = compare::compare(&sources, &sb.destination, &dest_options(), &[0, 1], "SHARDSYNC_HEARTBEAT").await?;
    println!(
        "run {run}: compared {} keys {:?} in {:.1} s ({} differed on the first reading)",
        cmp.compared,
        cmp.per_db,
        t1.elapsed().as_secs_f64(),
        cmp.first_pass
    );
    r.compared = cmp.compared;
    r.first_reading = cmp.first_pass;
    r.differences = cmp.differences;
    // Both shards incremental: seen on the once-a-second records.
    r.full_copy_s = out.lock().expect("output").all_incremental.map(|t| (t - started).as_secs_f64());
    stop(&mut child);
    collect(&mut r, &out);
    Ok(r)
}

/// `stop` on the tool's standard input, then its end (killed after a minute).
fn stop(child: &mut Child) {
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"stop\n");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn collect(r: &mut RunResult, out: &Arc<Mutex<Output>>) {
    // The reader threads finish once the pipes close.
    std::thread::sleep(Duration::from_millis(200));
    let o = out.lock().expect("output");
    r.rss_kb = time_field(&o.stderr, "Maximum resident set size (kbytes)").map(|v| v as u64);
    r.cpu_s = match (time_field(&o.stderr, "User time (seconds)"), time_field(&o.stderr, "System time (seconds)")) {
        (Some(u), Some(s)) => Some(u + s),
        _ => None,
    };
    r.exit = time_field(&o.stderr, "Exit status").map(|v| v as i32);
    r.last_records = o.records.values().map(|v| v.to_string()).chain(o.events.iter().cloned()).collect();
    r.alerts = o
        .stderr
        .iter()
        .filter(|l| l.starts_with("alert:") || l.starts_with("error:") || l.starts_with("shard "))
        .cloned()
        .collect();
}

fn report(run: u32, r: &RunResult) {
    println!(
        "run {run}: {} — {} keys compared, {} differences; full copy {}, drained at {:.1} s; tool peak RSS {}, CPU {}; writer {} rounds, {} commands, {} error replies{}",
        if r.differences.is_empty() { "EQUAL" } else { "DIFFERENT" },
        r.compared,
        r.differences.len(),
        r.full_copy_s.map_or("?".into(), |s| format!("{s:.1} s")),
        r.drained_s,
        r.rss_kb.map_or("?".into(), |k| format!("{:.0} MB", k as f64 / 1024.0)),
        r.cpu_s.map_or("?".into(), |s| format!("{s:.1} s")),
        r.writer.rounds,
        r.writer.commands,
        r.writer.errors,
        r.writer.first_error.as_ref().map_or(String::new(), |e| format!(" (first: {e})")),
    );
    for l in &r.last_records {
        println!("run {run}:   last record {l}");
    }
    for a in r.alerts.iter().take(20) {
        println!("run {run}:   {a}");
    }
    if !r.differences.is_empty() {
        let mut by: std::collections::BTreeMap<String, u64> = Default::default();
        for d in &r.differences {
            *by.entry(format!("shard {} db{} {} [{} {}]", d.shard, d.db, d.what, d.facts.kind, d.facts.encoding))
                .or_default() += 1;
        }
        for (what, n) in &by {
            println!("run {run}:   {n:>8} × {what}");
        }
        for d in r.differences.iter().take(200) {
            println!("run {run}:   {d}");
        }
    }
}

fn write_benchmarks(path: &Path, args: &Args, results: &[(u32, Result<RunResult, String>)]) -> std::io::Result<()> {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    use shardsync::human::group_digits as n;
    let mut s = String::from(
        "<!-- bench:soak -->\n## Soak: production size, full copy under live writes, every key compared (`make soak`)\n\n",
    );
    let writer = if args.rounds_per_sec == 0 {
        "as fast as the servers answer".to_owned()
    } else {
        format!("at {} rounds/s", args.rounds_per_sec)
    };
    let drain = match args.drain {
        Drain::Synced => "a drain key per master on the destination and every shard incremental",
        Drain::Keys => "a drain key per master on the destination (not waiting for every shard to be incremental)",
    };
    s.push_str(&format!(
        "{} keys through nutcracker (every type and encoding, 10% with a TTL) + {} strings of 1 MiB + per master {} \
         streams and {} DB 1 keys; two masters on one host (diskless and disk-based, each with a replica); DBs 0 and \
         1, `conflict = \"intercept\"`; a writer of every seed command from the task's start for {} s, {writer}; \
         then {drain}, and every key compared (type, value, TTL) by the soak itself, each difference read again \
         once. Full copy: from the start until both shards were incremental. Commit {commit}, load average {}.\n\n",
        n(args.keys),
        args.big,
        n(args.streams),
        n(args.db1_keys),
        args.writer_secs,
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    ));
    s.push_str(
        "| run | result | keys compared | differences | differed at first reading | full copy s | drained s | \
         tool peak RSS MB | tool CPU s | writer commands |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut cpu = Vec::new();
    let mut rss = Vec::new();
    let mut copy = Vec::new();
    for (run, r) in results {
        match r {
            Ok(r) => {
                cpu.extend(r.cpu_s);
                rss.extend(r.rss_kb.map(|k| k as f64 / 1024.0));
                copy.extend(r.full_copy_s);
                s.push_str(&format!(
                    "| {run} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} |\n",
                    if r.differences.is_empty() { "equal" } else { "DIFFERENT" },
                    n(r.compared),
                    r.differences.len(),
                    n(r.first_reading),
                    r.full_copy_s.map_or("?".into(), |v| format!("{v:.1}")),
                    r.drained_s,
                    r.rss_kb.map_or("?".into(), |k| format!("{:.0}", k as f64 / 1024.0)),
                    r.cpu_s.map_or("?".into(), |v| format!("{v:.1}")),
                    n(r.writer.commands)
                ))
            }
            Err(e) => {
                s.push_str(&format!("| {run} | FAILED: {} | | | | | | | | |\n", e.lines().next().unwrap_or_default()))
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    if let (Some(c), Some(m), Some(f)) = (median(cpu), median(rss), median(copy)) {
        s.push_str(&format!(
            "\nMedians: full copy {f:.1} s, tool peak RSS {m:.0} MB, tool CPU {c:.1} s ({:.1} µs per key compared).\n",
            c * 1e6 / results.iter().filter_map(|(_, r)| r.as_ref().ok()).map(|r| r.compared).max().unwrap_or(1) as f64
        ));
    }
    s.push_str("<!-- /bench:soak -->\n");
    let md = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (md.find("<!-- bench:soak -->"), md.find("<!-- /bench:soak -->")) {
        (Some(a), Some(b)) => {
            format!("{}{}{}", &md[..a], s, &md[b + "<!-- /bench:soak -->\n".len().min(md.len() - b)..])
        }
        _ => format!("{}\n\n{}", md.trim_end(), s),
    };
    std::fs::write(path, new)
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut results = Vec::new();
    for run in 1..=args.runs {
        let r = rt.block_on(one_run(&args, run));
        match &r {
            Ok(r) => report(run, r),
            Err(e) => println!("run {run}: FAILED: {e}"),
        }
        results.push((run, r));
    }
    let bad = results.iter().filter(|(_, r)| !matches!(r, Ok(r) if r.differences.is_empty())).count();
    println!("soak: {} runs, {} equal, {bad} not", results.len(), results.len() - bad);
    if let Some(path) = &args.benchmarks_md {
        if let Err(e) = write_benchmarks(path, &args, &results) {
            eprintln!("soak: cannot write {}: {e}", path.display());
        }
    }
    std::process::exit(if bad == 0 { 0 } else { 1 });
}
