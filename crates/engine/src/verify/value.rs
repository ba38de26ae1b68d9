//! The first place two values of the same type differ, read page by page on both sides
//! (GETRANGE, LRANGE, HSCAN + HMGET, SSCAN + SISMEMBER, ZSCAN + ZSCORE, XRANGE), so a big
//! key is compared with memory for one page. Used where digests differ, and for every key
//! when a server refuses `DEBUG DIGEST-VALUE`.

use bytes::Bytes;
use ferry_resp::Frame;
use serde_json::{Value, json};

use super::report::{bytes, shown};
use super::side::Side;
use crate::error::Result;

/// One key on one side.
pub struct At<'a> {
    pub side: &'a mut Side,
    pub db: u32,
    pub key: &'a Bytes,
}

impl At<'_> {
    async fn ask(&mut self, args: Vec<&[u8]>) -> Result<Frame> {
        let mut cmd: Vec<&[u8]> = Vec::with_capacity(args.len() + 1);
        cmd.push(args[0]);
        cmd.push(self.key);
        cmd.extend_from_slice(&args[1..]);
        let what = String::from_utf8_lossy(args[0]).into_owned();
        match self.side.request(self.db, cmd).await? {
            Frame::Error(e) => Err(self.side.failed(&what, &Frame::Error(e))),
            f => Ok(f),
        }
    }

    async fn int(&mut self, cmd: &[u8]) -> Result<i64> {
        let frame = self.ask(vec![cmd]).await?;
        frame
            .as_integer()
            .ok_or_else(|| self.side.bad_reply(&String::from_utf8_lossy(cmd)))
    }

    /// One command per item, pipelined, about this key.
    async fn each(&mut self, cmd: &[u8], items: &[Bytes]) -> Result<Vec<Frame>> {
        let cmds: Vec<Vec<&[u8]>> = items
            .iter()
            .map(|i| vec![cmd, &self.key[..], &i[..]])
            .collect();
        self.side.pipeline(self.db, &cmds).await
    }

    /// One `*SCAN` step: next cursor and the flat list of items.
    async fn scan(
        &mut self,
        cmd: &[u8],
        cursor: &[u8],
        count: usize,
    ) -> Result<(Bytes, Vec<Bytes>)> {
        let count = count.to_string();
        let frame = self
            .ask(vec![cmd, cursor, b"COUNT", count.as_bytes()])
            .await?;
        let what = String::from_utf8_lossy(cmd).into_owned();
        let Frame::Array(mut parts) = frame else {
            return Err(self.side.bad_reply(&what));
        };
        if parts.len() != 2 {
            return Err(self.side.bad_reply(&what));
        }
        let items = flat(parts.pop().unwrap_or(Frame::Null));
        let next = parts.pop().and_then(|f| f.as_bytes().cloned());
        match next {
            Some(next) => Ok((next, items)),
            None => Err(self.side.bad_reply(&what)),
        }
    }
}

/// The strings in an array reply (nested arrays flattened one level for `*SCAN`).
fn flat(frame: Frame) -> Vec<Bytes> {
    match frame {
        Frame::Array(items) | Frame::Set(items) => items
            .into_iter()
            .filter_map(|f| match f {
                Frame::Double(d) => Some(Bytes::from(d.to_string())),
                f => f.as_bytes().cloned(),
            })
            .collect(),
        Frame::Map(pairs) => pairs
            .into_iter()
            .flat_map(|(k, v)| [k.as_bytes().cloned(), v.as_bytes().cloned()])
            .flatten()
            .collect(),
        _ => Vec::new(),
    }
}

fn text(frame: &Frame) -> Option<Bytes> {
    match frame {
        Frame::Double(d) => Some(Bytes::from(d.to_string())),
        f => f.as_bytes().cloned(),
    }
}

/// Where the values of `kind` at `source` and `target` first differ, or None when they are
/// equal. `chunk` is the elements (or KiB of a string) per page.
pub async fn first_difference(
    kind: &str,
    source: &mut At<'_>,
    target: &mut At<'_>,
    chunk: usize,
) -> Result<Option<Value>> {
    match kind {
        "string" => string(source, target, chunk * 1024).await,
        "list" => list(source, target, chunk).await,
        "hash" => hash(source, target, chunk).await,
        "set" => set(source, target, chunk).await,
        "zset" => zset(source, target, chunk).await,
        "stream" => stream(source, target, chunk).await,
        // A module's value can only be compared whole.
        _ => {
            let a = source.ask(vec![b"DUMP"]).await?;
            let b = target.ask(vec![b"DUMP"]).await?;
            Ok((a != b).then(|| json!({ "what": "the module values' DUMP payloads differ" })))
        }
    }
}

