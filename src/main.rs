//! The `shardsync` command line: parse arguments and hand over to a front end.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use color_eyre::eyre::Result;
use shardsync::verify::VerifyMode;

mod cli;

// See Cargo.toml: jemalloc, because the engine allocates per command across threads.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "shardsync",
    version,
    about = "Migrate the Redis-Servers behind a Twemproxy cluster into one Redis, with no downtime"
)]
struct Args {
    /// Without a command: the wizard (`tui`).
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The interactive wizard that builds and starts a task, then its dashboard
    Tui {
        /// A task file to start from (and save back to)
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run a task: full copy, then incremental sync until stopped
    Run {
        /// The task file (TOML)
        #[arg(long)]
        config: PathBuf,
        /// No dashboard: a progress line per shard per second
        #[arg(long)]
        headless: bool,
        /// NDJSON progress records instead of lines
        #[arg(long)]
        json: bool,
        /// Exit 0 once every shard is incremental and caught up
        #[arg(long)]
        until_synced: bool,
    },
    /// Precheck a task: every check pass / warn / fail with its reason
    Check {
        /// The task file (TOML)
        #[arg(long)]
        config: PathBuf,
        /// The report as one JSON object
        #[arg(long)]
        json: bool,
    },
    /// A local sandbox (2 masters with replicas behind nutcracker, a destination, sample data) and the wizard on it
    Demo,
    /// After cut-over: remove the tool's keys (checkpoints, heartbeat) and the state dir
    Finish {
        /// The task file (TOML)
        #[arg(long)]
        config: PathBuf,
    },
    /// Compare the sources with the destination: key counts, keys and types, or values and TTLs
    Verify {
        /// The task file (TOML)
        #[arg(long)]
        config: PathBuf,
        /// counts (keys per DB) | keys (every key, same type) | full (values and TTLs too)
        #[arg(long, default_value_t = VerifyMode::Counts)]
        mode: VerifyMode,
        /// NDJSON: a progress record a second, then the report
        #[arg(long)]
        json: bool,
    },
    /// Parse an RDB file and print its keys (NDJSON with --json)
    Rdb {
        /// The RDB file
        file: PathBuf,
        /// One JSON object a line, in the canonical format of the RDB fixtures
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<()> {
    // Colour only for a person at a terminal: a log or a pipe gets text.
    let theme = if std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none() {
        color_eyre::config::Theme::dark()
    } else {
        color_eyre::config::Theme::new()
    };
    color_eyre::config::HookBuilder::default()
        .theme(theme)
        .display_env_section(false)
        .display_location_section(false)
        .install()?;
    let args = Args::parse();
    match args.command.unwrap_or(Command::Tui { config: None }) {
        Command::Demo => std::process::exit(cli::demo::run()?),
        Command::Tui { config } => std::process::exit(cli::tui::wizard(config.as_deref())?),
        Command::Rdb { file, json } => cli::rdb::run(&file, json),
        Command::Check { config, json } => std::process::exit(cli::check::run(&config, json)),
        Command::Finish { config } => std::process::exit(cli::finish::run(&config)),
        // `--json` and `--until-synced` are for scripts: they imply headless.
        Command::Run { config, headless, json, until_synced } if headless || json || until_synced => {
            std::process::exit(cli::run::run(&config, json, until_synced))
        }
        Command::Verify { config, mode, json } => std::process::exit(cli::verify::run(&config, mode, json)),
        Command::Run { config, .. } => std::process::exit(cli::tui::dashboard(&config)?),
    }
}
