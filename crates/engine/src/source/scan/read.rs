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
    /// `PEXPIRETIME` (7.0+): a key's expiry as the source holds it, to the millisecond
    /// (`PTTL` is relative, and loses the time the reply takes).
    pub expiretime: bool,
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

    /// The db selected now, if any.
    pub fn db(&self) -> Option<u32> {
        self.db
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

    /// Reads `keys` of the selected db: sizes and expiries in one round trip (with the type
    /// where it decides how the value is read: no `MEMORY USAGE`, or no `DUMP`), lengths in a
    /// second where `MEMORY USAGE` is refused, then the small values in a third.
    pub async fn read(&mut self, keys: &[Bytes]) -> Result<Vec<Value>> {
        let now = crate::status::latency::unix_ms() as i64;
        let memory = self.abilities.memory;
        let typed = !memory || !self.abilities.dump;
        let per_key = 1 + usize::from(memory) + usize::from(typed);
        let mut out = BytesMut::new();
        for key in keys {
            let ttl: &[u8] = match self.abilities.expiretime {
                true => b"PEXPIRETIME",
                false => b"PTTL",
            };
            ferry_resp::encode_command(&mut out, &[ttl, key]);
            if memory {
                ferry_resp::encode_command(&mut out, &[&b"MEMORY"[..], b"USAGE", key]);
            }
            if typed {
                ferry_resp::encode_command(&mut out, &[&b"TYPE"[..], key]);
            }
        }
        let replies = self.round(&out, keys.len() * per_key).await?;
        let mut facts: Vec<Fact> = Vec::with_capacity(keys.len());
        for chunk in replies.chunks(per_key) {
            let expire_ms = match &chunk[0] {
                Frame::Integer(at) if *at >= 0 && self.abilities.expiretime => Some(*at),
                Frame::Integer(ms) if *ms >= 0 => Some(now + ms),
                Frame::Integer(_) => None,
                Frame::Error(msg) => return Err(self.conn.server_error(msg)),
                _ => return Err(self.odd("PTTL")),
            };
            // MEMORY USAGE of a key that is gone is nil.
            let (size, gone) = match memory {
                true => match &chunk[1] {
                    Frame::Integer(n) => (Some((*n).max(0) as u64), false),
                    Frame::Null => (None, true),
                    Frame::Error(msg) => return Err(self.conn.server_error(msg)),
                    _ => return Err(self.odd("MEMORY USAGE")),
                },
                false => (None, false),
            };
            let type_name = match chunk.get(1 + usize::from(memory)) {
                Some(Frame::Simple(t) | Frame::Bulk(t)) => Some(t.clone()),
                Some(Frame::Error(msg)) => return Err(self.conn.server_error(msg)),
                Some(_) => return Err(self.odd("TYPE")),
                None => None,
            };
            let gone = gone || type_name.as_ref().is_some_and(|t| t.as_ref() == b"none");
            facts.push(Fact {
                type_name,
                expire_ms,
                size,
                gone,
                big: false,
            });
        }
        if !memory {
            self.lengths(keys, &mut facts).await?;
        } else {
            for f in &mut facts {
                f.big = f.size.is_some_and(|s| s > self.bounds.big_bytes);
            }
        }
        self.values(keys, facts).await
    }

    /// A key's type (`TYPE`), when a value must be read by it.
    pub async fn kind(&mut self, key: &[u8]) -> Result<Option<ValueKind>> {
        match self.conn.request(&[&b"TYPE"[..], key]).await? {
            Frame::Simple(t) | Frame::Bulk(t) => Ok(ValueKind::from_type_reply(&t)),
            Frame::Error(msg) => Err(self.conn.server_error(&msg)),
            _ => Err(self.odd("TYPE")),
        }
    }

    /// Where `MEMORY USAGE` is refused: each key's length by its type decides.
    async fn lengths(&mut self, keys: &[Bytes], facts: &mut [Fact]) -> Result<()> {
        let mut out = BytesMut::new();
        let mut asked = Vec::new();
        for (i, (key, fact)) in keys.iter().zip(facts.iter()).enumerate() {
            if let Some(kind) = fact
                .type_name
                .as_deref()
                .and_then(ValueKind::from_type_reply)
            {
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
            if self.abilities.dump && !fact.big && !fact.gone {
                ferry_resp::encode_command(&mut out, &[&b"DUMP"[..], key]);
                dumped += 1;
            }
        }
        let mut replies = self.round(&out, dumped).await?.into_iter();
        let mut values = Vec::with_capacity(keys.len());
        for fact in facts {
            let kind = fact
                .type_name
                .as_deref()
                .and_then(ValueKind::from_type_reply);
            let value = if fact.gone {
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
                        type_name: String::from_utf8_lossy(
                            fact.type_name.as_deref().unwrap_or_default(),
                        )
                        .into_owned(),
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
    /// `TYPE`'s answer, where it was asked.
    type_name: Option<Bytes>,
    gone: bool,
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
    let expiretime = !refused(&conn.request(&[&b"PEXPIRETIME"[..], missing]).await?);
    Ok(Abilities {
        dump,
        memory,
        expiretime,
    })
}

fn refused(reply: &Frame) -> bool {
    let Frame::Error(msg) = reply else {
        return false;
    };
    let msg = String::from_utf8_lossy(msg).to_ascii_lowercase();
    !(msg.starts_with("moved ") || msg.starts_with("ask ") || msg.starts_with("crossslot"))
}
