//! `source_replication` and `target_write`: whether ferry's user may run what it needs.
//!
//! Asked without running anything: `ACL DRYRUN` (Redis 7.0+) when the user may use it, else
//! each command queued inside a `MULTI` that is then discarded (the ACL is checked when a
//! command is queued). Before 6.0 there are no ACLs. A user allowed neither way leaves the
//! answer open: a warning, and the sync itself finds out.

use bytes::Bytes;
use ferry_resp::Frame;

use super::reach::Side;
use super::{Finding, Item};
use crate::config::TaskConfig;
use crate::error::{Error, Result, Role};
use crate::net::conn::Conn;
use crate::sink::checkpoint::Checkpoint;
use crate::spec::{OnConflict, SourceMode};

/// What a user may run, of a list of commands.
#[derive(Debug, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// The commands refused (lowercase names) and the server's reason for the first.
    Denied(Vec<String>, String),
    /// Could not be found out, and why.
    Unknown(String),
}

/// Whether `user` (logged in on `conn`) may run each of `commands` (full argument lists).
pub async fn may_run(
    conn: &mut Conn,
    user: &str,
    version: (u32, u32, u32),
    commands: &[Vec<Bytes>],
) -> Result<Access> {
    if version.0 < 6 {
        return Ok(Access::Allowed);
    }
    if version.0 >= 7
        && let Some(access) = dry_run(conn, user, commands).await?
    {
        return Ok(access);
    }
    queued(conn, commands).await
}