async fn string(source: &mut At<'_>, target: &mut At<'_>, page: usize) -> Result<Option<Value>> {
    let (a_len, b_len) = (source.int(b"STRLEN").await?, target.int(b"STRLEN").await?);
    let mut at = 0i64;
    while at < a_len.max(b_len) {
        let (from, to) = (at.to_string(), (at + page as i64 - 1).to_string());
        let range = vec![&b"GETRANGE"[..], from.as_bytes(), to.as_bytes()];
        let a = text(&source.ask(range.clone()).await?).unwrap_or_default();
        let b = text(&target.ask(range).await?).unwrap_or_default();
        if a != b {
            let offset = at + a.iter().zip(b.iter()).take_while(|(x, y)| x == y).count() as i64;
            return Ok(Some(json!({
                "offset": offset,
                "source_len": a_len,
                "target_len": b_len,
            })));
        }
        at += page as i64;
    }
    Ok(None)
}

async fn list(source: &mut At<'_>, target: &mut At<'_>, page: usize) -> Result<Option<Value>> {
    let (a_len, b_len) = (source.int(b"LLEN").await?, target.int(b"LLEN").await?);
    let mut at = 0i64;
    while at < a_len.max(b_len) {
        let (from, to) = (at.to_string(), (at + page as i64 - 1).to_string());
        let range = vec![&b"LRANGE"[..], from.as_bytes(), to.as_bytes()];
        let a = flat(source.ask(range.clone()).await?);
        let b = flat(target.ask(range).await?);
        for i in 0..a.len().max(b.len()) {
            if a.get(i) != b.get(i) {
                return Ok(Some(json!({
                    "index": at + i as i64,
                    "source": a.get(i).map(|v| shown(v)),
                    "target": b.get(i).map(|v| shown(v)),
                    "source_len": a_len,
                    "target_len": b_len,
                })));
            }
        }
        at += page as i64;
    }
    Ok(None)
}

/// Walks `from`'s fields page by page and looks each up in `other` with `lookup` (one
/// command per field): the first field whose answers differ, as (field, from's, other's).
async fn walk_pairs(
    from: &mut At<'_>,
    other: &mut At<'_>,
    scan: &[u8],
    lookup: &[u8],
    page: usize,
) -> Result<Option<(Bytes, Bytes, Option<Bytes>)>> {
    let mut cursor = Bytes::from_static(b"0");
    loop {
        let (next, items) = from.scan(scan, &cursor, page).await?;
        let fields: Vec<Bytes> = items.iter().step_by(2).cloned().collect();
        let theirs = other.each(lookup, &fields).await?;
        for (pair, their) in items.chunks(2).zip(theirs) {
            if let [field, mine] = pair {
                let their = text(&their);
                if !same_value(lookup, mine, their.as_ref()) {
                    return Ok(Some((field.clone(), mine.clone(), their)));
                }
            }
        }
        if &next[..] == b"0" {
            return Ok(None);
        }
        cursor = next;
    }
}

/// Scores are compared as numbers (a score reads back as "1" or "1.0" depending on how it was
/// written and the server's version); field values byte for byte.
fn same_value(lookup: &[u8], mine: &Bytes, their: Option<&Bytes>) -> bool {
    let Some(their) = their else { return false };
    if lookup == b"ZSCORE" {
        let num = |b: &Bytes| std::str::from_utf8(b).ok()?.parse::<f64>().ok();
        return num(mine).is_some() && num(mine) == num(their);
    }
    mine == their
}

async fn hash(source: &mut At<'_>, target: &mut At<'_>, page: usize) -> Result<Option<Value>> {
    if let Some((field, a, b)) = walk_pairs(source, target, b"HSCAN", b"HGET", page).await? {
        return Ok(Some(json!({
            "field": bytes(&field),
            "source": shown(&a),
            "target": b.as_deref().map(shown),
        })));
    }
    // Every source field is on the target with its value: any difference is a field only
    // the target has.
    if source.int(b"HLEN").await? == target.int(b"HLEN").await? {
        return Ok(None);
    }
    let extra = walk_pairs(target, source, b"HSCAN", b"HGET", page).await?;
    Ok(extra.map(
        |(field, b, _)| json!({ "field": bytes(&field), "source": null, "target": shown(&b) }),
    ))
}

