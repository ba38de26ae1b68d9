//! The precheck: will this sync work, and what must be fixed first. Each item looks at one
//! thing (can ferry reach and log in, may its user replicate and write, will the data fit, ...)
//! and answers pass, warn or fail with what it found and how to fix it.
//!
//! `ferry check` prints every item; `ferry sync` runs the same items first and refuses to start
//! on a failure. Where `sync` has always ended with an error of its own for a case (a wrong
//! password, an unreachable host, a cluster with uncovered slots, a db map beyond the target's
//! dbs), the finding carries that error and `sync` ends with it unchanged.
//!
//! One file per thing checked: `reach` (reachable, authenticated), `distinct` (the target is
//! not the source, a replica or master of it, nor where its data comes from), `acl` (source replication,
//! target write), `versions`, `memory` (free memory, eviction policy), `keys` (keys already in
//! the target), `start` (new copy, resume or full resync), `backlog` (backlog and replica output buffer), `slots`, `modules`, `dbs`,
//! `heartbeat`, `timeouts` (repl_timeout), `tls`; `info` reads INFO and CONFIG GET.

mod acl;
mod backlog;
mod dbs;
pub(crate) mod distinct;
mod heartbeat;
mod keys;
mod memory;
mod modules;
mod reach;
mod report;
mod slots;
mod source_mode;
mod start;
mod timeouts;
mod tls;
mod versions;

use serde::Serialize;

use crate::config::{Source, TaskConfig};
use crate::error::{Error, Result, Role};
pub use crate::spec::{CheckConfig, CheckSection, DEFAULT_BACKLOG_MINUTES, Item};
use crate::status::events::{EventKind, Events};
pub use acl::{setuser_line, setuser_lines, with_acl_line};
pub use reach::Side;
pub use report::Report;

/// How an item came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Warn,
    Fail,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Warn => "warn",
            Outcome::Fail => "fail",
        }
    }
}

/// One item's answer for one server (or pair of servers).
#[derive(Debug, Serialize)]
pub struct Finding {
    pub item: Item,
    pub result: Outcome,
    /// What was found, naming the server.
    pub found: String,
    /// What to do about it; empty on a pass.
    pub fix: String,
    /// The error `sync` has always ended with for this case, if it has one.
    #[serde(skip)]
    pub error: Option<Error>,
    /// For the items about a user's rights: the one `ACL SETUSER` line that gives that
    /// server's user all ferry needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl: Option<String>,
}

impl Finding {
    pub fn pass(item: Item, found: impl Into<String>) -> Finding {
        Finding {
            item,
            result: Outcome::Pass,
            found: found.into(),
            fix: String::new(),
            error: None,
            acl: None,
        }
    }

    pub fn warn(item: Item, found: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            item,
            result: Outcome::Warn,
            found: found.into(),
            fix: fix.into(),
            error: None,
            acl: None,
        }
    }

    pub fn fail(item: Item, found: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            item,
            result: Outcome::Fail,
            found: found.into(),
            fix: fix.into(),
            error: None,
            acl: None,
        }
    }

    /// A failure that `sync` reports as `error`, whose words are the finding's.
    fn from_error(item: Item, error: Error, fix: impl Into<String>) -> Finding {
        Finding {
            item,
            result: Outcome::Fail,
            found: error.to_string(),
            fix: fix.into(),
            error: Some(error),
            acl: None,
        }
    }
}

/// Who runs the precheck: `ferry check` (report everything) or `ferry sync` (stop at the
/// first error `sync` has always stopped with, and leave to the sync what it settles itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Check,
    Sync,
}

