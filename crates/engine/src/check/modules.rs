//! `modules`: modules loaded on the source but not on the target. The target refuses values
//! of a module's types without the module; a source that loads a module without using its
//! types loses nothing, so this is a warning.

use ferry_resp::Frame;

use super::reach::Side;
use super::{Finding, Item};
use crate::error::Result;
use crate::net::conn::Conn;

pub(super) async fn check(source: &mut Side, target: &mut Side) -> Result<Finding> {
    let item = Item::Modules;
    let (Some(source_conn), Some(target_conn)) =
        (source.nodes.first_mut(), target.nodes.first_mut())
    else {
        return Ok(Finding::pass(item, "no server to ask"));
    };
    let Some(on_source) = list(source_conn).await? else {
        return Ok(Finding::warn(
            item,
            format!("source {}: MODULE LIST refused", source_conn.addr),
            "load on the target every module whose types the source holds",
        ));
    };
    if on_source.is_empty() {
        return Ok(Finding::pass(
            item,
            format!("source {}: no modules loaded", source_conn.addr),
        ));
    }
    let Some(on_target) = list(target_conn).await? else {
        return Ok(Finding::warn(
            item,
            format!(
                "source loads {}; {} {}: MODULE LIST refused",
                on_source.join(", "),
                target.label,
                target_conn.addr
            ),
            "load the same modules on the target",
        ));
    };
    let missing = missing(&on_source, &on_target);
    Ok(if missing.is_empty() {
        Finding::pass(
            item,
            format!(
                "{}: loads every module the source does ({})",
                target.name(),
                on_source.join(", ")
            ),
        )
    } else {
        Finding::warn(
            item,
            format!(
                "{}: lacks {} that the source loads: keys of their types would be refused",
                target.name(),
                missing.join(", ")
            ),
            "load them on the target (loadmodule in its config, or MODULE LOAD), or leave module keys out ([filter] block_type = [\"module\"])".to_string(),
        )
    })
}

/// Module names; None when the command is refused (ACL, renamed, an old server).
async fn list(conn: &mut Conn) -> Result<Option<Vec<String>>> {
    let Frame::Array(modules) = conn.request(&[&b"MODULE"[..], b"LIST"]).await? else {
        return Ok(None);
    };
    let names = modules
        .iter()
        .filter_map(|m| match m {
            Frame::Array(fields) => fields
                .chunks(2)
                .find(|kv| kv[0].as_bytes().is_some_and(|k| &k[..] == b"name"))
                .and_then(|kv| kv.get(1)?.as_bytes())
                .map(|n| String::from_utf8_lossy(n).into_owned()),
            Frame::Map(fields) => fields
                .iter()
                .find(|(k, _)| k.as_bytes().is_some_and(|k| &k[..] == b"name"))
                .and_then(|(_, v)| v.as_bytes())
                .map(|n| String::from_utf8_lossy(n).into_owned()),
            _ => None,
        })
        .collect();
    Ok(Some(names))
}

fn missing(source: &[String], target: &[String]) -> Vec<String> {
    source
        .iter()
        .filter(|m| !target.iter().any(|t| t.eq_ignore_ascii_case(m)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_the_target_lacks() {
        let source = vec!["ReJSON".to_string(), "search".to_string()];
        assert_eq!(missing(&source, &["rejson".into()]), vec!["search"]);
        assert!(missing(&source, &["search".into(), "ReJSON".into()]).is_empty());
    }
}
