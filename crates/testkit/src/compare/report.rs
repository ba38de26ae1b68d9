//! What a failed comparison found, printable as a test failure message.

use std::fmt;

use crate::wire::escape;

/// How one key (or library) differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// On the source, not on the target.
    MissingOnTarget,
    /// On the target, not on the source.
    ExtraOnTarget,
    /// Different types (source, target).
    Type { source: String, target: String },
    /// Same type, different value (`DEBUG DIGEST-VALUE`); for a library, different code.
    /// (The digest also covers whether the key has a TTL, so a key whose TTL is set on one
    /// side only is reported as [`Problem::Ttl`] alone.)
    Digest,
    /// TTLs in ms further apart than the tolerance; `None` is no TTL.
    Ttl {
        source: Option<i64>,
        target: Option<i64>,
    },
    /// Same stream entries, different consumer groups, consumers or pending entries.
    StreamGroups { source: String, target: String },
}

/// One difference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Diff {
    Key {
        db: i64,
        key: Vec<u8>,
        problem: Problem,
    },
    Library {
        name: String,
        problem: Problem,
    },
}

/// The differences a comparison found (up to `Options::max_diffs`), or why it could not
/// run. `Display` lists them one per line.
#[derive(Clone, Debug)]
pub struct Report {
    pub source: String,
    pub target: String,
    pub diffs: Vec<Diff>,
    /// Set when the comparison itself failed (connection, DEBUG not enabled, ...).
    pub error: Option<String>,
    /// Keys present on both sides and compared.
    pub compared: u64,
    /// The walk stopped at `max_diffs`: there may be more.
    pub truncated: bool,
}

impl Report {
    pub(crate) fn new(source: &str, target: &str) -> Report {
        Report {
            source: source.to_string(),
            target: target.to_string(),
            diffs: Vec::new(),
            error: None,
            compared: 0,
            truncated: false,
        }
    }

    /// Whether some difference names `key` (in any db).
    pub fn mentions_key(&self, key: &[u8]) -> bool {
        self.diffs
            .iter()
            .any(|d| matches!(d, Diff::Key { key: k, .. } if k == key))
    }
}

fn ttl(ms: &Option<i64>) -> String {
    ms.map_or_else(|| "none".to_string(), |ms| ms.to_string())
}

/// Both texts cut to a window around their first difference.
fn around_difference(a: &str, b: &str) -> (String, String) {
    const BEFORE: usize = 60;
    const WIDTH: usize = 240;
    let first = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i);
    let cut = |text: &str| {
        let mut start = first.saturating_sub(BEFORE);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let rest = &text[start..];
        let end = rest
            .char_indices()
            .nth(WIDTH)
            .map_or(rest.len(), |(i, _)| i);
        let head = if start > 0 { "..." } else { "" };
        let tail = if end < rest.len() { "..." } else { "" };
        format!("{head}{}{tail}", &rest[..end])
    };
    (cut(a), cut(b))
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MissingOnTarget => write!(f, "missing on target"),
            Problem::ExtraOnTarget => write!(f, "extra on target (missing on source)"),
            Problem::Type { source, target } => write!(f, "type {source} vs {target}"),
            Problem::Digest => write!(f, "digest differs"),
            Problem::Ttl { source, target } => write!(f, "ttl {} vs {}", ttl(source), ttl(target)),
            Problem::StreamGroups { source, target } => {
                let (source, target) = around_difference(source, target);
                write!(
                    f,
                    "stream groups differ:\n      source {source}\n      target {target}"
                )
            }
        }
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diff::Key { db, key, problem } => {
                write!(f, "db {db} key \"{}\": {problem}", escape(key))
            }
            Diff::Library { name, problem } => write!(f, "function library \"{name}\": {problem}"),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(error) = &self.error {
            return write!(
                f,
                "comparing {} with {} failed: {error}",
                self.source, self.target
            );
        }
        let more = if self.truncated {
            ", stopped there"
        } else {
            ""
        };
        writeln!(
            f,
            "{} differences between source {} and target {} ({} keys compared{more}):",
            self.diffs.len(),
            self.source,
            self.target,
            self.compared
        )?;
        for diff in &self.diffs {
            writeln!(f, "  {diff}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Report {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_documented() {
        let d = |problem| Diff::Key {
            db: 1,
            key: b"foo".to_vec(),
            problem,
        };
        assert_eq!(
            d(Problem::MissingOnTarget).to_string(),
            "db 1 key \"foo\": missing on target"
        );
        let t = Problem::Type {
            source: "list".into(),
            target: "string".into(),
        };
        assert_eq!(d(t).to_string(), "db 1 key \"foo\": type list vs string");
        assert_eq!(
            d(Problem::Digest).to_string(),
            "db 1 key \"foo\": digest differs"
        );
        let ttl = Problem::Ttl {
            source: Some(12000),
            target: None,
        };
        assert_eq!(d(ttl).to_string(), "db 1 key \"foo\": ttl 12000 vs none");
    }

    #[test]
    fn long_texts_are_cut_around_the_difference() {
        let a = format!("{}X{}", "a".repeat(500), "b".repeat(500));
        let b = format!("{}Y{}", "a".repeat(500), "b".repeat(500));
        let (x, y) = around_difference(&a, &b);
        assert!(x.starts_with("...") && x.ends_with("..."), "{x}");
        assert!(x.contains("aX") && y.contains("aY"));
        assert_eq!(
            around_difference("same", "same"),
            ("same".into(), "same".into())
        );
        assert_eq!(around_difference("ab", "abc"), ("ab".into(), "abc".into()));
    }
}
