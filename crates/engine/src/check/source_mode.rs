//! How the source will be read, and, when by scanning, whether its changes can be heard:
//! `source_mode` says psync or scan and why (for `mode = "auto"`, what the source allows);
//! `notifications` says whether the source publishes keyspace notifications, or whether
//! ferry may turn them on, and otherwise which line to run there.

use ferry_resp::Frame;

use crate::config::TaskConfig;
use crate::error::Result;
use crate::spec::{Item, SourceMode};

use super::Finding;
use super::reach::Side;

/// The `source_mode` finding, and whether the source will be read by scanning.
pub(super) async fn check(source: &mut Side, config: &TaskConfig) -> Result<(Finding, bool)> {
    let name = source.name();
    Ok(match config.source_mode {
        SourceMode::Psync => (
            Finding::pass(
                Item::SourceMode,
                format!("{name} is read as a replica (psync): every write applied once, in order"),
            ),
            false,
        ),
        SourceMode::Scan => (
            Finding::pass(
                Item::SourceMode,
                format!(
                    "{name} is read by SCAN and keyspace notifications ([source] mode = \"scan\"): the target converges to the source; writes are not replayed one by one"
                ),
            ),
            true,
        ),
        SourceMode::Auto => match crate::source::psync::refusal(&source.endpoint).await? {
            Some(why) => (
                Finding::warn(
                    Item::SourceMode,
                    format!(
                        "{name} will be read by SCAN and keyspace notifications, since {why}: the target converges to the source; writes are not replayed one by one"
                    ),
                    "allow replication on the source (and set [source] mode = \"psync\") for every write applied once and in order; or keep scan mode, see docs/guarantees.md",
                ),
                true,
            ),
            None => (
                Finding::pass(
                    Item::SourceMode,
                    format!(
                        "{name} allows replication: it is read as a replica (psync), every write applied once, in order"
                    ),
                ),
                false,
            ),
        },
    })
}

/// Scan mode: one finding over the source's nodes.
pub(super) async fn notifications(source: &mut Side) -> Result<Finding> {
    let name = source.name();
    let mut off = Vec::new();
    let mut unseen = Vec::new();
    let mut settable = true;
    for conn in &mut source.nodes {
        let Some(flags) = crate::net::info::config_get(conn, "notify-keyspace-events").await?
        else {
            unseen.push(conn.addr.clone());
            continue;
        };
        if has_needed(&flags) {
            continue;
        }
        off.push(format!("{} has {flags:?}", conn.addr));
        settable &= may_config_set(conn).await?;
    }
    if off.is_empty() && !unseen.is_empty() {
        return Ok(Finding::warn(
            Item::Notifications,
            format!(
                "{name}: {} will not show notify-keyspace-events (CONFIG GET refused), so ferry cannot see whether keyspace notifications are on",
                unseen.join(", ")
            ),
            "make sure they are on: CONFIG SET notify-keyspace-events KA (or K and A in the service's parameters); ferry sync writes a key of its own (__ferry:probe:*) to see, and stops when no notification comes",
        ));
    }
    if off.is_empty() {
        return Ok(Finding::pass(
            Item::Notifications,
            format!("{name} publishes keyspace notifications of every kind"),
        ));
    }
    let found = format!(
        "scan mode follows changes through keyspace notifications, and notify-keyspace-events lacks K or A: {}",
        off.join(", ")
    );
    Ok(match settable {
        true => Finding::warn(
            Item::Notifications,
            format!("{found}; ferry turns them on with CONFIG SET when the sync starts"),
            "nothing to do; they stay on after the sync (set notify-keyspace-events back then), and a restart of the source turns them off unless its config file has them",
        ),
        false => Finding::fail(
            Item::Notifications,
            format!("{found}, and ferry may not run CONFIG SET there"),
            "run CONFIG SET notify-keyspace-events KA on the source (or set it in the service's parameters), then start again",
        ),
    })
}

/// K (the keyspace channel) and every class of A.
fn has_needed(flags: &str) -> bool {
    let classes = ['g', '$', 'l', 's', 'h', 'z', 'x', 'e'];
    flags.contains('K') && (flags.contains('A') || classes.iter().all(|c| flags.contains(*c)))
}

/// Whether CONFIG SET would be taken: known from `ACL DRYRUN` where the user may ask, else from
/// whether the command exists at all (a managed service renames it away).
async fn may_config_set(conn: &mut crate::net::conn::Conn) -> Result<bool> {
    if let Frame::Array(items) = conn.request(&[&b"COMMAND"[..], b"INFO", b"CONFIG"]).await?
        && matches!(items.first(), None | Some(Frame::Null))
    {
        return Ok(false);
    }
    let user = match conn.request(&[&b"ACL"[..], b"WHOAMI"]).await? {
        Frame::Bulk(u) | Frame::Simple(u) => u,
        _ => return Ok(true),
    };
    let ask: [&[u8]; 7] = [
        b"ACL",
        b"DRYRUN",
        &user,
        b"CONFIG",
        b"SET",
        b"notify-keyspace-events",
        b"KA",
    ];
    Ok(match conn.request(&ask).await? {
        Frame::Simple(ok) => ok.as_ref() == b"OK",
        Frame::Bulk(_) => false,
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::has_needed;

    #[test]
    fn needed_flags() {
        assert!(has_needed("AK"));
        assert!(has_needed("AKE"));
        assert!(has_needed("K$lshzxeg"));
        assert!(!has_needed(""));
        assert!(!has_needed("AE"));
        assert!(!has_needed("Kx"));
    }
}
