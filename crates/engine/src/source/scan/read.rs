//! Reading keys off a source that will not replicate: many keys per round trip. A key's size
//! is asked first (so a 256 MiB value is never asked for whole), then the small ones are
//! `DUMP`ed; a big one, or any one where `DUMP` is refused, is read type by type.

use bytes::{Bytes, BytesMut};
use ferry_resp::Frame;

use crate::error::{Error, Result};
use crate::net::conn::Conn;

use super::by_type::ValueKind;

/// What one key holds now, as far as a sync needs it.
#[derive(Debug)]
pub(super) enum Value {
    /// The key does not exist (deleted or expired since it was named).
    Gone,
    /// `DUMP`'s payload, with the key's absolute expiry (unix ms).
    Dumped {
        payload: Bytes,
        expire_ms: Option<i64>,
    },
    /// Too big to hold whole: its `DUMP` is streamed through the parser.
    Big {
        kind: Option<ValueKind>,
        expire_ms: Option<i64>,
    },
    /// `DUMP` is refused: read piece by piece, type by type.
    Pieces {
        kind: ValueKind,
        expire_ms: Option<i64>,
    },
    /// `DUMP` is refused and the type has no commands to read it with (a module's type).
    Unreadable { type_name: String },
}

/// What the source lets ferry use, learnt once per connection.
#[derive(Clone, Copy, Debug)]
pub(super) struct Abilities {
    pub dump: bool,
    /// `MEMORY USAGE`: a key's size without reading it (else its length is asked).
    pub memory: bool,
}

/// When a value is read in pieces instead of whole.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bounds {
    pub big_bytes: u64,
    pub big_elements: u64,
}

/// One connection to the source for every read of a task's shard, used by one loop only, so
/// replies come back in the order the source served them: a key read again after a
/// notification is never overtaken by an older read of it.
pub(super) struct Reader {
    pub conn: Conn,
    db: Option<u32>,
    pub abilities: Abilities,
    pub bounds: Bounds,
}

impl Reader {
    pub async fn new(mut conn: Conn, bounds: Bounds) -> Result<Reader> {
        let abilities = probe(&mut conn).await?;
        Ok(Reader {
            conn,
            db: None,
            abilities,
            bounds,
        })
    }

    pub async fn select(&mut self, db: u32) -> Result<()> {
        if self.db == Some(db) {
            return Ok(());
        }
        self.conn
            .request_ok(&[&b"SELECT"[..], db.to_string().as_bytes()])
            .await?;
        self.db = Some(db);
        Ok(())
    }

    /// One `SCAN` step in the selected db: the next cursor and the keys named.
    pub async fn scan(&mut self, cursor: &[u8], count: usize) -> Result<(Bytes, Vec<Bytes>)> {
        let count = count.to_string();
        let reply = self
            .conn
            .request_ok(&[&b"SCAN"[..], cursor, b"COUNT", count.as_bytes()])
            .await?;
        super::prune::scan_reply(reply).ok_or_else(|| self.odd("SCAN"))
    }

    /// Whether each of `keys` exists in the selected db.
    pub async fn exists(&mut self, keys: &[Bytes]) -> Result<Vec<bool>> {
        let mut out = BytesMut::new();
        for key in keys {
            ferry_resp::encode_command(&mut out, &[&b"EXISTS"[..], key]);
        }
        let replies = self.round(&out, keys.len()).await?;
        replies
            .into_iter()
            .map(|r| match r {
                Frame::Integer(n) => Ok(n > 0),
                Frame::Error(msg) => Err(self.conn.server_error(&msg)),
                _ => Err(self.odd("EXISTS")),
            })
            .collect()
    }

    /// Reads `keys` of the selected db: sizes and expiries in one round trip, lengths in a
    /// second where `MEMORY USAGE` is refused, then the small values in a third.
    pub async fn read(&mut self, keys: &[Bytes]) -> Result<Vec<Value>> {
        let now = crate::status::latency::unix_ms() as i64;
        let per_key = if self.abilities.memory { 3 } else { 2 };
        let mut out = BytesMut::new();
        for key in keys {
            ferry_resp::encode_command(&mut out, &[&b"TYPE"[..], key]);
            ferry_resp::encode_command(&mut out, &[&b"PTTL"[..], key]);
            if self.abilities.memory {
                ferry_resp::encode_command(&mut out, &[&b"MEMORY"[..], b"USAGE", key]);
            }
        }
        let replies = self.round(&out, keys.len() * per_key).await?;
        let mut facts: Vec<Fact> = Vec::with_capacity(keys.len());
        for chunk in replies.chunks(per_key) {
            let type_name = match &chunk[0] {
                Frame::Simple(t) | Frame::Bulk(t) => t.clone(),
                Frame::Error(msg) => return Err(self.conn.server_error(msg)),
                _ => return Err(self.odd("TYPE")),
            };
            let expire_ms = match &chunk[1] {
                Frame::Integer(ms) if *ms >= 0 => Some(now + ms),
                Frame::Integer(_) => None,
                Frame::Error(msg) => return Err(self.conn.server_error(msg)),
                _ => return Err(self.odd("PTTL")),
            };
            let size = match chunk.get(2) {
                Some(Frame::Integer(n)) => Some((*n).max(0) as u64),
                _ => None,
            };
            facts.push(Fact {
                type_name,
                expire_ms,
                size,
                big: false,
            });
        }
        if !self.abilities.memory {
            self.lengths(keys, &mut facts).await?;
        } else {
            for f in &mut facts {
                f.big = f.size.is_some_and(|s| s > self.bounds.big_bytes);
            }
        }
        self.values(keys, facts).await
    }

