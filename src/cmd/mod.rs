//! One file per command.

pub mod backfill;
mod check_config;
mod clear;
mod domains;
mod erase;
mod export;
mod import;
mod register;
pub mod remote;
mod replay;
mod serve;
mod simulate;
mod status;
mod unregister;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::config::Config;

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("bouncewatch: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve::run(config).await,
            Command::CheckConfig => check_config::run(&config),
            Command::Simulate { file, format } => simulate::run(&config, &file, &format),
            Command::Backfill { since, until } => {
                backfill::run(config, &since, until.as_deref()).await
            }
            Command::Register { url } => register::run(config, &url).await,
            Command::Unregister => unregister::run(&config).await,
            Command::Status { format } => status::run(&config, &format).await,
            Command::Domains { limit, format } => domains::run(&config, limit, &format).await,
            Command::Export { file } => export::run(&config, &file).await,
            Command::Import { file } => import::run(&config, &file).await,
            Command::Replay { domain } => replay::run(&config, domain.as_deref()).await,
            Command::Erase { address } => erase::run(&config, &address).await,
            Command::Clear {
                addresses,
                file,
                force,
            } => clear::run(&config, addresses, file.as_deref(), force).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bouncewatch: {err:#}");
            ExitCode::FAILURE
        }
    }
}
