//! What verification found: one [`Difference`] per key, written as a JSON line, and the
//! counts for the terminal.

use std::io::Write;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::text::escape;

/// How a key differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// On the source, not on the target.
    Missing,
    /// On the target, from no source key.
    Extra,
    /// Of another type on the target.
    Type,
    /// Same type, another value.
    Value,
    /// Same value, expiries further apart than the tolerance.
    Ttl,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Missing,
        Kind::Extra,
        Kind::Type,
        Kind::Value,
        Kind::Ttl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Extra => "extra",
            Kind::Type => "type",
            Kind::Value => "value",
            Kind::Ttl => "ttl",
        }
    }
}

/// Which key a difference is about: a source key (and where its image should be), or a
/// target key that no source key explains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Source {
        db: u32,
        key: Bytes,
        target_db: u32,
        target_key: Bytes,
    },
    Target {
        db: u32,
        key: Bytes,
    },
}

#[derive(Clone, Debug)]
pub struct Difference {
    pub kind: Kind,
    pub subject: Subject,
    pub detail: Value,
}

impl Difference {
    /// The JSON line: `db` and `key` of the source key, or of the target key for `extra`.
    pub fn to_json(&self, target: Option<&str>) -> Value {
        let (db, key) = match &self.subject {
            Subject::Source { db, key, .. } | Subject::Target { db, key } => (db, key),
        };
        let mut line = json!({
            "db": db,
            "key": bytes(key),
            "kind": self.kind.name(),
            "detail": self.detail,
        });
        if let Some(t) = target {
            line["target"] = json!(t);
        }
        line
    }
}

/// Bytes as JSON: a string when they are UTF-8, else `{"base64": "..."}`, as `ferry rdb`
/// prints them.
pub fn bytes(b: &[u8]) -> Value {
    crate::text::bytes_json(b)
}

/// Like [`bytes`], but a value longer than `MAX_SHOWN` is given by its length only, so a
/// line stays short whatever the data.
pub fn shown(b: &[u8]) -> Value {
    const MAX_SHOWN: usize = 256;
    if b.len() > MAX_SHOWN {
        return json!({ "len": b.len() });
    }
    bytes(b)
}

/// The outcome for one target.
#[derive(Debug, Default)]
pub struct Summary {
    pub target: String,
    /// Source keys compared in the first round (filtered ones not counted).
    pub source_keys: u64,
    /// Target keys looked at for extras.
    pub target_keys: u64,
    /// Keys filtered out on the source.
    pub filtered: u64,
    pub rounds: u32,
    /// Keys that differed in the first round.
    pub first_round: usize,
    pub repaired: usize,
    /// What still differs.
    pub differences: Vec<Difference>,
    /// Value comparison used `DEBUG DIGEST-VALUE` (else values were read and compared).
    pub digest: bool,
    /// The walk stopped at `--max-differences`: keys after that were not compared.
    pub stopped_early: bool,
}

impl Summary {
    pub fn count(&self, kind: Kind) -> usize {
        self.differences.iter().filter(|d| d.kind == kind).count()
    }

    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out, "target {}:", self.target)?;
        writeln!(
            out,
            "  compared {} source keys ({} filtered out) and {} target keys, values by {}",
            self.source_keys,
            self.filtered,
            self.target_keys,
            if self.digest {
                "DEBUG DIGEST-VALUE"
            } else {
                "reading them"
            }
        )?;
        writeln!(
            out,
            "  {} differed in round 1; after {} round(s){}: {} differences",
            self.first_round,
            self.rounds,
            if self.repaired > 0 {
                format!(" and {} repaired", self.repaired)
            } else {
                String::new()
            },
            self.differences.len()
        )?;
        if self.stopped_early {
            writeln!(
                out,
                "  stopped at {} differences (--max-differences): keys after those were not compared",
                self.first_round
            )?;
        }
        let counts: Vec<String> = Kind::ALL
            .iter()
            .map(|&k| format!("{} {}", k.name(), self.count(k)))
            .collect();
        writeln!(out, "  {}", counts.join(", "))
    }

    /// The first `n` differences, one readable line each (keys escaped as `ferry rdb`
    /// prints them), and how many more there are.
    pub fn print_first(&self, out: &mut impl Write, n: usize) -> std::io::Result<()> {
        if self.differences.is_empty() {
            return Ok(());
        }
        writeln!(out, "  first differing keys:")?;
        for d in self.differences.iter().take(n) {
            writeln!(out, "    {}", d.line())?;
        }
        if self.differences.len() > n {
            writeln!(
                out,
                "    ... {} more (--out FILE writes every one as JSON)",
                self.differences.len() - n
            )?;
        }
        Ok(())
    }
}

impl Difference {
    /// `missing  db 0 "key"`, with where the key goes on the target when that differs.
    pub fn line(&self) -> String {
        let kind = self.kind.name();
        match &self.subject {
            Subject::Source {
                db,
                key,
                target_db,
                target_key,
            } if (db, key) != (target_db, target_key) => format!(
                "{kind:<8} db {db} {} (on the target: db {target_db} {})",
                escape(key),
                escape(target_key)
            ),
            Subject::Source { db, key, .. } | Subject::Target { db, key } => {
                format!("{kind:<8} db {db} {}", escape(key))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_strings_or_base64() {
        let d = Difference {
            kind: Kind::Extra,
            subject: Subject::Target {
                db: 3,
                key: Bytes::from_static(b"\xff\x00k"),
            },
            detail: json!({}),
        };
        let line = d.to_json(None).to_string();
        assert_eq!(
            line,
            r#"{"db":3,"detail":{},"key":{"base64":"/wBr"},"kind":"extra"}"#
        );
        assert_eq!(bytes(b"caf\xc3\xa9"), json!("café"));
        assert_eq!(shown(&[b'a'; 300]), json!({"len": 300}));
    }
}
