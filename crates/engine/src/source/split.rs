//! A huge `SET key value` or `APPEND key value` in the command stream, passed on in pieces as
//! its bytes arrive instead of held whole: `MULTI`, `SET key <piece>` (or `APPEND`), then
//! `APPEND key <piece>` for each further piece, then `EXEC` at the position just after the
//! source's command. The writer keeps a source transaction whole in one of its own, with the
//! checkpoint, so the target applies all pieces or none, and no checkpoint names a position
//! inside the command: a restart after any piece resumes before the command and writes it
//! whole again (the `SET` resets what an earlier attempt left; an `APPEND` of an aborted
//! attempt never applied). Inside a source transaction the pieces go without their own
//! `MULTI`/`EXEC`: the source's already holds them together.
//!
//! A `SET` with options after its value (`PXAT t`, how Redis 7 propagates any `SET` with an
//! expiry; `EX`, `PX`, `EXAT`, `KEEPTTL`, `NX`, `XX`, `GET`, `IFEQ v`) goes the same way: its
//! first piece is `SET key <piece> KEEPTTL`, and once the options have arrived one command
//! after the last piece gives the key the expiry they name (`PEXPIREAT`, ...), keeps it
//! (`KEEPTTL`) or removes it (`PERSIST`, what a plain `SET` does). `NX`, `XX`, `GET` and `IFEQ`
//! were decided by the source, which propagates a `SET` only when it wrote. Any other
//! command with a huge argument is still read whole.

use bytes::{Buf, Bytes, BytesMut};

use crate::pipeline::entry::{Command, Entry, OWN_KEY_PREFIX};

/// A value at least this long is passed on in pieces.
pub const SPLIT_BYTES: u64 = 1024 * 1024;
/// Bytes of the value per piece.
pub const PIECE_BYTES: u64 = 256 * 1024;
/// A key longer than this is not looked for (the command is then read whole).
const MAX_KEY: usize = 64 * 1024;
/// A `SET` option longer than this (only `IFEQ`'s value can be) is refused.
const MAX_OPTION: usize = 64 * 1024;

/// What is left of a command being passed on in pieces.
pub struct Split {
    key: Bytes,
    append: bool,
    /// Value bytes not passed on yet.
    left: u64,
    first: bool,
    /// Wrapped in a MULTI/EXEC of its own (not inside a source transaction).
    wrap: bool,
    db: u32,
    /// Arguments after the value (a `SET`'s options), still to come once it is passed on.
    options: usize,
    /// The value is passed on; the options (if any) are what is left.
    value_done: bool,
    done: bool,
}

/// Reads `<digits>\r\n` at `at`; the number and where the next thing starts.
fn number(buf: &[u8], at: usize) -> Option<(u64, usize)> {
    let end = at + buf.get(at..)?.iter().take(21).position(|&b| b == b'\r')?;
    if buf.get(end + 1) != Some(&b'\n') || end == at {
        return None;
    }
    let n = std::str::from_utf8(&buf[at..end]).ok()?.parse().ok()?;
    Some((n, end + 2))
}

/// A bulk string `$<n>\r\n<bytes>\r\n` at `at`, whole in `buf`, of at most `max` bytes.
fn bulk(buf: &[u8], at: usize, max: usize) -> Option<(&[u8], usize)> {
    if buf.get(at) != Some(&b'$') {
        return None;
    }
    let (n, start) = number(buf, at + 1)?;
    let n = usize::try_from(n).ok().filter(|&n| n <= max)?;
    let end = start.checked_add(n)?;
    if buf.get(end..end + 2) != Some(&b"\r\n"[..]) {
        return None;
    }
    Some((&buf[start..end], end + 2))
}

