use clap::Parser;

use bouncewatch::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    bouncewatch::cmd::run(cli)
}
