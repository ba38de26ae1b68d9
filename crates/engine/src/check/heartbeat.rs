//! `heartbeat`: whether ferry may write its heartbeat key on the source, which gives the
//! end-to-end latency. Without it the latency is estimated from the stream: a warning only.

use bytes::Bytes;

use super::acl::{Access, may_run};
use super::reach::Side;
use super::{Finding, Item};
use crate::config::TaskConfig;
use crate::error::Result;
use crate::net::info;

pub(super) async fn check(source: &mut Side, config: &TaskConfig) -> Result<Finding> {
    let item = Item::Heartbeat;
    if !config.heartbeat {
        return Ok(Finding::pass(item, "turned off: no latency figures"));
    }
    if config.full_only {
        return Ok(Finding::pass(
            item,
            "not used: a full copy only follows no stream",
        ));
    }
    let name = source.name();
    let user = source.user.clone();
    let version = source.version;
    let cluster = source.is_cluster();
    let Some(conn) = source.nodes.first_mut() else {
        return Ok(Finding::pass(item, "no server to ask"));
    };
    let fields = info::info(conn, "replication").await?;
    let estimate = "the latency is then estimated from the stream";
    if !cluster && fields.get("role").is_some_and(|r| r == "slave") {
        return Ok(Finding::warn(
            item,
            format!("{name} is a replica: it takes no writes, so no heartbeat; {estimate}"),
            "point ferry at the master for measured latency, or turn the heartbeat off ([sync] heartbeat = false)",
        ));
    }
    let key = crate::source::heartbeat::key(&config.name);
    let set = vec![
        Bytes::from_static(b"SET"),
        Bytes::from(key.clone()),
        Bytes::from_static(b"0"),
        Bytes::from_static(b"PX"),
        Bytes::from_static(b"10000"),
    ];
    let key_text = String::from_utf8_lossy(&key).into_owned();
    Ok(match may_run(conn, &user, version, &[set]).await? {
        Access::Allowed => Finding::pass(
            item,
            format!("{name}: user {user} may write the heartbeat key {key_text}"),
        ),
        Access::Denied(_, reason) => Finding::warn(
            item,
            format!("{name}: user {user} may not write {key_text} ({reason}); {estimate}"),
            format!("on the source: ACL SETUSER {user} +set ~__ferry:*"),
        ),
        Access::Unknown(why) => Finding::warn(
            item,
            format!("{name}: cannot tell whether user {user} may write {key_text}: {why}"),
            format!(
                "for measured latency, let the user SET keys under __ferry: (ACL SETUSER {user} +set ~__ferry:*)"
            ),
        ),
    })
}