    /// Where `MEMORY USAGE` is refused: each key's length by its type decides.
    async fn lengths(&mut self, keys: &[Bytes], facts: &mut [Fact]) -> Result<()> {
        let mut out = BytesMut::new();
        let mut asked = Vec::new();
        for (i, (key, fact)) in keys.iter().zip(facts.iter()).enumerate() {
            if let Some(kind) = ValueKind::from_type_reply(&fact.type_name) {
                ferry_resp::encode_command(&mut out, &[kind.length_command().as_bytes(), key]);
                asked.push((i, kind));
            }
        }
        let replies = self.round(&out, asked.len()).await?;
        for ((i, kind), reply) in asked.into_iter().zip(replies) {
            // A key replaced by another type in between is read as it is then.
            let Frame::Integer(n) = reply else { continue };
            let n = n.max(0) as u64;
            facts[i].big = match kind {
                ValueKind::String => n > self.bounds.big_bytes,
                _ => n > self.bounds.big_elements,
            };
        }
        Ok(())
    }

    async fn values(&mut self, keys: &[Bytes], facts: Vec<Fact>) -> Result<Vec<Value>> {
        let mut out = BytesMut::new();
        let mut dumped = 0;
        for (key, fact) in keys.iter().zip(&facts) {
            if self.abilities.dump && !fact.big && fact.type_name.as_ref() != b"none" {
                ferry_resp::encode_command(&mut out, &[&b"DUMP"[..], key]);
                dumped += 1;
            }
        }
        let mut replies = self.round(&out, dumped).await?.into_iter();
        let mut values = Vec::with_capacity(keys.len());
        for fact in facts {
            let kind = ValueKind::from_type_reply(&fact.type_name);
            let value = if fact.type_name.as_ref() == b"none" {
                Value::Gone
            } else if self.abilities.dump && !fact.big {
                match replies.next() {
                    Some(Frame::Bulk(payload)) => Value::Dumped {
                        payload,
                        expire_ms: fact.expire_ms,
                    },
                    Some(Frame::Null) => Value::Gone,
                    Some(Frame::Error(msg)) => return Err(self.conn.server_error(&msg)),
                    _ => return Err(self.odd("DUMP")),
                }
            } else if self.abilities.dump {
                Value::Big {
                    kind,
                    expire_ms: fact.expire_ms,
                }
            } else {
                match kind {
                    Some(kind) => Value::Pieces {
                        kind,
                        expire_ms: fact.expire_ms,
                    },
                    None => Value::Unreadable {
                        type_name: String::from_utf8_lossy(&fact.type_name).into_owned(),
                    },
                }
            };
            values.push(value);
        }
        Ok(values)
    }

    /// Sends `out` (holding `n` commands) and reads their `n` replies, error replies among them.
    async fn round(&mut self, out: &[u8], n: usize) -> Result<Vec<Frame>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        self.conn.write_all(out).await?;
        let mut replies = Vec::with_capacity(n);
        for _ in 0..n {
            let read = tokio::time::timeout(REPLY_TIMEOUT, self.conn.read_frame()).await;
            match read {
                Ok(r) => replies.push(r?.0),
                Err(_) => {
                    return Err(Error::Closed {
                        role: self.conn.role,
                        addr: self.conn.addr.clone(),
                        context: format!(" (no reply within {} s)", REPLY_TIMEOUT.as_secs()),
                    });
                }
            }
        }
        Ok(replies)
    }

    fn odd(&self, command: &str) -> Error {
        Error::Server {
            role: self.conn.role,
            addr: self.conn.addr.clone(),
            msg: format!("answered {command} with a reply of an unexpected shape"),
        }
    }
}

const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

struct Fact {
    type_name: Bytes,
    expire_ms: Option<i64>,
    size: Option<u64>,
    big: bool,
}

/// Whether `DUMP` and `MEMORY USAGE` may be used: asked of a key that does not exist, so
/// nothing is read. A refusal (renamed away, or not in the user's ACL) is an error reply of
/// its own kind; a cluster node's redirect for a key of another slot still says it may.
async fn probe(conn: &mut Conn) -> Result<Abilities> {
    let missing = b"__ferry:probe:no-such-key";
    let dump = !refused(&conn.request(&[&b"DUMP"[..], missing]).await?);
    let memory = !refused(&conn.request(&[&b"MEMORY"[..], b"USAGE", missing]).await?);
    Ok(Abilities { dump, memory })
}

fn refused(reply: &Frame) -> bool {
    let Frame::Error(msg) = reply else {
        return false;
    };
    let msg = String::from_utf8_lossy(msg).to_ascii_lowercase();
    !(msg.starts_with("moved ") || msg.starts_with("ask ") || msg.starts_with("crossslot"))
}
