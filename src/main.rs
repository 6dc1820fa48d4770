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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a task: full copy, then incremental sync until stopped
    Run {
        /// The task file (TOML)
        #[arg(long)]
        config: PathBuf,
        /// No TUI: a progress line per shard per second
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
    color_eyre::config::HookBuilder::default().display_env_section(false).display_location_section(false).install()?;
    let args = Args::parse();
    match args.command {
        Command::Rdb { file, json } => cli::rdb::run(&file, json),
        Command::Check { config, json } => std::process::exit(cli::check::run(&config, json)),
        Command::Finish { config } => std::process::exit(cli::finish::run(&config)),
        Command::Run { config, headless: _, json, until_synced } => {
            // The TUI (step 5) is the default front end; until it exists, `run` is headless.
            std::process::exit(cli::run::run(&config, json, until_synced))
        }
        Command::Verify { config, mode, json } => std::process::exit(cli::verify::run(&config, mode, json)),
    }
}
