//! The `sluice` binary: parse the command line, run, report errors as one clear line.

use clap::Parser;
use sluice::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    match cli.command {
        Command::Ctl(args) => ExitCode::from(sluice::cli::ctl::run(&args).clamp(0, 255) as u8),
        Command::Run(args) => {
            let stdout = std::io::stdout();
            match sluice::run::run(&args, &mut stdout.lock()) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sluice: error: {}", sluice::error::chain(&e));
                    ExitCode::FAILURE
                }
            }
        }
    }
}
