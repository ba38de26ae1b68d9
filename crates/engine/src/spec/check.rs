//! `[check]`: which precheck items to leave out, and how much backlog to ask for.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The items, by the names the report and `[check] ignore` use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Item {
    Reachable,
    Authenticated,
    Distinct,
    SourceReplication,
    TargetWrite,
    Versions,
    Memory,
    EvictionPolicy,
    TargetKeys,
    Start,
    Backlog,
    OutputBuffer,
    Slots,
    Modules,
    DbMap,
    Heartbeat,
    ReplTimeout,
    Tls,
    /// How the source will be read (psync or scan) and why.
    SourceMode,
    /// Scan mode: the source publishes keyspace notifications, or ferry may turn them on.
    Notifications,
}

impl Item {
    pub fn name(self) -> &'static str {
        match self {
            Item::Reachable => "reachable",
            Item::Authenticated => "authenticated",
            Item::Distinct => "distinct",
            Item::SourceReplication => "source_replication",
            Item::TargetWrite => "target_write",
            Item::Versions => "versions",
            Item::Memory => "memory",
            Item::EvictionPolicy => "eviction_policy",
            Item::TargetKeys => "target_keys",
            Item::Start => "start",
            Item::Backlog => "backlog",
            Item::OutputBuffer => "output_buffer",
            Item::Slots => "slots",
            Item::Modules => "modules",
            Item::DbMap => "db_map",
            Item::Heartbeat => "heartbeat",
            Item::ReplTimeout => "repl_timeout",
            Item::Tls => "tls",
            Item::SourceMode => "source_mode",
            Item::Notifications => "notifications",
        }
    }
}

/// `[check]` in the config file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSection {
    /// Items not run, by name (e.g. `["eviction_policy"]`).
    #[serde(default)]
    pub ignore: Vec<Item>,
    /// The backlog should hold at least this many minutes of the source's writes (default 10).
    pub backlog_minutes: Option<u64>,
}

/// The precheck's settings, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckConfig {
    pub ignore: Vec<Item>,
    pub backlog_minutes: u64,
    /// `sync --ignore-warnings`: warnings are not logged.
    pub ignore_warnings: bool,
}

impl Default for CheckConfig {
    fn default() -> CheckConfig {
        CheckConfig {
            ignore: Vec::new(),
            backlog_minutes: DEFAULT_BACKLOG_MINUTES,
            ignore_warnings: false,
        }
    }
}

pub const DEFAULT_BACKLOG_MINUTES: u64 = 10;

impl CheckConfig {
    pub fn build(section: &CheckSection) -> Result<CheckConfig, Error> {
        let backlog_minutes = section.backlog_minutes.unwrap_or(DEFAULT_BACKLOG_MINUTES);
        if backlog_minutes == 0 {
            return Err(Error::Config(
                "check.backlog_minutes must be greater than 0".into(),
            ));
        }
        for item in [Item::Reachable, Item::Authenticated] {
            if section.ignore.contains(&item) {
                return Err(Error::Config(format!(
                    "check.ignore cannot name {:?}: without a connection nothing else can be checked",
                    item.name()
                )));
            }
        }
        if section.ignore.contains(&Item::Distinct) {
            return Err(Error::Config(
                "check.ignore cannot name \"distinct\": a target that is the source (or replicates it) would have ferry write into the data it reads".into(),
            ));
        }
        Ok(CheckConfig {
            ignore: section.ignore.clone(),
            backlog_minutes,
            ignore_warnings: false,
        })
    }
}
