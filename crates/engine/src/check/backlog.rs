//! `backlog` and `output_buffer`: whether the source keeps enough of its stream for ferry.
//!
//! The write rate is the growth of `master_repl_offset` over a one-second sample (under `sync`,
//! which must not wait, Redis's own `instantaneous_input_kbps`: an upper bound). The backlog
//! (`repl-backlog-size`) should hold `[check] backlog_minutes` of it, so that ferry can resume
//! after a break that long instead of copying everything again. While the snapshot is made and
//! sent, the source buffers the writes for ferry up to `client-output-buffer-limit replica`;
//! past it, it drops ferry and the copy starts over.

use std::time::{Duration, Instant};

use super::reach::Side;
use super::{Finding, Item, Mode};
use crate::config::TaskConfig;
use crate::error::Result;
use crate::net::info::{self, config_size, number, size};

const SAMPLE: Duration = Duration::from_secs(1);
/// Assumed speed of making, sending and loading a snapshot, for the output buffer's estimate.
const SNAPSHOT_BYTES_PER_SEC: f64 = 100e6;

struct Node {
    addr: String,
    /// Bytes of stream per second.
    rate: f64,
    /// How `rate` was found.
    measure: Measure,
    backlog: Option<u64>,
    /// (hard, soft, soft seconds) of the replica class.
    buffer: Option<(u64, u64, u64)>,
    /// Estimated seconds from the start of the snapshot to ferry having it.
    snapshot_secs: f64,
}

pub(super) async fn check(
    source: &mut Side,
    config: &TaskConfig,
    follows: bool,
    mode: Mode,
) -> Result<Vec<Finding>> {
    let rates = match mode {
        Mode::Check => sampled(source).await?,
        Mode::Sync => instantaneous(source).await?,
    };
    let mut nodes = Vec::new();
    for (conn, (rate, measure)) in source.nodes.iter_mut().zip(rates) {
        let backlog = info::config_get(conn, "repl-backlog-size")
            .await?
            .and_then(|v| v.parse().ok());
        let buffer = info::config_get(conn, "client-output-buffer-limit")
            .await?
            .and_then(|v| replica_limits(&v));
        nodes.push(Node {
            addr: conn.addr.clone(),
            rate,
            measure,
            backlog,
            buffer,
            snapshot_secs: snapshot_secs(conn).await?,
        });
    }
    let mut findings = Vec::new();
    if follows {
        findings.push(backlog(&nodes, config.check.backlog_minutes));
    }
    findings.push(output_buffer(&nodes));
    Ok(findings)
}

/// Estimated seconds from the start of a snapshot to ferry having it: the last BGSAVE's time,
/// plus the data at `SNAPSHOT_BYTES_PER_SEC`.
pub(super) async fn snapshot_secs(conn: &mut crate::net::conn::Conn) -> Result<f64> {
    let memory = info::info(conn, "memory").await?;
    let data = number(&memory, "used_memory_dataset")
        .or_else(|| number(&memory, "used_memory"))
        .unwrap_or(0);
    let persistence = info::info(conn, "persistence").await?;
    let bgsave = persistence
        .get("rdb_last_bgsave_time_sec")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(0);
    Ok(bgsave as f64 + data as f64 / SNAPSHOT_BYTES_PER_SEC + 1.0)
}

/// How a write rate was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Measure {
    /// The growth of the stream offset over the sample: exact.
    Stream,
    /// The bytes clients sent over the sample, reads included (the source keeps no backlog
    /// until a replica connects, so its offset does not move): an upper bound.
    Input,
    /// Redis's own `instantaneous_input_kbps`, reads included: an upper bound, at no wait.
    Instantaneous,
}

/// Each node's write rate over a `SAMPLE` (`ferry check`).
async fn sampled(source: &mut Side) -> Result<Vec<(f64, Measure)>> {
    let mut first = Vec::new();
    for conn in &mut source.nodes {
        first.push((written(conn).await?, Instant::now()));
    }
    tokio::time::sleep(SAMPLE).await;
    let mut rates = Vec::new();
    for (conn, ((before, _), at)) in source.nodes.iter_mut().zip(first) {
        let (after, measure) = written(conn).await?;
        let rate = after.saturating_sub(before) as f64 / at.elapsed().as_secs_f64();
        rates.push((rate, measure));
    }
    Ok(rates)
}

/// Each node's write rate as Redis last measured its input (`sync`: a restart that resumes
/// must not wait, or the backlog it resumes from may move on meanwhile).
async fn instantaneous(source: &mut Side) -> Result<Vec<(f64, Measure)>> {
    let mut rates = Vec::new();
    for conn in &mut source.nodes {
        let fields = info::info(conn, "stats").await?;
        let kbps: f64 = fields
            .get("instantaneous_input_kbps")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        rates.push((kbps * 1024.0, Measure::Instantaneous));
    }
    Ok(rates)
}

/// `INFO` (its default sections, in one request): the stream offset, or where the source
/// keeps no backlog yet, the bytes its clients sent less this request itself.
async fn written(conn: &mut crate::net::conn::Conn) -> Result<(u64, Measure)> {
    let reply = conn.request_ok(&[&b"INFO"[..]]).await?;
    let text = reply.as_bytes().cloned().unwrap_or_default();
    let fields = info::parse_info(&String::from_utf8_lossy(&text));
    if number(&fields, "repl_backlog_active") == Some(1) {
        return Ok((
            number(&fields, "master_repl_offset").unwrap_or(0),
            Measure::Stream,
        ));
    }
    let input = number(&fields, "total_net_input_bytes").unwrap_or(0);
    Ok((input.saturating_sub(INFO_REQUEST_BYTES), Measure::Input))
}