async fn zset(source: &mut At<'_>, target: &mut At<'_>, page: usize) -> Result<Option<Value>> {
    if let Some((member, a, b)) = walk_pairs(source, target, b"ZSCAN", b"ZSCORE", page).await? {
        return Ok(Some(json!({
            "member": bytes(&member),
            "source_score": shown(&a),
            "target_score": b.as_deref().map(shown),
        })));
    }
    if source.int(b"ZCARD").await? == target.int(b"ZCARD").await? {
        return Ok(None);
    }
    let extra = walk_pairs(target, source, b"ZSCAN", b"ZSCORE", page).await?;
    Ok(extra.map(|(member, b, _)| {
        json!({ "member": bytes(&member), "source_score": null, "target_score": shown(&b) })
    }))
}

/// The first member of `from` that `other` lacks.
async fn member_missing(
    from: &mut At<'_>,
    other: &mut At<'_>,
    page: usize,
) -> Result<Option<Bytes>> {
    let mut cursor = Bytes::from_static(b"0");
    loop {
        let (next, members) = from.scan(b"SSCAN", &cursor, page).await?;
        let there = other.each(b"SISMEMBER", &members).await?;
        if let Some((m, _)) = members
            .iter()
            .zip(there)
            .find(|(_, f)| f.as_integer() != Some(1))
        {
            return Ok(Some(m.clone()));
        }
        if &next[..] == b"0" {
            return Ok(None);
        }
        cursor = next;
    }
}

async fn set(source: &mut At<'_>, target: &mut At<'_>, page: usize) -> Result<Option<Value>> {
    if let Some(m) = member_missing(source, target, page).await? {
        return Ok(Some(json!({ "member": bytes(&m), "only_on": "source" })));
    }
    if source.int(b"SCARD").await? == target.int(b"SCARD").await? {
        return Ok(None);
    }
    let extra = member_missing(target, source, page).await?;
    Ok(extra.map(|m| json!({ "member": bytes(&m), "only_on": "target" })))
}

/// Stream entries as (id, flat fields) from `XRANGE key start + COUNT n`.
async fn entries(at: &mut At<'_>, start: &[u8], page: usize) -> Result<Vec<(Bytes, Vec<Bytes>)>> {
    let count = page.to_string();
    let frame = at
        .ask(vec![b"XRANGE", start, b"+", b"COUNT", count.as_bytes()])
        .await?;
    let Frame::Array(items) = frame else {
        return Err(at.side.bad_reply("XRANGE"));
    };
    Ok(items
        .into_iter()
        .filter_map(|e| match e {
            Frame::Array(mut parts) if parts.len() == 2 => {
                let fields = flat(parts.pop()?);
                Some((parts.pop()?.as_bytes()?.clone(), fields))
            }
            _ => None,
        })
        .collect())
}

/// The smallest id after `id` (`ms-seq` + 1), for the next XRANGE page: works on every
/// version, unlike the exclusive `(id` of 6.2.
fn after(id: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(id);
    match text.split_once('-').and_then(|(ms, seq)| {
        let (ms, seq) = (ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?);
        Some(match seq.checked_add(1) {
            Some(s) => format!("{ms}-{s}"),
            None => format!("{}-0", ms.checked_add(1)?),
        })
    }) {
        Some(next) => Bytes::from(next),
        None => Bytes::from_static(b"+"),
    }
}

async fn stream(source: &mut At<'_>, target: &mut At<'_>, page: usize) -> Result<Option<Value>> {
    let mut start = Bytes::from_static(b"-");
    loop {
        let a = entries(source, &start, page).await?;
        let b = entries(target, &start, page).await?;
        for i in 0..a.len().max(b.len()) {
            let (x, y) = (a.get(i), b.get(i));
            if x != y {
                let id = x.or(y).map(|e| bytes(&e.0));
                return Ok(Some(json!({
                    "id": id,
                    "source": x.map(|e| bytes(&e.0)),
                    "target": y.map(|e| bytes(&e.0)),
                })));
            }
        }
        match a.last() {
            Some((id, _)) if a.len() == page => start = after(id),
            _ => break,
        }
    }
    // Same entries. Its metadata (last id, consumer groups) is compared by digest only.
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stream_id() {
        assert_eq!(&after(b"5-1")[..], b"5-2");
        assert_eq!(&after(format!("5-{}", u64::MAX).as_bytes())[..], b"6-0");
        assert_eq!(&after(b"junk")[..], b"+");
    }
}
