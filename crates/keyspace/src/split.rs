//! Cutting a multi-key command into one command per slot.

use std::collections::HashMap;

use bytes::Bytes;

use crate::keys::{Keys, Kind, keys};
use crate::slot::slot;

/// `args` cut into one command per hash slot, each with the keys of that slot in their
/// original order, for the commands that treat their keys one by one: `DEL`, `UNLINK`,
/// `TOUCH`, `EXISTS`, `MGET`, `MSET`, `MSETNX` and `MSETEX` (Redis 8.4).
///
/// The commands come in the order their slots first appear in `args`, so the result is the
/// same on every run. A command whose keys are all in one slot gives one command, equal
/// to `args`, except as said below. `None` for any other command, and for malformed ones.
///
/// - `MSETNX` becomes `MSET`. A replication stream only holds an `MSETNX` that succeeded
///   (one that failed changed nothing and is not propagated), so every key was set. Cut
///   into per-slot `MSETNX`es, one could fail on the target where the source's whole
///   command succeeded, for instance when ferry replays it after a crash that came between
///   two parts: the keys of the first part then exist. `MSET` writes what the source wrote.
/// - `MSETEX` keeps its expiration options but drops `NX`/`XX`, for the same reason: it
///   sets all its keys or none, and only the first reaches the stream.
/// - The other names are kept as they were written (case included).
///
/// Arguments are copied into [`Bytes`].
///
/// ```
/// use ferry_keyspace::{slot, split_by_slot};
///
/// let parts = split_by_slot(&["DEL", "{a}1", "b", "{a}2"]).unwrap();
/// assert_eq!(parts.len(), 2);
/// assert_eq!(parts[0].0, slot(b"a"));
/// assert_eq!(parts[0].1, ["DEL", "{a}1", "{a}2"]);
/// assert_eq!(parts[1].1, ["DEL", "b"]);
/// ```
pub fn split_by_slot<A: AsRef<[u8]>>(args: &[A]) -> Option<Vec<(u16, Vec<Bytes>)>> {
    regroup(args, slot)
}

/// `args` with only the keys `keep` accepts, for the same commands as [`split_by_slot`],
/// rewritten the same way (`MSETNX` becomes `MSET`, `MSETEX` drops `NX`/`XX` and recounts
/// its keys): the command that has the source's effect on the kept keys alone. `Some(None)`
/// when no key is kept; `None` for any other command, and for malformed ones.
///
/// ```
/// use ferry_keyspace::retain_keys;
///
/// let kept = retain_keys(&["DEL", "a:1", "b:1", "a:2"], |k| k.starts_with(b"a:"));
/// assert_eq!(kept.unwrap().unwrap(), ["DEL", "a:1", "a:2"]);
/// assert_eq!(retain_keys(&["DEL", "b:1"], |k| k.starts_with(b"a:")), Some(None));
/// assert_eq!(retain_keys(&["RENAME", "a:1", "b:1"], |_| true), None);
/// ```
pub fn retain_keys<A: AsRef<[u8]>>(
    args: &[A],
    mut keep: impl FnMut(&[u8]) -> bool,
) -> Option<Option<Vec<Bytes>>> {
    let groups = regroup(args, |k| keep(k))?;
    Some(
        groups
            .into_iter()
            .find(|(kept, _)| *kept)
            .map(|(_, cmd)| cmd),
    )
}

