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
    /// Show queue depths, domains in outage, clears waiting, the rules settings and the store's
    /// size, from the running service or, when none runs, from the store.
    Status {
        /// `text` for people, `json` for machines.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// List domains with their health, most failures in their last 24 hours of events first.
    Domains {
        /// Number of domains to list, from 1 to 1000.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
        /// `text` for people, `json` for machines.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// Write every record of the store to FILE as NDJSON, after a header line with the schema
    /// version. Works against a running service (through GET /api/v1/export) or a stopped one.
    Export {
        /// The file to write; it is replaced only once the export is complete.
        file: PathBuf,
    },
    /// Read an export made by `export` into the configured data directory, whose store must be
    /// new or empty. The service must be stopped.
    Import {
        /// The export file.
        file: PathBuf,
    },
    /// Queue every domain, or one, for the rules to evaluate its stored events again, for
    /// instance after changing thresholds.
    Replay {
        /// Only this domain.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Erase everything stored about an address (state, events, history, queued clears) and
    /// record the erasure in the audit log by masked form and SHA-256.
    Erase {
        /// The address, as Okta reports it or in normalised form.
        address: String,
    },
    /// Clear addresses from Okta's bounce list through the running service, which applies its
    /// queue, hourly cap, loop guard and approval mode. Exits non-zero when any is not queued.
    Clear {
        /// Addresses to clear.
        #[arg(required_unless_present = "file")]
        addresses: Vec<String>,
        /// A CSV file: one address per line, or a header row with an `email` or `address` column.
        #[arg(long, value_name = "CSV")]
        file: Option<PathBuf>,
        /// Clear even where the loop guard holds an address back.
        #[arg(long)]
        force: bool,
    },
}