impl Split {
    /// When `buf` starts with `SET key value` or `APPEND key value` (3 arguments) whose value
    /// is at least `SPLIT_BYTES` long, consumes its header (up to the value's first byte,
    /// counted into `offset`) and starts passing it on. `None` when it is anything else or its
    /// header has not all arrived.
    pub fn start(
        buf: &mut BytesMut,
        offset: &mut u64,
        db: u32,
        in_multi: bool,
        out: &mut Vec<Entry>,
    ) -> Option<Split> {
        if buf.first() != Some(&b'*') {
            return None;
        }
        let (argc, at) = number(buf, 1)?;
        let (name, at) = bulk(buf, at, 6)?;
        let append = if name.eq_ignore_ascii_case(b"SET") && (3..=9).contains(&argc) {
            false
        } else if name.eq_ignore_ascii_case(b"APPEND") && argc == 3 {
            true
        } else {
            return None;
        };
        let (key, at) = bulk(buf, at, MAX_KEY)?;
        if key.starts_with(OWN_KEY_PREFIX) || buf.get(at) != Some(&b'$') {
            return None;
        }
        let (len, header) = number(buf, at + 1)?;
        if len < SPLIT_BYTES {
            return None;
        }
        let key = Bytes::copy_from_slice(key);
        buf.advance(header);
        *offset += header as u64;
        if !in_multi {
            out.push(command(db, vec![Bytes::from_static(b"MULTI")], *offset));
        }
        Some(Split {
            key,
            append,
            left: len,
            first: true,
            wrap: !in_multi,
            db,
            options: argc as usize - 3,
            value_done: false,
            done: false,
        })
    }

    /// Passes on the pieces `buf` holds (a piece waits until it is whole). Err: the value is
    /// not followed by CRLF, the stream is damaged.
    pub fn feed(
        &mut self,
        buf: &mut BytesMut,
        offset: &mut u64,
        out: &mut Vec<Entry>,
    ) -> Result<(), String> {
        while !self.done {
            if self.value_done {
                return self.finish(buf, offset, out);
            }
            let n = self.left.min(PIECE_BYTES) as usize;
            let last = n as u64 == self.left;
            let need = if last { n + 2 } else { n };
            if buf.len() < need {
                return Ok(());
            }
            let piece = buf.split_to(n).freeze();
            self.left -= n as u64;
            *offset += n as u64;
            if last {
                if &buf[..2] != b"\r\n" {
                    return Err("a bulk string in the stream is not followed by CRLF".into());
                }
                buf.advance(2);
                *offset += 2;
                self.value_done = true;
            }
            let name: &'static [u8] = if self.first && !self.append {
                b"SET"
            } else {
                b"APPEND"
            };
            let mut args = vec![Bytes::from_static(name), self.key.clone(), piece];
            if self.first && self.options > 0 {
                // Whether the key keeps its expiry is known only once the options are in.
                args.push(Bytes::from_static(b"KEEPTTL"));
            }
            self.first = false;
            out.push(command(self.db, args, *offset));
        }
        Ok(())
    }

    /// After the value: reads the options (once all have arrived), gives the key the expiry
    /// they say, and ends the transaction.
    fn finish(
        &mut self,
        buf: &mut BytesMut,
        offset: &mut u64,
        out: &mut Vec<Entry>,
    ) -> Result<(), String> {
        let mut options = Vec::with_capacity(self.options);
        let mut at = 0;
        for _ in 0..self.options {
            if buf.get(at).is_some_and(|&b| b != b'$') {
                return Err("a SET option in the stream is not a bulk string".into());
            }
            match bulk(buf, at, MAX_OPTION) {
                Some((option, next)) => {
                    options.push(Bytes::copy_from_slice(option));
                    at = next;
                }
                // Not all here yet (or an option too long to wait for).
                None if buf.len() < at + MAX_OPTION + 32 => return Ok(()),
                None => return Err("a SET option in the stream is too long".into()),
            }
        }
        buf.advance(at);
        *offset += at as u64;
        // A plain SET cleared the expiry with its first piece; an APPEND keeps it.
        if let Some(args) = self.expiry(&options)?.filter(|_| self.options > 0) {
            out.push(command(self.db, args, *offset));
        }
        if self.wrap {
            out.push(command(self.db, vec![Bytes::from_static(b"EXEC")], *offset));
        }
        self.done = true;
        Ok(())
    }

    /// The command that leaves the key with the expiry `options` give it, if one is needed
    /// (the first piece kept the one it had).
    fn expiry(&self, options: &[Bytes]) -> Result<Option<Vec<Bytes>>, String> {
        let mut keep = false;
        let mut i = 0;
        while i < options.len() {
            let o = options[i].to_ascii_uppercase();
            let command: &'static [u8] = match o.as_slice() {
                b"NX" | b"XX" | b"GET" => {
                    i += 1;
                    continue;
                }
                b"KEEPTTL" => {
                    keep = true;
                    i += 1;
                    continue;
                }
                b"IFEQ" => {
                    i += 2;
                    continue;
                }
                b"EX" => b"EXPIRE",
                b"PX" => b"PEXPIRE",
                b"EXAT" => b"EXPIREAT",
                b"PXAT" => b"PEXPIREAT",
                _ => {
                    return Err(format!(
                        "a SET in the stream has an option ferry does not know: {}",
                        String::from_utf8_lossy(&options[i])
                    ));
                }
            };
            let at = options
                .get(i + 1)
                .filter(|n| std::str::from_utf8(n).is_ok_and(|t| t.parse::<i64>().is_ok()))
                .ok_or_else(|| "a SET expiry in the stream is not a number".to_string())?;
            return Ok(Some(vec![
                Bytes::from_static(command),
                self.key.clone(),
                at.clone(),
            ]));
        }
        Ok((!keep).then(|| vec![Bytes::from_static(b"PERSIST"), self.key.clone()]))
    }

    /// The whole command has been passed on.
    pub fn done(&self) -> bool {
        self.done
    }
}