/// The per-key commands cut into one command per value of `group_of` over their keys, in
/// order of first appearance.
fn regroup<A: AsRef<[u8]>, G: Copy + Eq + std::hash::Hash>(
    args: &[A],
    mut group_of: impl FnMut(&[u8]) -> G,
) -> Option<Vec<(G, Vec<Bytes>)>> {
    let Keys::Keyed(found) = keys(args) else {
        return None;
    };
    if !matches!(found.kind(), Kind::Split | Kind::Single) {
        return None;
    }
    let name = args.first()?.as_ref();
    let (out_name, numkeys, pair): (&[u8], bool, bool) = if name.eq_ignore_ascii_case(b"MSETNX") {
        (b"MSET", false, true)
    } else if name.eq_ignore_ascii_case(b"MSET") {
        (name, false, true)
    } else if name.eq_ignore_ascii_case(b"MSETEX") {
        (name, true, true)
    } else if [&b"DEL"[..], b"UNLINK", b"TOUCH", b"EXISTS", b"MGET"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
    {
        (name, false, false)
    } else {
        return None;
    };

    // Group each key (and its value) by slot, in order of first appearance.
    let mut index: HashMap<G, usize> = HashMap::new();
    let mut groups: Vec<(G, Vec<Bytes>)> = Vec::new();
    for i in found.positions() {
        let k = args.get(i)?.as_ref();
        let s = group_of(k);
        let g = *index.entry(s).or_insert_with(|| {
            groups.push((s, Vec::new()));
            groups.len() - 1
        });
        let items = &mut groups[g].1;
        items.push(Bytes::copy_from_slice(k));
        if pair {
            items.push(Bytes::copy_from_slice(args.get(i + 1)?.as_ref()));
        }
    }

    // What follows the last key-value pair: MSETEX's options.
    let tail = if numkeys {
        let last = found.positions().last()?;
        msetex_options(args.get(last + 2..).unwrap_or_default())
    } else {
        Vec::new()
    };

    let commands = groups
        .into_iter()
        .map(|(s, items)| {
            let mut cmd = Vec::with_capacity(items.len() + 2 + tail.len());
            cmd.push(Bytes::copy_from_slice(out_name));
            if numkeys {
                cmd.push(Bytes::from((items.len() / 2).to_string()));
            }
            cmd.extend(items);
            cmd.extend(tail.iter().cloned());
            (s, cmd)
        })
        .collect();
    Some(commands)
}

/// `MSETEX`'s options without `NX` and `XX`; empty for the other commands, which have
/// nothing after their keys.
fn msetex_options<A: AsRef<[u8]>>(options: &[A]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < options.len() {
        let opt = options[i].as_ref();
        if opt.eq_ignore_ascii_case(b"NX") || opt.eq_ignore_ascii_case(b"XX") {
            i += 1;
            continue;
        }
        out.push(Bytes::copy_from_slice(opt));
        // An expiration's value follows it; it is kept whatever it reads.
        let takes_value = [&b"EX"[..], b"PX", b"EXAT", b"PXAT"]
            .iter()
            .any(|t| opt.eq_ignore_ascii_case(t));
        if takes_value && let Some(v) = options.get(i + 1) {
            out.push(Bytes::copy_from_slice(v.as_ref()));
            i += 1;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(cmd: &[Bytes]) -> Vec<&str> {
        cmd.iter()
            .map(|b| std::str::from_utf8(b).unwrap())
            .collect()
    }

    fn split(args: &[&str]) -> Vec<(u16, Vec<String>)> {
        split_by_slot(args)
            .unwrap()
            .into_iter()
            .map(|(s, c)| (s, strs(&c).into_iter().map(String::from).collect()))
            .collect()
    }

    #[test]
    fn del_family_groups_keys_by_slot_in_order() {
        for name in ["DEL", "unlink", "Touch", "EXISTS", "MGET"] {
            let parts = split(&[name, "{x}a", "foo", "{x}b", "bar", "foo"]);
            assert_eq!(
                parts,
                [
                    (slot(b"x"), vec![name.into(), "{x}a".into(), "{x}b".into()]),
                    (slot(b"foo"), vec![name.into(), "foo".into(), "foo".into()]),
                    (slot(b"bar"), vec![name.into(), "bar".into()]),
                ]
            );
        }
    }

    #[test]
    fn one_slot_gives_the_command_back() {
        assert_eq!(
            split(&["DEL", "k"]),
            [(slot(b"k"), vec!["DEL".into(), "k".into()])]
        );
        let parts = split(&["MSET", "{t}1", "a", "{t}2", "b"]);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].1, ["MSET", "{t}1", "a", "{t}2", "b"]);
    }

    #[test]
    fn mset_keeps_values_with_their_keys() {
        let parts = split(&["mset", "foo", "1", "bar", "2", "{foo}x", "3"]);
        assert_eq!(
            parts,
            [
                (
                    slot(b"foo"),
                    vec![
                        "mset".into(),
                        "foo".into(),
                        "1".into(),
                        "{foo}x".into(),
                        "3".into()
                    ]
                ),
                (slot(b"bar"), vec!["mset".into(), "bar".into(), "2".into()]),
            ]
        );
    }

    #[test]
    fn msetnx_becomes_mset() {
        let parts = split(&["msetnx", "foo", "1", "bar", "2"]);
        assert_eq!(parts[0].1, ["MSET", "foo", "1"]);
        assert_eq!(parts[1].1, ["MSET", "bar", "2"]);
    }

    #[test]
    fn msetex_recounts_keys_and_drops_nx_xx() {
        let parts = split(&[
            "MSETEX", "3", "foo", "1", "bar", "2", "{bar}z", "3", "NX", "PX", "1000",
        ]);
        assert_eq!(
            parts[0].1,
            ["MSETEX", "1", "foo", "1", "PX", "1000"].map(String::from)
        );
        assert_eq!(
            parts[1].1,
            ["MSETEX", "2", "bar", "2", "{bar}z", "3", "PX", "1000"].map(String::from)
        );
        // A value that reads like NX is an expiration's value, kept.
        assert_eq!(
            msetex_options(&["XX", "KEEPTTL", "EX", "NX"]),
            [Bytes::from("KEEPTTL"), Bytes::from("EX"), Bytes::from("NX")]
        );
    }

    #[test]
    fn retain_keeps_the_chosen_keys_with_their_values() {
        let kept = |args: &[&str]| {
            retain_keys(args, |k| k.starts_with(b"a"))
                .unwrap()
                .map(|c| strs(&c).into_iter().map(String::from).collect::<Vec<_>>())
        };
        assert_eq!(
            kept(&["MSET", "a1", "1", "b1", "2", "a2", "3"]).unwrap(),
            ["MSET", "a1", "1", "a2", "3"]
        );
        // The source's MSETNX succeeded (or it would not be in the stream): every key was
        // set, so MSET of the kept ones writes what it wrote.
        assert_eq!(
            kept(&["msetnx", "b0", "0", "a1", "1"]).unwrap(),
            ["MSET", "a1", "1"]
        );
        assert_eq!(
            kept(&["MSETEX", "2", "a1", "1", "b1", "2", "XX", "EX", "5"]).unwrap(),
            ["MSETEX", "1", "a1", "1", "EX", "5"]
        );
        assert_eq!(kept(&["UNLINK", "b1", "b2"]), None);
        assert_eq!(
            kept(&["UNLINK", "a1", "a1"]).unwrap(),
            ["UNLINK", "a1", "a1"]
        );
        assert!(retain_keys(&["SUNIONSTORE", "a", "b"], |_| true).is_none());
    }

    #[test]
    fn other_commands_are_not_split() {
        assert!(split_by_slot(&["RENAME", "a", "b"]).is_none());
        assert!(split_by_slot(&["SET", "a", "b"]).is_none());
        assert!(split_by_slot(&["BLPOP", "a", "b", "0"]).is_none());
        assert!(split_by_slot(&["FLUSHALL"]).is_none());
        assert!(split_by_slot(&["NOSUCH", "a"]).is_none());
        // Malformed.
        assert!(split_by_slot(&["MSET", "a"]).is_none());
        assert!(split_by_slot(&["MSET", "a", "1", "b"]).is_none());
        assert!(split_by_slot(&["DEL"]).is_none());
        assert!(split_by_slot(&["MSETEX", "2", "a", "1"]).is_none());
        assert!(split_by_slot::<&str>(&[]).is_none());
    }
}
