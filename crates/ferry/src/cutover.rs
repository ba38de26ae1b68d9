//! `ferry cutover` and `ferry cleanup`: the end of a migration, from the command line.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ferry_engine::task::Task;
use ferry_engine::task::cutover::{CutoverOptions, CutoverReport, cutover};

use crate::SyncArgs;

#[derive(Args)]
pub struct CutoverArgs {
    #[command(flatten)]
    pub sync: SyncArgs,
    /// Pause the source's writes (CLIENT PAUSE ... WRITE, Redis 6.2+) for at most this many
    /// seconds while ferry finishes; without it, stop the writers yourself first.
    #[arg(long, value_name = "SECONDS")]
    pub pause_writes: Option<u64>,
    /// How long to wait for the copy to end and the target to catch up.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub timeout: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub sync: SyncArgs,
}

/// Runs the task (resuming from its checkpoint: stop its `ferry sync` first), then cuts it
/// over. Exit 0 only when everything held.
pub fn run_cutover(args: CutoverArgs) -> ExitCode {
    let opts = CutoverOptions {
        pause_writes: args.pause_writes.map(Duration::from_secs),
        timeout: Duration::from_secs(args.timeout),
    };
    let json = args.json;
    let result = crate::task_config(args.sync).and_then(|(config, _, _)| {
        crate::runtime()?.block_on(async move {
            let handle = Task::start(config.clone(), None)?;
            eprintln!("ferry: task {} started, cutting over", config.name);
            let result = cutover(&handle, &config, &opts).await;
            // After a failed cutover the task stops here, its checkpoint kept: `ferry sync`
            // goes on from it.
            handle.stop();
            let _ = handle.join().await;
            result
        })
    });
    match result {
        Ok(report) => {
            print_report(&report, json);
            match report.ok {
                true => ExitCode::SUCCESS,
                false => ExitCode::from(1),
            }
        }
        Err(e) => {
            eprintln!("ferry: cutover: {}", crate::with_flags(e.to_string()));
            ExitCode::from(2)
        }
    }
}

fn print_report(report: &CutoverReport, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
        return;
    }
    for (server, offset) in &report.offsets {
        println!("caught up   source {server}: offset {offset} applied on the target");
    }
    match report.offsets.is_empty() {
        false => println!("            in {} ms", report.caught_up_ms),
        // Scan mode: no offsets, the notified changes read and applied.
        true if report.caught_up_ms > 0 || !report.verify.is_empty() => println!(
            "caught up   every change the source notified is applied on the target, in {} ms",
            report.caught_up_ms
        ),
        true => {}
    }
    for v in &report.verify {
        println!(
            "verified    {}: {} keys, {} differences",
            v.target, v.source_keys, v.differences
        );
        for e in &v.examples {
            println!("            {e}");
        }
    }
    if let Some(target) = &report.promoted {
        println!("promoted    {target}: no longer a replica (REPLICAOF NO ONE), takes writes");
    }
    for (server, n) in &report.removed {
        println!("removed     {server}: {n} of ferry's keys");
    }
    if let Some(until) = report.paused_until_ms {
        println!(
            "paused      the source's writes stay paused until {} (unix ms): move the applications to the target now, or CLIENT UNPAUSE on the source",
            until
        );
    }
    match (&report.problem, report.ok) {
        (Some(p), _) => println!("NOT DONE    {p}"),
        (None, true) => println!(
            "done        the target holds the source's data; the task is stopped and its keys are gone"
        ),
        (None, false) => println!("NOT DONE"),
    }
}

/// Removes a stopped task's own keys from its targets and source.
pub fn run_cleanup(args: CleanupArgs) -> ExitCode {
    let result = crate::task_config(args.sync).and_then(|(config, _, _)| {
        crate::runtime()?.block_on(ferry_engine::task::cleanup::remove_own_keys(&config, true))
    });
    match result {
        Ok(cleanup) => {
            if cleanup.removed.is_empty() {
                println!("none of this task's keys found");
            }
            for (server, n) in &cleanup.removed {
                println!("removed {server}: {n} of ferry's keys");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferry: cleanup: {}", crate::with_flags(e.to_string()));
            ExitCode::from(2)
        }
    }
}
