//! The engine's errors: each names the server or setting involved and, where the user can act,
//! what to do. `Display` is the one line the CLI prints.

use std::io;
use std::time::Duration;

/// Which side of the sync a server is on; used in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Source,
    Target,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Source => "source",
            Role::Target => "target",
        })
    }
}

#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The task's settings are wrong or do not fit the servers; the message names the setting
    /// by its config key (`[sync] name`), never by a command-line flag.
    #[error("{0}")]
    Config(String),

    /// ferry's own files: the spool, the task's local directory, an RDB file to load.
    #[error("{0}")]
    Local(String),

    /// A part of the engine stopped without saying why (a panic in a spawned task or thread).
    #[error("{what} stopped: {why}")]
    Internal { what: &'static str, why: String },

    /// The target already holds data a new task did not write, and `on_conflict` says fail.
    #[error("{0}")]
    TargetNotEmpty(String),

    /// Retries went on for the whole window without progress.
    #[error("gave up after {minutes} min of retries: {last}")]
    GaveUp { minutes: u64, last: Box<Error> },

    #[error("cannot connect to {role} {addr}: {source}{}", connect_hint(source))]
    Connect {
        role: Role,
        addr: String,
        source: io::Error,
    },

    /// `reason` says why in words, ending with rustls's name for it, e.g. "(UnknownIssuer)".
    #[error("{role} {addr}: TLS handshake failed: {reason}")]
    Tls {
        role: Role,
        addr: String,
        reason: String,
    },

    #[error(
        "{role} {addr} rejected the login: {msg}; check the {role}'s user and password (its URL, or [{role}] user, password_file, password_env)"
    )]
    Auth {
        role: Role,
        addr: String,
        msg: String,
    },

    #[error(
        "{role} {addr} requires a password: set [{role}] password_file or password_env (or give it in the URL as redis://[user]:password@{addr})"
    )]
    NoAuth { role: Role, addr: String },

    #[error(
        "no sentinel named the {role}'s master {master:?}: {why}; check the sentinel addresses and the master name in the {role} URL"
    )]
    Sentinel {
        role: Role,
        master: String,
        why: String,
    },

    #[error("{role} {addr}: {msg}")]
    Server {
        role: Role,
        addr: String,
        msg: String,
    },

    #[error("lost the connection to {role} {addr}: {source}")]
    Io {
        role: Role,
        addr: String,
        source: io::Error,
    },

    #[error("{role} {addr} closed the connection{context}")]
    Closed {
        role: Role,
        addr: String,
        context: String,
    },

    /// A server that keeps the connection but does not answer: retried as an "other" failure.
    #[error("{role} {addr} sent no reply for {secs} s")]
    Timeout { role: Role, addr: String, secs: u64 },

    #[error("{role} {addr} sent bytes that are not RESP: {source}")]
    Protocol {
        role: Role,
        addr: String,
        source: ferry_resp::Error,
    },

    #[error(
        "snapshot from source {addr} is unreadable: {source}{}",
        snapshot_hint(source)
    )]
    Snapshot {
        addr: String,
        source: ferry_rdb::Error,
    },

    /// `what` names the command and its keys, e.g. `RESTORE of key "a" in db 0`.
    /// `retryable`: nothing of it was applied (refused when queued, or out of memory), so the
    /// same writes can be tried again.
    #[error("target {addr} refused {what}: {msg}{}", refusal_hint(msg))]
    TargetRefused {
        addr: String,
        what: String,
        msg: String,
        retryable: bool,
    },

    #[error(
        "a full resync from source {addr} is needed: {why}. The target still holds its earlier copy; to empty it and copy again, set [sync] full_resync = \"flush\""
    )]
    ResyncNeeded { addr: String, why: String },

    /// Another process holds the task's lease and renews it.
    #[error(
        "task {task} is already running ({holder}) on target {target}; stop that copy first, or give this task another [sync] name"
    )]
    AlreadyRunning {
        task: String,
        target: String,
        holder: String,
    },

    /// Another process took the task over: this one must not write again.
    #[error("task {task} was taken over by another copy ({why}); this copy stops without writing")]
    LeaseLost { task: String, why: String },

    #[error("cannot write {what} to the target: {why}")]
    CannotWrite { what: String, why: String },

    /// The precheck's failed items, each with what was found and how to fix it.
    #[error(
        "precheck failed: {0}; `ferry check` with the same settings shows every item; to start anyway, name the item in [check] ignore"
    )]
    Precheck(String),

    /// A copy read by scanning differs from the source once it is done.
    #[error(
        "the copy on target {target} differs from the source in {keys} key(s) after the full copy (first: {first}); a scan copy converges once the source stops changing: run it again without full_only to follow the writes, or check again with `ferry verify`"
    )]
    Diverged {
        target: String,
        keys: usize,
        first: String,
    },

    #[error("status server on {addr}: {source}")]
    StatusServer { addr: String, source: io::Error },

    #[error(transparent)]
    Script(#[from] crate::pipeline::script::ScriptError),
}

