//! What `ferry task` prints when not asked for `--json`: the API's answers as tables and
//! short lines. Every function reads the API's JSON and tolerates fields it does not find
//! (shown as `-`), so an older or newer server still prints.

use std::fmt::Write;

use serde_json::Value;

/// Columns padded to their widest cell, two spaces apart; the last one is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Tasks one row each: id, name, state, for how long, keys written, lag, latency, labels.
pub fn tasks(tasks: &[Value], now_ms: u64) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let status = &t["status"];
            vec![
                text(&t["id"]),
                text(&t["name"]),
                text(&t["state"]),
                t["since"]
                    .as_u64()
                    .map(|ms| format!("{} ago", age(now_ms, ms)))
                    .unwrap_or_else(dash),
                status["keys_written"]
                    .as_u64()
                    .map(|n| n.to_string())
                    .unwrap_or_else(dash),
                status["lag_bytes"].as_u64().map(bytes).unwrap_or_else(dash),
                status["latency_ms"]["p99"]
                    .as_f64()
                    .map(|p99| format!("{} p99", ms(p99)))
                    .unwrap_or_else(dash),
                labels(&t["labels"]),
            ]
        })
        .collect();
    table(
        &[
            "ID", "NAME", "STATE", "SINCE", "KEYS", "LAG", "LATENCY", "LABELS",
        ],
        &rows,
    )
}

/// One task in full: identity, state, servers, live figures and last reports.
pub fn task(t: &Value, now_ms: u64) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("id", text(&t["id"])),
        ("name", text(&t["name"])),
        (
            "state",
            match t["since"].as_u64() {
                Some(since) => format!(
                    "{} since {} ({} ago)",
                    text(&t["state"]),
                    utc(since),
                    age(now_ms, since)
                ),
                None => text(&t["state"]),
            },
        ),
        (
            "created",
            t["created"].as_u64().map(utc).unwrap_or_else(dash),
        ),
        ("labels", labels(&t["labels"])),
    ];
    let spec = &t["spec"];
    rows.push(("source", text(&spec["source"]["url"])));
    rows.push(("target", text(&spec["target"]["url"])));
    for more in spec["more_targets"].as_array().into_iter().flatten() {
        rows.push(("", text(&more["url"])));
    }
    if let Some(e) = t["last_error"].as_str() {
        rows.push(("last error", e.to_string()));
    }
    let s = &t["status"];
    if s.is_object() {
        let paused = match s["paused"].as_bool() {
            Some(true) => " (paused)",
            _ => "",
        };
        rows.push(("phase", format!("{}{paused}", text(&s["phase"]))));
        rows.push((
            "keys",
            format!(
                "{} written, {} dropped, {} filtered",
                num(&s["keys_written"]),
                num(&s["dropped"]),
                num(&s["filtered_keys"])
            ),
        ));
        rows.push((
            "stream",
            format!(
                "{} commands applied, offset {} of {} (lag {})",
                num(&s["ops_applied"]),
                num(&s["applied_offset"]),
                num(&s["source_offset"]),
                s["lag_bytes"].as_u64().map(bytes).unwrap_or_else(dash)
            ),
        ));
        let latency = &s["latency_ms"];
        rows.push((
            "latency",
            match (latency["p50"].as_f64(), latency["p99"].as_f64()) {
                (Some(p50), Some(p99)) => format!(
                    "p50 {}, p99 {} ({} samples)",
                    ms(p50),
                    ms(p99),
                    num(&latency["samples"])
                ),
                _ => "no samples yet".into(),
            },
        ));
        if let (Some(used), Some(limit)) = (s["spool_bytes"].as_u64(), s["spool_limit"].as_u64()) {
            let full = match s["spool_full"].as_bool() {
                Some(true) => " (full)",
                _ => "",
            };
            rows.push((
                "spool",
                format!("{} of {}{full}", bytes(used), bytes(limit)),
            ));
        }
        if let Some(n) = s["retries"].as_u64().filter(|n| *n > 0) {
            rows.push(("retries", n.to_string()));
        }
    }
    let report = |r: &Value, pass: &str, fail: &str| match (r["at"].as_u64(), r["failed"].as_bool())
    {
        (Some(at), Some(failed)) => {
            format!("{} at {}", if failed { fail } else { pass }, utc(at))
        }
        _ => "never run".into(),
    };
    rows.push(("precheck", report(&t["last_precheck"], "passed", "failed")));
    rows.push((
        "verify",
        report(&t["last_verify"], "equal", "differences found"),
    ));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in rows {
        let _ = writeln!(out, "{key:width$}  {value}");
    }
    out
}

/// A precheck's findings as `ferry check` prints them, then a count.
pub fn findings(report: &Value) -> String {
    let mut rows = Vec::new();
    let mut counts = [0usize; 3];
    for f in report.as_array().into_iter().flatten() {
        let result = text(&f["result"]);
        match result.as_str() {
            "pass" => counts[0] += 1,
            "warn" => counts[1] += 1,
            _ => counts[2] += 1,
        }
        rows.push(vec![text(&f["item"]), result, text(&f["found"])]);
        if let Some(fix) = f["fix"].as_str().filter(|s| !s.is_empty()) {
            rows.push(vec![String::new(), String::new(), format!("fix: {fix}")]);
        }
    }
    let mut out = table(&["ITEM", "RESULT", "FOUND / FIX"], &rows);
    let _ = writeln!(
        out,
        "\n{} passed, {} warnings, {} failed",
        counts[0], counts[1], counts[2]
    );
    out
}

