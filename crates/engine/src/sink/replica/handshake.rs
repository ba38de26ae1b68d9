//! What the target says to ferry as it connects to replicate, and what ferry answers: the part
//! of the master's side of replication before the data flows. Pure, so every order and every
//! refusal is testable without a socket.

use bytes::Bytes;

/// Where the target wants the stream to start: its `PSYNC <replid> <offset>` (`?` and `-1`
/// for "from scratch").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Psync {
    pub replid: Bytes,
    pub offset: Bytes,
}

/// What one command of the handshake leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this reply and read the next command.
    Reply(&'static [u8]),
    /// The target asks for the stream: the handshake is over.
    Psync(Psync),
    /// Send this error and close: the link is not the target's (or not one ferry can serve).
    Refuse(String),
}

/// The handshake so far: whether the target has logged in with the secret ferry gave it.
pub struct Handshake {
    secret: Bytes,
    authenticated: bool,
}

impl Handshake {
    /// A handshake that takes only `secret` (set as the target's `masterauth`) as password.
    pub fn new(secret: Bytes) -> Handshake {
        Handshake {
            secret,
            authenticated: false,
        }
    }

    /// The answer to one command (`args`, its name first).
    pub fn step(&mut self, args: &[Bytes]) -> Step {
        let Some(name) = args.first() else {
            return Step::Refuse("an empty command".into());
        };
        let name = name.to_ascii_uppercase();
        match (name.as_slice(), args.len()) {
            // Before AUTH too: Redis replicas send PING first and take +PONG or -NOAUTH alike.
            (b"PING", _) => Step::Reply(b"+PONG\r\n"),
            // `AUTH <password>`, or `AUTH <masteruser> <password>`: only the password counts.
            (b"AUTH", 2 | 3) => {
                if args.last() == Some(&self.secret) {
                    self.authenticated = true;
                    Step::Reply(b"+OK\r\n")
                } else {
                    Step::Refuse(
                        "WRONGPASS this is ferry's replication port for one target; the password is not the one ferry set as that target's masterauth".into(),
                    )
                }
            }
            _ if !self.authenticated => Step::Refuse(
                "NOAUTH this is ferry's replication port for one target: authenticate with the masterauth ferry set there".into(),
            ),
            // listening-port, ip-address, capa, rdb-filter-only...: taken; ferry relays the
            // source's stream as it comes whatever the target can do beyond PSYNC.
            (b"REPLCONF", n) if n >= 3 => Step::Reply(b"+OK\r\n"),
            (b"PSYNC", 3) => Step::Psync(Psync {
                replid: args[1].clone(),
                offset: args[2].clone(),
            }),
            (b"SYNC", _) => Step::Refuse(
                "ERR ferry serves replicas that ask with PSYNC (Redis 4.0 and later)".into(),
            ),
            _ => Step::Refuse(format!(
                "ERR ferry's replication port takes the replica handshake only, not {}",
                crate::text::escape(&name)
            )),
        }
    }
}

/// A `REPLCONF ACK <offset> [FACK <offset>]` from the target once the stream flows: the offset
/// it has applied. None for anything else.
pub fn ack_offset(args: &[Bytes]) -> Option<u64> {
    match args {
        [name, sub, offset, ..]
            if name.eq_ignore_ascii_case(b"REPLCONF") && sub.eq_ignore_ascii_case(b"ACK") =>
        {
            std::str::from_utf8(offset).ok()?.parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn a_redis_replicas_handshake_reaches_psync() {
        let mut h = Handshake::new(Bytes::from_static(b"s3cret"));
        assert_eq!(h.step(&args(&["PING"])), Step::Reply(b"+PONG\r\n"));
        assert_eq!(h.step(&args(&["AUTH", "s3cret"])), Step::Reply(b"+OK\r\n"));
        for cmd in [
            &["REPLCONF", "listening-port", "6380"][..],
            &["REPLCONF", "ip-address", "127.0.0.1"],
            &["REPLCONF", "capa", "eof", "capa", "psync2"],
        ] {
            assert_eq!(h.step(&args(cmd)), Step::Reply(b"+OK\r\n"));
        }
        assert_eq!(
            h.step(&args(&["psync", "0123", "42"])),
            Step::Psync(Psync {
                replid: Bytes::from_static(b"0123"),
                offset: Bytes::from_static(b"42"),
            })
        );
    }

    #[test]
    fn a_masteruser_login_counts_only_the_password() {
        let mut h = Handshake::new(Bytes::from_static(b"s3cret"));
        assert_eq!(
            h.step(&args(&["AUTH", "repl", "s3cret"])),
            Step::Reply(b"+OK\r\n")
        );
        assert!(matches!(
            h.step(&args(&["PSYNC", "?", "-1"])),
            Step::Psync(_)
        ));
    }

    #[test]
    fn nothing_but_ping_passes_without_the_secret() {
        let mut h = Handshake::new(Bytes::from_static(b"s3cret"));
        assert!(
            matches!(h.step(&args(&["PSYNC", "?", "-1"])), Step::Refuse(m) if m.starts_with("NOAUTH"))
        );
        assert!(matches!(
            h.step(&args(&["REPLCONF", "capa", "eof"])),
            Step::Refuse(_)
        ));
        assert!(
            matches!(h.step(&args(&["AUTH", "guess"])), Step::Refuse(m) if m.starts_with("WRONGPASS"))
        );
        assert!(matches!(
            h.step(&args(&["PSYNC", "?", "-1"])),
            Step::Refuse(_)
        ));
    }

    #[test]
    fn other_commands_and_old_sync_are_refused() {
        let mut h = Handshake::new(Bytes::from_static(b"x"));
        h.step(&args(&["AUTH", "x"]));
        assert!(matches!(h.step(&args(&["SYNC"])), Step::Refuse(m) if m.contains("PSYNC")));
        assert!(matches!(h.step(&args(&["GET", "k"])), Step::Refuse(m) if m.contains("GET")));
        assert!(matches!(h.step(&args(&[])), Step::Refuse(_)));
    }

    #[test]
    fn acks_are_read_with_or_without_fack() {
        assert_eq!(ack_offset(&args(&["REPLCONF", "ACK", "1234"])), Some(1234));
        assert_eq!(
            ack_offset(&args(&["replconf", "ack", "77", "FACK", "70"])),
            Some(77)
        );
        assert_eq!(ack_offset(&args(&["REPLCONF", "ACK", "x"])), None);
        assert_eq!(ack_offset(&args(&["PING"])), None);
    }
}