/// `ACL DRYRUN` of each command; None when the user may not run `ACL DRYRUN` itself.
async fn dry_run(conn: &mut Conn, user: &str, commands: &[Vec<Bytes>]) -> Result<Option<Access>> {
    let mut denied = Vec::new();
    let mut reason = String::new();
    for command in commands {
        let mut args: Vec<Bytes> = vec![
            Bytes::from_static(b"ACL"),
            Bytes::from_static(b"DRYRUN"),
            Bytes::copy_from_slice(user.as_bytes()),
        ];
        args.extend(command.iter().cloned());
        match conn.request(&args).await? {
            Frame::Simple(_) => {}
            Frame::Bulk(why) | Frame::Verbatim { text: why, .. } => {
                if denied.is_empty() {
                    reason = String::from_utf8_lossy(&why).into_owned();
                }
                denied.push(name(command));
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(verdict(denied, reason)))
}

/// Each command queued in a `MULTI`, then `DISCARD`: a refused one answers `NOPERM`.
async fn queued(conn: &mut Conn, commands: &[Vec<Bytes>]) -> Result<Access> {
    if let Frame::Error(msg) = conn.request(&[b"MULTI"]).await? {
        return Ok(Access::Unknown(format!(
            "the user may run neither ACL DRYRUN nor MULTI ({})",
            String::from_utf8_lossy(&msg)
        )));
    }
    let mut denied = Vec::new();
    let mut reason = String::new();
    let mut unknown = None;
    for command in commands {
        if let Frame::Error(msg) = conn.request(command).await? {
            let text = String::from_utf8_lossy(&msg).into_owned();
            if text.starts_with("NOPERM") {
                if denied.is_empty() {
                    reason = text;
                }
                denied.push(name(command));
            } else if text.contains("not allowed inside a transaction") {
                // Since 7.0 replication commands refuse MULTI before the ACL is asked.
                unknown = Some(format!(
                    "{} cannot be asked about inside MULTI and the user may not run ACL DRYRUN",
                    name(command)
                ));
            }
        }
    }
    conn.request(&[b"DISCARD"]).await?;
    Ok(match (denied.is_empty(), unknown) {
        (true, Some(why)) => Access::Unknown(why),
        _ => verdict(denied, reason),
    })
}

fn verdict(denied: Vec<String>, reason: String) -> Access {
    if denied.is_empty() {
        Access::Allowed
    } else {
        Access::Denied(denied, reason)
    }
}

fn name(command: &[Bytes]) -> String {
    String::from_utf8_lossy(&command[0]).to_lowercase()
}

fn command(args: &[&[u8]]) -> Vec<Bytes> {
    args.iter().map(|a| Bytes::copy_from_slice(a)).collect()
}

/// The `ACL SETUSER` line that grants `commands` to `user`.
fn grant(user: &str, commands: &[String]) -> String {
    let plus: Vec<String> = commands.iter().map(|c| format!("+{c}")).collect();
    format!("ACL SETUSER {user} {}", plus.join(" "))
}

/// The source's user may replicate: `PSYNC`, `REPLCONF`, `PING` on every node ferry reads.
pub(super) async fn source_replication(side: &mut Side, config: &TaskConfig) -> Result<Finding> {
    let mut finding = source_replication_finding(side, config).await?;
    finding.acl = labelled_line(config, &side.label);
    Ok(finding)
}

fn labelled_line(config: &TaskConfig, label: &str) -> Option<String> {
    setuser_lines(config)
        .into_iter()
        .find(|(l, _)| l == label)
        .map(|(_, line)| line)
}

async fn source_replication_finding(side: &mut Side, config: &TaskConfig) -> Result<Finding> {
    let all = labelled_line(config, &side.label).unwrap_or_default();
    let commands = [
        command(&[b"PSYNC", b"?", b"-1"]),
        command(&[b"REPLCONF", b"capa", b"eof"]),
        command(&[b"PING"]),
    ];
    let item = Item::SourceReplication;
    let user = side.user.clone();
    for conn in &mut side.nodes {
        let addr = conn.addr.clone();
        match may_run(conn, &user, side.version, &commands).await? {
            Access::Allowed => {}
            Access::Denied(missing, reason) => {
                return Ok(Finding::fail(
                    item,
                    format!(
                        "source {addr}: user {user} may not run {} ({reason}), so it cannot replicate",
                        missing.join(", ")
                    ),
                    format!(
                        "on the source: {} (or all ferry needs: {all})",
                        grant(&user, &missing)
                    ),
                ));
            }
            Access::Unknown(why) => {
                return Ok(Finding::warn(
                    item,
                    format!("source {addr}: cannot tell whether user {user} may replicate: {why}"),
                    format!(
                        "make sure the user has +psync +replconf +ping (ACL SETUSER {user} +psync +replconf +ping), or allow it +acl|dryrun to have it checked; all ferry needs: {all}"
                    ),
                ));
            }
        }
    }
    let how = if side.version.0 < 6 {
        "no ACLs before Redis 6.0".to_string()
    } else {
        format!("user {user} may run PSYNC, REPLCONF and PING")
    };
    Ok(Finding::pass(item, format!("{}: {how}", side.name())))
}

/// The target's user may write what ferry writes: keys with `RESTORE`/`SET`/`DEL`, its
/// checkpoint in `MULTI`/`EXEC` behind `WATCH` and a fence script (`EVAL`), `SELECT` for
/// other dbs, and `FLUSHALL`/`FLUSHDB` when `on_conflict = "flush"`.
pub(super) async fn target_write(side: &mut Side, config: &TaskConfig) -> Result<Finding> {
    let mut finding = target_write_finding(side, config).await?;
    finding.acl = labelled_line(config, &side.label);
    Ok(finding)
}

async fn target_write_finding(side: &mut Side, config: &TaskConfig) -> Result<Finding> {
    let all = labelled_line(config, &side.label).unwrap_or_default();
    let key = Checkpoint::key(&config.name);
    let mut commands = vec![
        command(&[b"MULTI"]),
        command(&[b"EXEC"]),
        command(&[b"SET", &key, b"x"]),
        command(&[b"RESTORE", &key, b"0", b"x", b"REPLACE"]),
        command(&[b"DEL", &key]),
    ];
    if !side.is_cluster() {
        commands.push(command(&[b"SELECT", b"0"]));
    }
    if config.checkpoint {
        // The lease, the fence check before each transaction, the TTL hold's passes.
        commands.push(command(&[b"EVAL", b"return 1", b"1", &key]));
        // WATCH cannot be queued in a MULTI: asked only where ACL DRYRUN answers.
        if side.version.0 >= 7 {
            commands.push(command(&[b"WATCH", &key]));
        }
    }
    if config.on_conflict == Some(OnConflict::Flush) {
        let narrowed = crate::sink::conflict::synced_dbs(config).is_some();
        commands.push(if narrowed {
            command(&[b"FLUSHDB"])
        } else {
            command(&[b"FLUSHALL"])
        });
    }
    // A replica takes its writes from its master: ferry only points it at itself.
    let replica = config.target_mode == crate::spec::TargetMode::Replica;
    if replica {
        commands = vec![
            command(&[b"REPLICAOF", b"127.0.0.1", b"6379"]),
            command(&[b"CONFIG", b"SET", b"masterauth", b"x"]),
            command(&[b"CONFIG", b"GET", b"masterauth"]),
            command(&[b"INFO", b"replication"]),
        ];
    }
    let item = Item::TargetWrite;
    let user = side.user.clone();
    for conn in &mut side.nodes {
        let addr = conn.addr.clone();
        // MULTI and EXEC cannot be queued in a MULTI: without ACL DRYRUN they are left to
        // `MULTI` itself answering.
        let asked: &[Vec<Bytes>] = if side.version.0 >= 7 || replica {
            &commands
        } else {
            &commands[2..]
        };
        match may_run(conn, &user, side.version, asked).await? {
            Access::Allowed => {}
            Access::Denied(missing, reason) => {
                return Ok(Finding::fail(
                    item,
                    format!(
                        "{} {addr}: user {user} may not run {} ({reason})",
                        side.label,
                        missing.join(", ")
                    ),
                    format!(
                        "on the target: {} (and ~* or the synced keys' patterns; all ferry needs: {all})",
                        grant(&user, &missing)
                    ),
                ));
            }
            Access::Unknown(why) => {
                return Ok(Finding::warn(
                    item,
                    format!(
                        "{} {addr}: cannot tell whether user {user} may write: {why}",
                        side.label
                    ),
                    format!(
                        "make sure the user may write every synced key with +@write +multi +exec +select +eval +watch, or allow it +acl|dryrun to have it checked; all ferry needs: {all}"
                    ),
                ));
            }
        }
    }
    let how = if side.version.0 < 6 {
        "no ACLs before Redis 6.0".to_string()
    } else {
        let names: Vec<String> = commands.iter().map(|c| name(c).to_uppercase()).collect();
        format!("user {user} may run {}", names.join(", "))
    };
    Ok(Finding::pass(item, format!("{}: {how}", side.name())))
}

/// The user a line is for: the one ferry logs in as, or `ferry` for a server it reaches as
/// `default` (whose rights a line must not take away from every other client).
fn line_user(endpoint: &crate::net::endpoint::Endpoint) -> &str {
    endpoint.username.as_deref().unwrap_or("ferry")
}

/// What ferry runs on a source: replication, what the precheck reads, and (unless turned off
/// or not used) the heartbeat key it writes. Keys: only its own (`__ferry:*`, which the
/// precheck also looks for in the source); replication itself needs none.
const SOURCE_COMMANDS: &[&str] = &[
    "+psync",
    "+replconf",
    "+ping",
    "+select",
    "+info",
    "+config|get",
    "+cluster|nodes",
    "+cluster|slots",
    "+cluster|shards",
    "+readonly",
    "+scan",
    "+get",
    "+hgetall",
    "+exists",
    "+type",
    "+module|list",
    "+function|list",
    // Only for the precheck: how it asks about these rights without running anything.
    "+acl|dryrun",
];

/// What ferry runs on a source it reads by scanning: reads of every key (no write: the key
/// pattern opens them to these commands only), the keyspace channels, and what it asks of
/// the server (CONFIG SET only to turn notifications on, where they are off).
const SCAN_COMMANDS: &[&str] = &[
    // SCAN, TYPE, PTTL, DUMP, MEMORY USAGE and the type-by-type reads (HPEXPIRETIME only
    // where the server has it: a category names no command a version lacks).
    "+@read",
    "+psubscribe",
    "+ping",
    "+select",
    "+info",
    "+command|info",
    "+config|get",
    "+config|set",
    "+cluster|nodes",
    "+cluster|slots",
    "+cluster|shards",
    "+readonly",
    "+module|list",
    "+function|list",
    "+acl|whoami",
    "+acl|dryrun",
];

/// What ferry runs on a target: every write command of the stream (`+@write`, which takes in
/// RESTORE, FLUSHALL, FUNCTION LOAD...), transactions for the checkpoint, scripts (the
/// lease's fence, the TTL hold, and scripts in a Redis 6 stream), reads of the keys it
/// writes (its own state is read back, in scripts too, and the precheck and the conflict
/// check look at what the target holds), and what the precheck and the writer's start ask
/// of the server.
const TARGET_COMMANDS: &[&str] = &[
    "+@write",
    "+@read",
    "+@transaction",
    "+@scripting",
    "+select",
    "+ping",
    "+info",
    "+config|get",
    "+role",
    "+time",
    "+cluster|nodes",
    "+cluster|slots",
    "+cluster|shards",
    "+asking",
    "+readonly",
    "+module|list",
    "+function|list",
    "+acl|dryrun",
];

/// One complete `ACL SETUSER` line per server ferry talks to (the source, when it is a
/// server, then each target), labelled as the precheck labels them: with it, and nothing
/// more, every item passes and the sync runs. `PASSWORD` stands for the user's password,
/// which ferry never prints.
pub fn setuser_lines(config: &TaskConfig) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    if let crate::config::Source::Redis(endpoint) = &config.source {
        let mut rules = match config.source_mode {
            SourceMode::Psync => vec!["~__ferry:*".to_string(), "resetchannels".to_string()],
            // No write command is given: every key is open to reads only.
            SourceMode::Scan => vec![
                "~*".to_string(),
                "resetchannels".to_string(),
                "&__keyspace@*__:*".to_string(),
            ],
            // The heartbeat's SET must stay on ferry's keys (read-only patterns: 7.0+).
            SourceMode::Auto => vec![
                "~__ferry:*".to_string(),
                "%R~*".to_string(),
                "resetchannels".to_string(),
                "&__keyspace@*__:*".to_string(),
            ],
        };
        if config.source_mode != SourceMode::Scan {
            rules.extend(SOURCE_COMMANDS.iter().map(|c| c.to_string()));
            if config.heartbeat && !config.full_only {
                rules.push("+set".into());
            }
        }
        if config.source_mode != SourceMode::Psync {
            for c in SCAN_COMMANDS {
                if !rules.iter().any(|r| r == c) {
                    rules.push(c.to_string());
                }
            }
        }
        lines.push(("source".to_string(), line(line_user(endpoint), &rules)));
    }
    let targets: Vec<_> = std::iter::once(&config.target)
        .chain(&config.more_targets)
        .collect();
    for (i, endpoint) in targets.iter().enumerate() {
        let label = if targets.len() == 1 {
            "target".to_string()
        } else {
            format!("target {}", i + 1)
        };
        let mut rules = vec!["~*".to_string()];
        rules.push(
            if config.forward_publish {
                "&*"
            } else {
                "resetchannels"
            }
            .to_string(),
        );
        rules.extend(TARGET_COMMANDS.iter().map(|c| c.to_string()));
        lines.push((label, line(line_user(endpoint), &rules)));
    }
    lines
}

/// A refusal for want of a right (`NOPERM`, which names the command) with the line that
/// gives ferry's user on that side all it needs; any other error unchanged.
pub fn with_acl_line(error: Error, config: &TaskConfig) -> Error {
    let add = |msg: String, role: Role| match setuser_line(config, role) {
        Some(line) if refused_for_rights(&msg) && !msg.contains("ACL SETUSER") => {
            format!("{msg}; all ferry needs on the {role}: {line}")
        }
        _ => msg,
    };
    match error {
        Error::TargetRefused {
            addr,
            what,
            msg,
            retryable,
        } => Error::TargetRefused {
            addr,
            what,
            msg: add(msg, Role::Target),
            retryable,
        },
        Error::Server { role, addr, msg } => Error::Server {
            role,
            addr,
            msg: add(msg, role),
        },
        Error::GaveUp { minutes, last } => Error::GaveUp {
            minutes,
            last: Box::new(with_acl_line(*last, config)),
        },
        other => other,
    }
}

/// A refusal for want of a right: `NOPERM`, or inside a script Redis's own words for it.
fn refused_for_rights(msg: &str) -> bool {
    msg.contains("NOPERM") || msg.contains("user executing the script can't run")
}

fn line(user: &str, rules: &[String]) -> String {
    format!("ACL SETUSER {user} reset on >PASSWORD {}", rules.join(" "))
}

/// The line of `setuser_lines` for `role`'s first server, for an error that names it.
pub fn setuser_line(config: &TaskConfig, role: Role) -> Option<String> {
    let label = match role {
        Role::Source => "source",
        _ => "target",
    };
    setuser_lines(config)
        .into_iter()
        .find(|(l, _)| l.starts_with(label))
        .map(|(_, line)| line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> TaskConfig {
        let spec = crate::spec::TaskSpec::from_toml(&format!(
            "[source]\nurl = \"redis://repl:pw@127.0.0.1:7000\"\n[target]\nurl = \"redis://127.0.0.1:7001\"\n{extra}"
        ))
        .unwrap();
        TaskConfig::build(spec).unwrap()
    }

    #[test]
    fn one_line_per_server_with_only_what_the_task_uses() {
        let lines = setuser_lines(&config(""));
        assert_eq!(lines.len(), 2);
        let (source, target) = (&lines[0].1, &lines[1].1);
        assert_eq!(lines[0].0, "source");
        assert!(source.starts_with("ACL SETUSER repl reset on >PASSWORD ~__ferry:* resetchannels +psync +replconf +ping "), "{source}");
        assert!(source.ends_with(" +set"), "the heartbeat: {source}");
        assert!(!source.contains("pw"), "{source}");
        // Reached as the default user: a user of its own, not the default's rights cut.
        assert!(
            target.starts_with("ACL SETUSER ferry reset on >PASSWORD ~* resetchannels +@write"),
            "{target}"
        );
        let quiet = setuser_lines(&config(
            "[sync]\nheartbeat = false\n[filter]\nforward_publish = true",
        ));
        assert!(!quiet[0].1.contains("+set"), "{quiet:?}");
        assert!(quiet[1].1.contains(" ~* &* "), "{quiet:?}");
    }

    /// The docs (docs/configuration.md) give the lines of the default settings, as `ferry
    /// check` prints them.
    #[test]
    fn the_readme_gives_the_lines_of_the_default_settings() {
        let readme = include_str!("../../../../docs/configuration.md");
        let spec = crate::spec::TaskSpec::from_toml(
            "[source]\nurl = \"redis://127.0.0.1:7000\"\n[target]\nurl = \"redis://127.0.0.1:7001\"\n",
        )
        .unwrap();
        for (label, line) in setuser_lines(&TaskConfig::build(spec).unwrap()) {
            assert!(readme.contains(&format!("\n{line}\n")), "{label}: {line}");
        }
    }

    #[test]
    fn a_refused_right_names_the_line() {
        let config = config("");
        let refused = Error::TargetRefused {
            addr: "127.0.0.1:7001".into(),
            what: "EVAL (TTL HOLD)".into(),
            msg: "ERR The user executing the script can't run this command or subcommand".into(),
            retryable: false,
        };
        let text = with_acl_line(refused, &config).to_string();
        let line = setuser_line(&config, Role::Target).unwrap();
        assert!(text.contains("EVAL") && text.ends_with(&line), "{text}");
        let gave_up = Error::GaveUp {
            minutes: 10,
            last: Box::new(Error::Server {
                role: Role::Source,
                addr: "127.0.0.1:7000".into(),
                msg: "refused PSYNC: NOPERM no".into(),
            }),
        };
        let text = with_acl_line(gave_up, &config).to_string();
        assert!(
            text.contains("all ferry needs on the source: ACL SETUSER repl "),
            "{text}"
        );
        let other = Error::Config("x".into());
        assert_eq!(with_acl_line(other, &config).to_string(), "x");
    }

    #[test]
    fn grants_what_is_missing() {
        assert_eq!(
            grant("repl", &["psync".into(), "replconf".into()]),
            "ACL SETUSER repl +psync +replconf"
        );
    }
}
