//! `shardsync demo`: the sandbox of `shardsync::sandbox` (two masters with
//! replicas behind nutcracker, an empty destination, sample data and a
//! light write load through the proxy), then the wizard filled with its
//! addresses. Everything is stopped and removed when the UI ends, also
//! after Ctrl-C during start-up or a panic (the sandbox's guard).

use color_eyre::eyre::{Result, WrapErr};
use shardsync::config::{Addr, DestConfig, Secret, SourceConfig, SyncConfig, TaskConfig};
use shardsync::sandbox::{self, Sandbox, DEST_PASSWORD, DEST_USER};
use shardsync::ui::app::App;
use shardsync::ui::theme::Theme;
use shardsync::ui::wizard::Wizard;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use super::exit::EXIT_FAILED;

/// Keys loaded through the proxy before the wizard opens: enough for a
/// full copy to show progress for a moment, little enough to load in a second.
const SAMPLE_WRITES: u64 = 200_000;
/// Writes a second through the proxy while the demo runs.
const WRITE_LOAD_PER_SEC: u32 = 50;

pub fn run() -> Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .wrap_err("while starting the async runtime")?;
    rt.block_on(demo())
}

async fn demo() -> Result<i32> {
    let cancel = CancellationToken::new();
    // Until the UI takes over, a signal stops the start-up (and the
    // sandbox's guard cleans up) instead of killing the process outright.
    let watcher = {
        let cancel = cancel.clone();
        let mut hup = signal(SignalKind::hangup()).wrap_err("while setting up signal handling")?;
        let mut term = signal(SignalKind::terminate()).wrap_err("while setting up signal handling")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = hup.recv() => {}
                _ = term.recv() => {}
            }
            cancel.cancel();
        })
    };
    let mut say = |line: &str| println!("demo: {line}");
    let started = tokio::task::block_in_place(|| Sandbox::start(&mut say, &cancel));
    let sandbox = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo: error: {e}");
            return Ok(EXIT_FAILED);
        }
    };
    println!(
        "demo: loading {SAMPLE_WRITES} writes (about 140,000 keys of every common type) through the proxy {}…",
        sandbox.proxy
    );
    let loaded = tokio::select! {
        r = sandbox::load_sample(&sandbox.proxy, SAMPLE_WRITES) => r,
        _ = cancel.cancelled() => Err("interrupted".into()),
    };
    if let Err(e) = loaded {
        eprintln!("demo: error: {e}");
        return Ok(EXIT_FAILED);
    }
    let load = cancel.child_token();
    tokio::spawn(sandbox::write_load(sandbox.proxy.clone(), WRITE_LOAD_PER_SEC, load.clone()));
    println!("demo: a light write load ({WRITE_LOAD_PER_SEC}/s) runs through the proxy; opening the wizard");
    watcher.abort();

    let wizard = demo_wizard(&sandbox)?;
    let state_dir = sandbox.dir().join("state");
    let code = super::tui::run_ui(App::wizard(wizard), None, &state_dir).await;
    load.cancel();
    let dir = sandbox.dir().display().to_string();
    drop(sandbox);
    println!("demo: sandbox stopped and {dir} removed");
    code
}

/// The wizard filled with the sandbox: its masters as sources, named as
/// the pool names them, its destination with the `user:password` login.
fn demo_wizard(sb: &Sandbox) -> Result<Wizard> {
    let addr = |a: &str| a.parse::<Addr>().wrap_err_with(|| format!("while reading the sandbox address {a}"));
    let sources = sb
        .masters
        .iter()
        .enumerate()
        .map(|(i, m)| Ok(SourceConfig { name: format!("server{}", i + 1), addr: addr(m)?, password: Secret::none() }))
        .collect::<Result<Vec<_>>>()?;
    let task = TaskConfig {
        name: "demo".into(),
        state_dir: sb.dir().join("state"),
        sources,
        destination: DestConfig {
            addr: addr(&sb.destination)?,
            password: Secret::new(format!("{DEST_USER}:{DEST_PASSWORD}")),
            kind: Default::default(),
        },
        sync: SyncConfig::default(),
    };
    let mut w = Wizard::prefilled(&task, &sb.dir().join("demo.toml"), Theme::from_env());
    // The safe default: the file names variables, it holds no password.
    w.review.save_passwords = false;
    w.sources.import_path = sb.nutcracker_yml.to_string_lossy().into_owned();
    Ok(w)
}