/// Runs every item not ignored and returns the report. Errors when a server stops answering
/// midway, and under `Mode::Sync` where `sync` has always ended with an error of its own (a
/// server that cannot be reached or logged in to, a cluster with unserved slots).
pub async fn run(config: &TaskConfig, mode: Mode) -> Result<Report> {
    let mut report = Report::new(&config.check.ignore);
    report.acl_lines = acl::setuser_lines(config);
    let mut source = match &config.source {
        Source::Redis(endpoint) => {
            reach::connect(Role::Source, "source", endpoint, config, mode, &mut report).await?
        }
        Source::RdbFile(_) => None,
    };
    let mut targets = Vec::new();
    let all_targets = std::iter::once(&config.target).chain(&config.more_targets);
    for (i, endpoint) in all_targets.enumerate() {
        let label = if config.more_targets.is_empty() {
            "target".to_string()
        } else {
            format!("target {}", i + 1)
        };
        if let Some(side) =
            reach::connect(Role::Target, &label, endpoint, config, mode, &mut report).await?
        {
            targets.push(side);
        }
    }
    if report.runs(Item::Tls) {
        for side in source.iter().chain(&targets) {
            if let Some(finding) = tls::check(side) {
                report.add(finding);
            }
        }
    }
    if let Some(source) = &mut source {
        slots::check(source, &mut report);
    }
    for target in &mut targets {
        slots::check(target, &mut report);
    }
    // Before anything else is asked or written: a target that is the source ends it here.
    for finding in distinct::check(source.as_mut(), &mut targets, config, mode).await? {
        if mode == Mode::Sync
            && let Some(error) = finding.error
        {
            return Err(error);
        }
        report.add(finding);
    }
    // Scan mode: the replication items say nothing about it.
    let mut scan = false;
    if let Some(source) = &mut source {
        let (finding, scanned) = source_mode::check(source, config).await?;
        scan = scanned;
        if report.runs(Item::SourceMode) {
            report.add(finding);
        }
        if scan && report.runs(Item::Notifications) {
            let finding = source_mode::notifications(source).await?;
            report.add(finding);
        }
    }
    let replica = !scan;
    if let Some(source) = &mut source
        && replica
        && report.runs(Item::SourceReplication)
    {
        let finding = acl::source_replication(source, config).await?;
        report.add(finding);
    }
    if report.runs(Item::TargetWrite) {
        for target in &mut targets {
            let finding = acl::target_write(target, config).await?;
            report.add(finding);
        }
    }
    if let Some(source) = &mut source {
        for target in &mut targets {
            if report.runs(Item::Versions) {
                let finding = versions::check(source, target).await?;
                report.add(finding);
            }
        }
    }
    let source_data = match &mut source {
        Some(source) if report.runs(Item::Memory) => Some(memory::source_data(source).await?),
        _ => None,
    };
    for target in &mut targets {
        if let Some(data) = &source_data {
            let finding = memory::free_memory(target, data, mode).await?;
            report.add(finding);
        }
        if report.runs(Item::EvictionPolicy) {
            let finding = memory::eviction_policy(target).await?;
            report.add(finding);
        }
    }
    if mode == Mode::Check && report.runs(Item::TargetKeys) {
        for target in &targets {
            let finding = keys::check(target, source.as_ref(), config).await;
            report.add(finding);
        }
    }
    if mode == Mode::Check
        && replica
        && report.runs(Item::Start)
        && let Some(source) = &mut source
    {
        if config.target_mode == crate::spec::TargetMode::Replica {
            // No checkpoint key: the target asks the source itself where to continue.
            report.add(Finding::pass(
                Item::Start,
                "[target] mode = \"replica\": the target's own replication offset is the checkpoint; it continues from it where the source's backlog still holds it, else loads a new snapshot",
            ));
        } else {
            for finding in start::check(source, &targets, config).await {
                report.add(finding);
            }
        }
    }
    let follows = !config.full_only;
    if let Some(source) = &mut source
        && replica
        && (report.runs(Item::Backlog) || report.runs(Item::OutputBuffer))
    {
        for finding in backlog::check(source, config, follows, mode).await? {
            report.add(finding);
        }
    }
    if let Some(source) = &mut source
        && replica
        && report.runs(Item::ReplTimeout)
    {
        let finding = timeouts::check(source, config).await?;
        report.add(finding);
    }
    if let Some(source) = &mut source
        && report.runs(Item::Modules)
    {
        for target in &mut targets {
            let finding = modules::check(source, target).await?;
            report.add(finding);
        }
    }
    if report.runs(Item::DbMap) {
        for target in &mut targets {
            let finding = dbs::check(source.as_mut(), target, config).await?;
            report.add(finding);
        }
    }
    if let Some(source) = &mut source
        && replica
        && report.runs(Item::Heartbeat)
    {
        let finding = heartbeat::check(source, config).await?;
        report.add(finding);
    }
    Ok(report)
}

/// What `sync` runs before it starts: logs the warnings (unless told not to) and refuses to
/// start on a failure, with the error `sync` has always given for that case where there is one.
pub async fn before_sync(config: &TaskConfig, events: &Events) -> Result<()> {
    let report = run(config, Mode::Sync).await?;
    let mut failures = Vec::new();
    for finding in report.into_findings() {
        match finding.result {
            Outcome::Pass => {}
            Outcome::Warn => {
                if !config.check.ignore_warnings {
                    events.emit(EventKind::Precheck {
                        item: finding.item.name(),
                        result: Outcome::Warn.name(),
                        found: finding.found.clone(),
                        fix: finding.fix.clone(),
                    });
                }
            }
            Outcome::Fail => {
                events.emit(EventKind::Precheck {
                    item: finding.item.name(),
                    result: Outcome::Fail.name(),
                    found: finding.found.clone(),
                    fix: finding.fix.clone(),
                });
                failures.push(finding);
            }
        }
    }
    let Some(first) = failures.first_mut() else {
        return Ok(());
    };
    if let Some(error) = first.error.take() {
        return Err(error);
    }
    let words: Vec<String> = failures
        .iter()
        .map(|f| format!("{}: {} (fix: {})", f.item.name(), f.found, f.fix))
        .collect();
    Err(Error::Precheck(words.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> std::result::Result<CheckSection, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn ignore_takes_item_names_and_refuses_the_connection_items() {
        let s =
            section("ignore = [\"eviction_policy\", \"backlog\"]\nbacklog_minutes = 3").unwrap();
        let c = CheckConfig::build(&s).unwrap();
        assert_eq!(c.ignore, vec![Item::EvictionPolicy, Item::Backlog]);
        assert_eq!(c.backlog_minutes, 3);
        let err = section("ignore = [\"eviction\"]").unwrap_err().to_string();
        assert!(err.contains("eviction_policy"), "{err}");
        let s = section("ignore = [\"reachable\"]").unwrap();
        let err = CheckConfig::build(&s).unwrap_err().to_string();
        assert!(
            err.contains("check.ignore cannot name \"reachable\""),
            "{err}"
        );
        let s = section("backlog_minutes = 0").unwrap();
        assert!(CheckConfig::build(&s).is_err());
    }

    #[test]
    fn item_names_are_the_serialized_ones() {
        for item in [Item::SourceReplication, Item::DbMap, Item::EvictionPolicy] {
            let json = serde_json::to_string(&item).unwrap();
            assert_eq!(json, format!("\"{}\"", item.name()));
        }
    }
}