/// How a failure may be retried: the one place this is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// A lost or refused connection, or a server busy loading or failing over: retried for
    /// `retry.connection`.
    Connection,
    /// Nothing was applied and trying again may work (a refusal for lack of memory, a reply
    /// that does not come): retried for `retry.other`.
    Other,
    /// The user's to fix, or final.
    Never,
}

impl Error {
    /// A stable name for the kind of failure, for programs (API responses, metrics labels,
    /// alert rules): it never changes with the wording.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Local(_) => "local_files",
            Error::Internal { .. } => "internal",
            Error::TargetNotEmpty(_) => "target_not_empty",
            Error::GaveUp { .. } => "gave_up",
            Error::Connect { .. } => "connect",
            Error::Tls { .. } => "tls",
            Error::Auth { .. } => "auth",
            Error::NoAuth { .. } => "no_auth",
            Error::Sentinel { .. } => "sentinel",
            Error::Server { .. } => "server",
            Error::Io { .. } => "connection_lost",
            Error::Closed { .. } => "connection_closed",
            Error::Timeout { .. } => "timeout",
            Error::Protocol { .. } => "protocol",
            Error::Snapshot { .. } => "snapshot",
            Error::TargetRefused { .. } => "target_refused",
            Error::ResyncNeeded { .. } => "resync_needed",
            Error::AlreadyRunning { .. } => "already_running",
            Error::LeaseLost { .. } => "lease_lost",
            Error::CannotWrite { .. } => "cannot_write",
            Error::Precheck(_) => "precheck",
            Error::Diverged { .. } => "diverged",
            Error::StatusServer { .. } => "status_server",
            Error::Script(_) => "script",
        }
    }

    /// Which server's side the failure is on, when it is about one.
    pub fn role(&self) -> Option<Role> {
        match self {
            Error::Connect { role, .. }
            | Error::Tls { role, .. }
            | Error::Auth { role, .. }
            | Error::NoAuth { role, .. }
            | Error::Sentinel { role, .. }
            | Error::Server { role, .. }
            | Error::Io { role, .. }
            | Error::Closed { role, .. }
            | Error::Timeout { role, .. }
            | Error::Protocol { role, .. } => Some(*role),
            Error::Snapshot { .. } | Error::ResyncNeeded { .. } => Some(Role::Source),
            Error::TargetRefused { .. }
            | Error::TargetNotEmpty(_)
            | Error::AlreadyRunning { .. }
            | Error::CannotWrite { .. } => Some(Role::Target),
            _ => None,
        }
    }

    /// Whether and how long retrying may help.
    pub fn retry(&self) -> Retry {
        // A server busy loading its data, failing over, or running a long script.
        let busy = |msg: &str| {
            ["LOADING", "MASTERDOWN", "BUSY", "TRYAGAIN"]
                .iter()
                .any(|p| msg.contains(p))
        };
        match self {
            Error::Connect { .. } | Error::Io { .. } | Error::Closed { .. } => Retry::Connection,
            Error::Server { msg, .. } if busy(msg) => Retry::Connection,
            // A cluster moving slots: the next try reads its slot map again.
            Error::Server { msg, .. } if redirect(msg) => Retry::Connection,
            Error::TargetRefused {
                retryable: true, ..
            }
            | Error::Timeout { .. } => Retry::Other,
            _ => Retry::Never,
        }
    }

    /// The target went away (restart, network cut, still loading, not answering) rather than
    /// refusing a write: what the spool bridges.
    pub fn target_gone(&self) -> Option<Retry> {
        match (self.role(), self) {
            // Refused because a slot moved: nothing of it was applied, and the target is
            // reached again through its new slot map, as after a failover.
            (
                _,
                Error::TargetRefused {
                    msg,
                    retryable: true,
                    ..
                },
            ) if redirect(msg) => Some(Retry::Connection),
            (_, Error::TargetRefused { .. }) => None,
            (Some(Role::Target), e) if e.retry() != Retry::Never => Some(e.retry()),
            _ => None,
        }
    }
}

