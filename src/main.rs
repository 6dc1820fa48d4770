//! The `shardsync` command line: parse arguments and hand over to a front end.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use color_eyre::eyre::Result;

mod cli;

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
    }
}