fn command(db: u32, mut args: Vec<Bytes>, end_offset: u64) -> Entry {
    let mut raw = BytesMut::new();
    ferry_resp::encode_command(&mut raw, &args);
    let raw = raw.freeze();
    if let Some(last) = args.last_mut() {
        // The value as a slice of the command's bytes: one copy of it, not two, and none
        // of the read buffer it came from kept alive.
        let end = raw.len() - 2;
        *last = raw.slice(end - last.len()..end);
    }
    Entry::Command(Command {
        db,
        target_db: None,
        args,
        raw,
        end_offset,
        slot: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(out: &[Entry]) -> Vec<(String, usize, u64)> {
        out.iter()
            .map(|e| match e {
                Entry::Command(c) => (
                    String::from_utf8_lossy(&c.args[0]).into_owned(),
                    c.args.get(2).map_or(0, Bytes::len),
                    c.end_offset,
                ),
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn a_huge_set_goes_in_pieces_whatever_the_reads() {
        let value = vec![b'v'; (SPLIT_BYTES + PIECE_BYTES / 2) as usize];
        let mut wire = BytesMut::new();
        ferry_resp::encode_command(&mut wire, &[&b"SET"[..], b"k", &value]);
        let total = wire.len() as u64;
        for cut in [1usize, 7, 1000, 100_000, wire.len()] {
            let mut buf = BytesMut::new();
            let mut offset = 100;
            let mut out = Vec::new();
            let mut split = None;
            for part in wire.chunks(cut) {
                buf.extend_from_slice(part);
                if split.is_none() {
                    split = Split::start(&mut buf, &mut offset, 0, false, &mut out);
                }
                if let Some(s) = &mut split {
                    s.feed(&mut buf, &mut offset, &mut out).unwrap();
                }
            }
            assert!(split.unwrap().done() && buf.is_empty());
            let got = names(&out);
            assert_eq!(got[0].0, "MULTI");
            assert_eq!(got[1].0, "SET");
            assert!(got[2..got.len() - 1].iter().all(|g| g.0 == "APPEND"));
            let last = got.last().unwrap();
            assert_eq!((last.0.as_str(), last.2), ("EXEC", 100 + total));
            let sum: usize = got.iter().map(|g| g.1).sum();
            assert_eq!(sum, value.len());
            assert!(got.windows(2).all(|w| w[0].2 <= w[1].2));
            assert!(got.iter().all(|g| g.1 as u64 <= PIECE_BYTES));
        }
    }

    #[test]
    fn a_huge_set_with_options_keeps_its_expiry_for_the_end() {
        let value = vec![b'v'; SPLIT_BYTES as usize];
        for (options, last) in [
            (
                vec![&b"PXAT"[..], b"1700000000000"],
                vec!["PEXPIREAT", "k", "1700000000000"],
            ),
            (vec![&b"ex"[..], b"100", b"NX"], vec!["EXPIRE", "k", "100"]),
            (vec![&b"KEEPTTL"[..]], vec![]),
            (vec![&b"XX"[..], b"GET"], vec!["PERSIST", "k"]),
        ] {
            let mut args = vec![&b"SET"[..], b"k", &value];
            args.extend(options.iter().copied());
            let mut wire = BytesMut::new();
            ferry_resp::encode_command(&mut wire, &args);
            let total = wire.len() as u64;
            for cut in [1000usize, wire.len()] {
                let (mut buf, mut offset, mut out) = (BytesMut::new(), 0, Vec::new());
                let mut split = None;
                for part in wire.chunks(cut) {
                    buf.extend_from_slice(part);
                    if split.is_none() {
                        split = Split::start(&mut buf, &mut offset, 0, false, &mut out);
                    }
                    if let Some(s) = &mut split {
                        s.feed(&mut buf, &mut offset, &mut out).unwrap();
                    }
                }
                assert!(split.unwrap().done() && buf.is_empty() && offset == total);
                let cmds: Vec<Vec<String>> = out
                    .iter()
                    .map(|e| match e {
                        Entry::Command(c) => c
                            .args
                            .iter()
                            .map(|a| String::from_utf8_lossy(&a[..a.len().min(20)]).into_owned())
                            .collect(),
                        _ => unreachable!(),
                    })
                    .collect();
                assert_eq!(cmds[1][0], "SET");
                assert_eq!(cmds[1].last().unwrap(), "KEEPTTL");
                assert_eq!(cmds.last().unwrap(), &vec!["EXEC".to_string()]);
                let before_exec = &cmds[cmds.len() - 2];
                if last.is_empty() {
                    assert_eq!(before_exec[0], "APPEND");
                } else {
                    assert_eq!(before_exec, &last);
                }
            }
        }
    }

    #[test]
    fn small_or_other_commands_are_left_alone() {
        let mut out = Vec::new();
        let mut offset = 0;
        for args in [
            vec![&b"SET"[..], b"k", b"small"],
            vec![&b"RPUSH"[..], b"k", b"v"],
            vec![&b"SET"[..], b"k", b"v", b"KEEPTTL"],
        ] {
            let mut buf = BytesMut::new();
            ferry_resp::encode_command(&mut buf, &args);
            assert!(Split::start(&mut buf, &mut offset, 0, false, &mut out).is_none());
        }
        // Inside a source transaction: no MULTI/EXEC of its own; an APPEND stays APPEND.
        let mut buf = BytesMut::new();
        let value = vec![b'a'; SPLIT_BYTES as usize];
        ferry_resp::encode_command(&mut buf, &[&b"append"[..], b"k", &value]);
        let mut s = Split::start(&mut buf, &mut offset, 3, true, &mut out).unwrap();
        s.feed(&mut buf, &mut offset, &mut out).unwrap();
        let got = names(&out);
        assert!(got.iter().all(|g| g.0 == "APPEND"), "{got:?}");
        assert_eq!(got.len(), 4);
    }
}