/// A cluster's answer for a key whose slot is elsewhere or moving (or a cluster without
/// every slot served).
fn redirect(msg: &str) -> bool {
    crate::net::topology::is_redirect(msg.as_bytes())
}

/// 0.5 s doubling to 30 s, times a jitter of 0.5-1 so many tasks do not retry in step.
pub fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1u32 << attempt.min(6));
    let base = base.min(Duration::from_secs(30));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    base.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
}

fn connect_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => " (is redis-server running there, on that port?)",
        io::ErrorKind::TimedOut => " (no answer: check the host, port and any firewall)",
        _ => "",
    }
}

fn refusal_hint(msg: &str) -> &'static str {
    if msg.starts_with("OOM") {
        " (the target is out of memory: raise its maxmemory or choose an eviction policy, then run ferry again)"
    } else if msg.starts_with("READONLY") {
        " (the target is a read-only replica: point ferry at its master)"
    } else if msg.starts_with("NOPERM") {
        " (the target user lacks permission for this command: grant it with ACL SETUSER)"
    } else if msg.contains("payload version or checksum") {
        " (the target cannot read this Redis version's encoding)"
    } else if msg.starts_with("MISCONF") {
        " (the target cannot persist to disk: fix its save settings or disk)"
    } else {
        ""
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to do about a value damaged inside a snapshot whose framing is sound.
fn snapshot_hint(e: &ferry_rdb::Error) -> &'static str {
    match (e.kind(), e.key()) {
        (ferry_rdb::ErrorKind::Corrupt(_), Some(_)) => {
            " (that value is damaged; a server that restores it can crash: repair or delete that key on the source, then copy again)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(msg: &str, retryable: bool) -> Error {
        Error::TargetRefused {
            addr: "127.0.0.1:7000".into(),
            what: "SET of key \"k\"".into(),
            msg: msg.into(),
            retryable,
        }
    }

    #[test]
    fn a_moved_slot_is_retried_through_the_spool_and_other_refusals_are_not() {
        assert_eq!(
            refused("MOVED 3199 127.0.0.1:7001", true).target_gone(),
            Some(Retry::Connection)
        );
        assert_eq!(
            refused("ASK 3199 127.0.0.1:7001", true).target_gone(),
            Some(Retry::Connection)
        );
        assert_eq!(refused("OOM command not allowed", true).target_gone(), None);
        assert_eq!(
            refused("MOVED 3199 127.0.0.1:7001", false).target_gone(),
            None
        );
        let control = Error::Server {
            role: Role::Target,
            addr: "127.0.0.1:7000".into(),
            msg: "MOVED 9932 127.0.0.1:7002".into(),
        };
        assert_eq!(control.retry(), Retry::Connection);
        assert_eq!(control.target_gone(), Some(Retry::Connection));
        let wrong = Error::Server {
            role: Role::Target,
            addr: "127.0.0.1:7000".into(),
            msg: "ERR unknown command".into(),
        };
        assert_eq!(wrong.retry(), Retry::Never);
    }
}