/// `*1\r\n$4\r\nINFO\r\n`.
const INFO_REQUEST_BYTES: u64 = 14;

fn backlog(nodes: &[Node], minutes: u64) -> Finding {
    let want = Duration::from_secs(minutes * 60);
    let mut lines = Vec::new();
    let mut short = Vec::new();
    for node in nodes {
        let Some(backlog) = node.backlog else {
            return Finding::warn(
                Item::Backlog,
                format!(
                    "source {}: repl-backlog-size cannot be read (CONFIG GET refused)",
                    node.addr
                ),
                format!(
                    "make sure its backlog holds {minutes} min of writes, or a break in the link means a full copy"
                ),
            );
        };
        if node.rate < 1.0 {
            let when = match node.measure {
                Measure::Instantaneous => "now".to_string(),
                _ => format!("in a {} s sample", SAMPLE.as_secs()),
            };
            lines.push(format!(
                "source {}: backlog {}, no writes {when}",
                node.addr,
                size(backlog)
            ));
            continue;
        }
        let covers = backlog as f64 / node.rate;
        let measured = match node.measure {
            Measure::Stream => "",
            Measure::Input => {
                " (all client input, reads included: the source keeps no backlog until a replica connects)"
            }
            Measure::Instantaneous => " (Redis's instantaneous client input, reads included)",
        };
        let line = format!(
            "source {}: backlog {} holds {} of writes at {}/s{measured}",
            node.addr,
            size(backlog),
            duration(covers),
            size(node.rate as u64)
        );
        if covers < want.as_secs_f64() {
            let need = (node.rate * want.as_secs_f64()) as u64;
            short.push((
                line,
                format!("CONFIG SET repl-backlog-size {}", config_size(need)),
            ));
        } else {
            lines.push(line);
        }
    }
    match short.first() {
        Some((line, fix)) => Finding::warn(
            Item::Backlog,
            format!(
                "{line}, less than {minutes} min: a longer break in the link means a full copy"
            ),
            format!("on the source: {fix}"),
        ),
        None => Finding::pass(Item::Backlog, lines.join("; ")),
    }
}

fn output_buffer(nodes: &[Node]) -> Finding {
    let mut lines = Vec::new();
    for node in nodes {
        let Some((hard, soft, soft_secs)) = node.buffer else {
            return Finding::warn(
                Item::OutputBuffer,
                format!(
                    "source {}: client-output-buffer-limit cannot be read (CONFIG GET refused)",
                    node.addr
                ),
                "make sure the replica output buffer holds the writes made while a snapshot is copied",
            );
        };
        let during = node.rate * node.snapshot_secs;
        let over_hard = hard > 0 && during > hard as f64;
        let over_soft = soft > 0 && during > soft as f64 && node.snapshot_secs > soft_secs as f64;
        if over_hard || over_soft {
            let need = (during * 2.0) as u64;
            return Finding::warn(
                Item::OutputBuffer,
                format!(
                    "source {}: about {} of writes arrive while a snapshot is copied (~{} at {}/s), over its replica output buffer limit (hard {}, soft {} for {soft_secs} s): the source would drop ferry and the copy start over",
                    node.addr,
                    size(during as u64),
                    duration(node.snapshot_secs),
                    size(node.rate as u64),
                    size(hard),
                    size(soft)
                ),
                format!(
                    "on the source: CONFIG SET client-output-buffer-limit \"replica {} {} 60\"",
                    config_size(need),
                    config_size(need / 2)
                ),
            );
        }
        let limit = if hard == 0 && soft == 0 {
            "no limit".to_string()
        } else {
            format!("hard {}, soft {} for {soft_secs} s", size(hard), size(soft))
        };
        lines.push(format!(
            "source {}: replica output buffer {limit}, about {} of writes expected during a snapshot",
            node.addr,
            size(during as u64)
        ));
    }
    Finding::pass(Item::OutputBuffer, lines.join("; "))
}

/// The replica class of `client-output-buffer-limit` (`... replica 268435456 67108864 60 ...`;
/// `slave` before 5.0).
fn replica_limits(value: &str) -> Option<(u64, u64, u64)> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "replica" || *w == "slave")?;
    let number = |i: usize| words.get(at + i)?.parse().ok();
    Some((number(1)?, number(2)?, number(3)?))
}

pub(super) fn duration(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else if secs < 7200.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_replica_class() {
        let v = "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60";
        assert_eq!(replica_limits(v), Some((268435456, 67108864, 60)));
        assert_eq!(replica_limits("normal 0 0 0"), None);
    }

    #[test]
    fn a_backlog_shorter_than_the_minutes_warns_with_the_size_that_would_do() {
        let node = |rate: f64, backlog: u64| Node {
            addr: "h:1".into(),
            rate,
            measure: Measure::Stream,
            backlog: Some(backlog),
            buffer: Some((0, 0, 0)),
            snapshot_secs: 1.0,
        };
        let f = backlog(&[node(1_000_000.0, 1 << 20)], 10);
        assert_eq!(f.result, super::super::Outcome::Warn);
        assert!(
            f.fix.contains("CONFIG SET repl-backlog-size 573mb"),
            "{}",
            f.fix
        );
        let f = backlog(&[node(1_000.0, 1 << 30)], 10);
        assert_eq!(f.result, super::super::Outcome::Pass);
        let f = backlog(&[node(0.0, 1 << 14)], 10);
        assert_eq!(f.result, super::super::Outcome::Pass);
    }
}