/// A verification's report: one paragraph per target with its counts and first differences.
pub fn verification(report: &Value) -> String {
    let mut out = String::new();
    for t in report.as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "target {}: {} keys in the source, {} in the target, {} filtered out; {} differences after {} rounds{}",
            text(&t["target"]),
            num(&t["source_keys"]),
            num(&t["target_keys"]),
            num(&t["filtered"]),
            num(&t["differences"]),
            num(&t["rounds"]),
            match t["stopped_early"].as_bool() {
                Some(true) => " (stopped early: too many)",
                _ => "",
            }
        );
        for example in t["examples"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  {example}");
        }
    }
    out
}

/// One event as a line: its number, time, type and what it says.
pub fn event(e: &Value) -> String {
    let kind = text(&e["type"]);
    let detail = match kind.as_str() {
        "state" | "phase" => {
            let from = e["from"].as_str().unwrap_or("-");
            let mut d = format!("{from} -> {}", text(&e["to"]));
            if let Some(note) = e["note"].as_str() {
                let _ = write!(d, " ({note})");
            }
            d
        }
        "failed" | "warning" => format!("{}: {}", text(&e["code"]), text(&e["message"])),
        "retrying" => format!(
            "{}: {} (attempt {}, next in {} ms, gives up in {} s)",
            text(&e["code"]),
            text(&e["message"]),
            num(&e["attempt"]),
            num(&e["delay_ms"]),
            num(&e["gives_up_in_s"])
        ),
        "precheck" => format!(
            "{} {}: {}",
            text(&e["item"]),
            text(&e["result"]),
            text(&e["found"])
        ),
        "precheck_report" => match e["failed"].as_bool() {
            Some(true) => "failed".into(),
            _ => "passed".into(),
        },
        "verified" => format!(
            "{} keys compared, {} differing",
            num(&e["compared"]),
            num(&e["differing"])
        ),
        "verify_report" => match e["differing"].as_bool() {
            Some(true) => "differences found".into(),
            _ => "equal".into(),
        },
        _ => {
            // A type this CLI does not know: its fields as they are.
            let mut rest = e.clone();
            if let Some(o) = rest.as_object_mut() {
                for known in ["seq", "at_ms", "task", "type", "shard"] {
                    o.remove(known);
                }
            }
            match rest.as_object().is_some_and(|o| o.is_empty()) {
                true => String::new(),
                false => rest.to_string(),
            }
        }
    };
    let shard = e["shard"]
        .as_str()
        .map(|s| format!("[{s}] "))
        .unwrap_or_default();
    let line = format!(
        "{:>5}  {}  {:<15}  {shard}{detail}",
        num(&e["seq"]),
        e["at_ms"].as_u64().map(utc).unwrap_or_else(dash),
        kind
    );
    line.trim_end().to_string()
}

/// What a pause means for the task: the server's own note, else its figures.
pub fn pause(p: &Value) -> String {
    match p["note"].as_str() {
        Some(note) => note.to_string(),
        None => p.to_string(),
    }
}

fn dash() -> String {
    "-".into()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => dash(),
        other => other.to_string(),
    }
}

fn num(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        _ => dash(),
    }
}

fn labels(v: &Value) -> String {
    let pairs: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    match pairs.is_empty() {
        true => dash(),
        false => pairs.join(","),
    }
}

fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.0} ms")
    }
}

/// Bytes with a binary unit: `512 B`, `1.5 KiB`, `3.0 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// How long ago, in its two largest units: `45s`, `5m12s`, `3h4m`, `2d3h`.
pub fn age(now_ms: u64, then_ms: u64) -> String {
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// A unix time in ms as `2026-12-07 09:40:01 UTC`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86400, secs % 86400);
    // Days since 1970-01-01 to a civil date (the proleptic Gregorian calendar), counted in
    // 400-year eras that start on March 1st so that leap days fall at the end of a year.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_636_401_999), "2026-12-07 09:40:01 UTC");
        assert_eq!(utc(4_107_542_399_000), "2100-02-28 23:59:59 UTC");
    }

    #[test]
    fn ages_and_sizes_read_at_a_glance() {
        assert_eq!(age(10_000, 20_000), "0s");
        assert_eq!(age(312_000, 0), "5m12s");
        assert_eq!(age(3 * 86_400_000 + 7_200_000, 0), "3d2h");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(1 << 30), "1.0 GiB");
    }

    #[test]
    fn a_table_lines_up_its_columns() {
        let t = table(
            &["ID", "STATE", "LABELS"],
            &[
                vec!["a".into(), "incremental".into(), "-".into()],
                vec!["long-id".into(), "paused".into(), "env=prod".into()],
            ],
        );
        assert_eq!(
            t,
            "ID       STATE        LABELS\na        incremental  -\nlong-id  paused       env=prod\n"
        );
    }

    #[test]
    fn a_task_without_status_or_with_unknown_fields_still_prints() {
        let t = json!({"id": "t-1", "name": "n", "state": "created", "since": 0, "labels": {},
            "spec": {}, "status": null, "new_field": [1]});
        let row = tasks(std::slice::from_ref(&t), 1000);
        assert!(row.contains("t-1  n     created  1s ago  -"), "{row}");
        let full = task(&t, 1000);
        assert!(full.contains("precheck  never run"), "{full}");
    }

    #[test]
    fn events_print_their_own_fields() {
        let e = json!({"seq": 3, "at_ms": 0, "task": "t", "type": "phase", "from": "full_sync", "to": "incremental"});
        assert_eq!(
            event(&e),
            "    3  1970-01-01 00:00:00 UTC  phase            full_sync -> incremental"
        );
        let e = json!({"seq": 4, "at_ms": 0, "task": "t", "type": "paused"});
        assert!(event(&e).ends_with("paused"));
        let e = json!({"seq": 5, "at_ms": 0, "task": "t", "type": "new_kind", "x": 1});
        assert!(
            event(&e).ends_with("new_kind         {\"x\":1}"),
            "{}",
            event(&e)
        );
    }
}
