//! The command line: `serve` and the operator's commands. Every command reads the same
//! configuration as `serve`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bouncewatch",
    version,
    about = "Receives Okta email delivery events and clears the bounces that recipient-domain outages caused"
)]
pub struct Cli {
    /// TOML configuration file (also BOUNCEWATCH_CONFIG); environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: the Okta hook at /okta/events, the admin API at /api/v1, the rules and
    /// the notification dispatcher. Listens on 127.0.0.1:8080 and keeps its store in ./data
    /// unless configured otherwise. Stops cleanly on SIGTERM or Ctrl-C.
    Serve,
    /// Check the configuration and exit non-zero naming the first invalid setting. Secrets are
    /// never printed.
    CheckConfig,
    /// Run a System Log export (a JSON array as GET /api/v1/logs returns it, or one event per
    /// line) through the rules on `published` time, touching no store and no Okta.
    Simulate {
        /// The export file.
        file: PathBuf,
        /// `text` for people, `json` for machines.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// Read system.email.delivery events from the org's System Log into the store.
    Backfill {
        /// Start of the range (RFC 3339), at most 180 days back; Okta returns 90 days.
        #[arg(long)]
        since: String,
        /// End of the range (RFC 3339); default: now.
        #[arg(long)]
        until: Option<String>,
    },
    /// Create (or update the one made before), verify and activate the org's event hook for
    /// system.email.delivery, pointing at URL (https; http only for loopback hosts).
    Register {
        /// The public URL of this service's hook, e.g. https://bouncewatch.example.com/okta/events.
        #[arg(long)]
        url: String,
    },
    /// Deactivate and delete the event hook that `register` made.
    Unregister,
}
