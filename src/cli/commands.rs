//! The CLI's subcommands and their flags.

use std::time::Duration;

use clap::Subcommand;

use super::parse_duration;

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Issue a key; its secret is printed once.
    Create {
        #[arg(long)]
        owner: String,
        #[arg(long, default_value = "")]
        name: String,
        /// `secret` or `publishable`.
        #[arg(long = "type", default_value = "secret")]
        key_type: String,
        /// `live` or `test`; unset: the keyspace's default, then test.
        #[arg(long = "env")]
        environment: Option<String>,
        /// Repeat for several scopes.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Lifetime, e.g. `90d`.
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        #[arg(long, default_value = "")]
        request_id: String,
        /// The keyspace's id (default `ks_default`): its prefix and defaults.
        #[arg(long, default_value = "")]
        keyspace: String,
        /// A role of the keyspace for the key to hold; repeat for several.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    Get {
        id: String,
    },
    List {
        #[arg(long, default_value = "")]
        owner: String,
        /// `active`, `expired`, `revoked` or `disabled`.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
        /// Only keys of this keyspace id.
        #[arg(long, default_value = "")]
        keyspace: String,
    },
    /// Change a key's name or scopes.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// Replaces all scopes; repeat for several.
        #[arg(long = "scope")]
        scopes: Option<Vec<String>>,
    },
    /// Issue a successor; the new secret is printed once.
    Rotate {
        id: String,
        /// How long the old key keeps working, e.g. `48h`.
        #[arg(long, value_parser = parse_duration)]
        grace: Option<Duration>,
    },
    /// Revoke a key for good.
    Revoke {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Suspend a key until `enable`.
    Disable {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    Enable {
        id: String,
    },
    /// Hourly usage over the last day.
    Usage {
        id: String,
    },
    /// Whose is this key? Reads the key from stdin (never an argument,
    /// which shell history and `ps` would keep); audited.
    Lookup,
    /// Report a key found in public, read from stdin: its keyspace's leak
    /// policy applies (notify, disable or revoke).
    ReportLeak {
        /// Where it was found.
        #[arg(long, default_value = "")]
        url: String,
        /// What found it, e.g. `gitleaks`.
        #[arg(long, default_value = "")]
        source: String,
    },
    /// Bring in keys made elsewhere, from JSONL or CSV (see the README's
    /// "Adoption"): batches of 1,000, each committed whole; ends with a
    /// summary, and exits non-zero when a line was not imported.
    Import(super::import::ImportArgs),
    /// Every key's record, without secrets, as JSONL that `import` reads.
    Export {
        /// Only this keyspace's keys.
        #[arg(long, default_value = "")]
        keyspace: String,
        /// Write here instead of stdout.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum WebhookCommand {
    /// Add an endpoint; its signing secret is printed once.
    Create {
        #[arg(long)]
        url: String,
        /// Event types (repeat), or `*`.
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    List,
    Delete {
        id: String,
    },
    /// The delivery log.
    Deliveries {
        #[arg(long, default_value = "")]
        endpoint: String,
    },
    Redeliver {
        id: String,
    },
}
