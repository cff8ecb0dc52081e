use clap::Parser;

use bouncewatch::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    bouncewatch::cmd::run(cli)
}

/// mimalloc in place of the system allocator: parsing Okta payloads makes many small
/// allocations, and glibc's allocator spent about a quarter of `simulate`'s time on them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
