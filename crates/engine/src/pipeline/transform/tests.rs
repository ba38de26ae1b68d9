//! The transform on hand-made entries: what is kept, cut, rewritten, dropped (as a position),
//! and refused.

use super::*;
use crate::sink::encode::Encoder;
use crate::spec::FilterSection;

fn transform(toml_text: &str) -> Transform {
    let section: FilterSection = toml::from_str(toml_text).unwrap();
    Transform::new(Arc::new(Rules::build(&section).unwrap()), DEFAULT_DBS)
}

fn cmd(db: u32, end_offset: u64, words: &[&str]) -> Entry {
    let args: Vec<Bytes> = words.iter().map(|w| Bytes::from(w.to_string())).collect();
    Entry::Command(Command {
        db,
        target_db: None,
        raw: encode(&args),
        args,
        end_offset,
        slot: None,
    })
}

fn key(db: u64, name: &str, type_byte: ferry_rdb::TypeByte, expire_ms: Option<i64>) -> Entry {
    Entry::Key(ferry_rdb::Record {
        meta: ferry_rdb::KeyMeta {
            db,
            key: Bytes::from(name.to_string()),
            expire_ms,
            idle: None,
            freq: None,
            type_byte,
            key_metadata: None,
        },
        raw: Bytes::from_static(b"\x01v"),
    })
}

/// Each entry as text: `db:ARGS` for commands, `offset@db` for positions, `key db:name`.
fn show(batch: &Batch) -> Vec<String> {
    batch
        .iter()
        .map(|e| match e {
            Entry::Command(c) => {
                // The raw bytes are what the target receives: they must say the same.
                assert_eq!(c.raw, encode(&c.args));
                let words: Vec<String> = c
                    .args
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                format!("{}:{}", c.db, words.join(" "))
            }
            Entry::Offset { offset, db } => format!("{offset}@{db}"),
            Entry::Key(r) => format!(
                "key {}:{}{}",
                r.meta.db,
                String::from_utf8_lossy(&r.meta.key),
                r.meta
                    .expire_ms
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default()
            ),
            other => format!("{other:?}"),
        })
        .collect()
}

fn run(t: &mut Transform, batch: Batch) -> (Vec<String>, Status) {
    let status = Status::default();
    let out = t.apply(batch, &status).unwrap();
    (show(&out), status)
}

#[test]
fn keys_and_commands_by_prefix() {
    let mut t = transform(r#"allow_key_prefix = ["user:"]"#);
    let (out, st) = run(
        &mut t,
        vec![
            key(0, "user:1", ferry_rdb::TypeByte::STRING, None),
            key(0, "cache:1", ferry_rdb::TypeByte::STRING, None),
            cmd(0, 10, &["SET", "user:2", "x"]),
            cmd(0, 20, &["SET", "cache:2", "x"]),
            cmd(0, 30, &["PING"]),
            cmd(0, 40, &["FLUSHDB"]),
        ],
    );
    assert_eq!(
        out,
        [
            "key 0:user:1",
            "0:SET user:2 x",
            "20@0",
            "0:PING",
            "0:FLUSHDB"
        ]
    );
    assert_eq!(st.filtered_keys.load(Relaxed), 1);
    assert_eq!(st.filtered_commands.load(Relaxed), 1);
}

#[test]
fn multi_key_commands_keep_the_allowed_keys_or_are_reported() {
    let mut t = transform(r#"block_key_prefix = ["tmp:"]"#);
    let (out, st) = run(
        &mut t,
        vec![
            cmd(2, 10, &["MULTI"]),
            cmd(2, 20, &["DEL", "a", "tmp:1", "b"]),
            cmd(2, 30, &["MSETNX", "tmp:1", "1", "c", "2"]),
            cmd(2, 40, &["SET", "tmp:2", "x"]),
            cmd(2, 50, &["EXEC"]),
            cmd(2, 60, &["RENAME", "a", "tmp:a"]),
            cmd(2, 70, &["UNLINK", "tmp:1", "tmp:2"]),
        ],
    );
    assert_eq!(
        out,
        [
            "2:MULTI",
            "2:DEL a b",
            "2:MSET c 2",
            "40@2",
            "2:EXEC",
            "60@2",
            "70@2"
        ]
    );
    assert_eq!(st.split_commands.load(Relaxed), 2);
    assert_eq!(st.unsplittable_commands.load(Relaxed), 1);
    assert_eq!(st.filtered_commands.load(Relaxed), 3);
}

#[test]
fn commands_groups_and_types() {
    let mut t = transform(
        r#"
        block_command = ["flushall"]
        block_command_group = ["scripting"]
        block_type = ["list"]
        "#,
    );
    let list_payload = ferry_rdb::dump::payload(ferry_rdb::TypeByte::LIST_QUICKLIST_2, b"", 10);
    let mut restore = cmd(0, 40, &["RESTORE", "l", "0", "x"]);
    if let Entry::Command(c) = &mut restore {
        c.args[3] = list_payload.clone();
        c.raw = encode(&c.args);
    }
    let (out, _) = run(
        &mut t,
        vec![
            cmd(0, 10, &["FLUSHALL"]),
            cmd(0, 20, &["EVAL", "return 1", "0"]),
            cmd(0, 30, &["LPUSH", "l", "a"]),
            restore,
            cmd(0, 50, &["DEL", "l"]),
            cmd(0, 60, &["SET", "s", "1"]),
            key(0, "l", ferry_rdb::TypeByte::LIST_QUICKLIST_2, None),
            Entry::Function(Bytes::from_static(b"#!lua name=x")),
        ],
    );
    assert_eq!(
        out,
        ["10@0", "20@0", "30@0", "40@0", "0:DEL l", "0:SET s 1"]
    );
}

#[test]
fn flushall_with_db_rules_empties_each_synced_target_db() {
    let mut t = transform("allow_db = [1, 3]\ndb_map = { \"1\" = 5 }");
    let (out, _) = run(
        &mut t,
        vec![
            cmd(3, 10, &["FLUSHALL", "ASYNC"]),
            cmd(0, 20, &["MULTI"]),
            cmd(0, 30, &["FLUSHALL"]),
            cmd(0, 40, &["EXEC"]),
        ],
    );
    // FLUSHDB in source db 1 is sent to target db 5 by the encoder's db map.
    assert_eq!(
        out,
        [
            "3:MULTI",
            "3:FLUSHDB ASYNC",
            "1:FLUSHDB ASYNC",
            "3:EXEC",
            "0:MULTI",
            "3:FLUSHDB",
            "1:FLUSHDB",
            "0:EXEC"
        ]
    );
    // No db rules: FLUSHALL as it is.
    let mut t = transform("block_key_prefix = [\"x\"]");
    assert_eq!(
        run(&mut t, vec![cmd(0, 10, &["FLUSHALL"])]).0,
        ["0:FLUSHALL"]
    );
}

#[test]
fn swapdb_move_copy_and_flushdb_across_db_rules() {
    let mut t = transform("allow_db = [0, 1, 2]\ndb_map = { \"1\" = 5 }");
    let (out, _) = run(
        &mut t,
        vec![
            cmd(0, 10, &["SWAPDB", "1", "2"]),
            cmd(0, 20, &["SWAPDB", "7", "8"]),
            cmd(0, 30, &["MOVE", "k", "1"]),
            cmd(0, 40, &["MOVE", "k", "9"]),
            cmd(9, 50, &["MOVE", "k", "12"]),
            cmd(1, 60, &["COPY", "a", "b", "DB", "2", "REPLACE"]),
            cmd(1, 70, &["COPY", "a", "b", "DB", "9"]),
            cmd(1, 80, &["FLUSHDB"]),
            cmd(9, 90, &["FLUSHDB"]),
        ],
    );
    assert_eq!(
        out,
        [
            "0:SWAPDB 5 2",
            "20@0",
            "0:MOVE k 5",
            "0:DEL k",
            "50@9",
            "1:COPY a b DB 2 REPLACE",
            "70@1",
            "1:FLUSHDB",
            "90@9"
        ]
    );
    let status = Status::default();
    for (db, words, says) in [
        (0, &["SWAPDB", "0", "9"][..], "db 9 is filtered out"),
        (9, &["MOVE", "k", "0"][..], "db 9 is filtered out"),
        (
            9,
            &["COPY", "a", "b", "DB", "0"][..],
            "db 9 is filtered out",
        ),
    ] {
        let err = t.apply(vec![cmd(db, 1, words)], &status).unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
    }
    // Two source dbs written into one target db: FLUSHDB of one would empty the other's.
    let mut t = transform("db_map = { \"1\" = 5 }");
    let err = t
        .apply(vec![cmd(1, 1, &["FLUSHDB"])], &status)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("source dbs 5 into the same target db 5"),
        "{err}"
    );
}

#[test]
fn ttls_are_extended_in_keys_and_commands() {
    let mut t = transform("ttl_extend = 100");
    let far = now_ms() + 3_600_000;
    let (out, _) = run(
        &mut t,
        vec![
            key(0, "k", ferry_rdb::TypeByte::STRING, Some(far)),
            key(0, "old", ferry_rdb::TypeByte::STRING, Some(1)),
            cmd(0, 10, &["SET", "a", "1", "EX", "10"]),
            cmd(0, 20, &["EXPIRE", "a", "-1"]),
        ],
    );
    assert_eq!(
        out,
        [
            format!("key 0:k at {}", far + 100_000),
            "key 0:old at 1".to_string(),
            "0:SET a 1 EX 110".to_string(),
            "0:EXPIRE a -1".to_string(),
        ]
    );
    let meta = Arc::new(ferry_rdb::KeyMeta {
        db: 0,
        key: Bytes::from_static(b"big"),
        expire_ms: Some(far),
        idle: None,
        freq: None,
        type_byte: ferry_rdb::TypeByte::LIST_QUICKLIST_2,
        key_metadata: None,
    });
    let status = Status::default();
    let out = t.apply(vec![Entry::BigEnd(meta)], &status).unwrap();
    let Entry::BigEnd(meta) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(meta.expire_ms, Some(far + 100_000));
}

#[test]
fn the_db_map_selects_the_target_db_and_the_checkpoint_keeps_the_source_db() {
    let mut enc = Encoder::new().with_checkpoint(b"cp".to_vec());
    enc.db_map = DbMap::new([(1, 5)].into());
    let id = "0123456789012345678901234567890123456789";
    enc.push(Entry::SyncStart {
        replid: Bytes::from(id),
        offset: 5,
        snapshot: false,
        clear_target: false,
    })
    .unwrap();
    enc.push(cmd(1, 10, &["INCR", "a"])).unwrap();
    enc.push(cmd(0, 20, &["INCR", "b"])).unwrap();
    enc.push(cmd(1, 30, &["INCR", "c"])).unwrap();
    let (out, _) = enc.take();
    let text = String::from_utf8_lossy(&out).replace("\r\n", " ");
    let selects: Vec<&str> = text
        .match_indices("SELECT $1 ")
        .map(|(i, _)| &text[i + 10..i + 11])
        .collect();
    // Target db 5 for source db 1, then db 0 for source db 0 and for the checkpoint key.
    assert_eq!(selects, ["5", "0", "5", "0"], "{text}");
    assert!(text.contains(&format!("{id} 30 1")), "{text}");
}

/// A command whose huge argument went in pieces (through a temporary key and the script
/// that applies it), as the stream reader passes it on.
fn in_pieces(db: u32, words: &[&[u8]]) -> Batch {
    let mut wire = bytes::BytesMut::new();
    ferry_resp::encode_command(&mut wire, words);
    let (mut offset, mut out) = (0, Vec::new());
    let mut s = crate::source::split::Split::start(
        &mut wire,
        &mut offset,
        (db, false, true, Some(13)),
        &mut out,
    )
    .unwrap();
    s.feed(&mut wire, &mut offset, &mut out).unwrap();
    assert!(s.done());
    out
}

/// Names and keys of what is kept, values shortened.
fn brief(batch: &Batch) -> Vec<String> {
    batch
        .iter()
        .map(|e| match e {
            Entry::Command(c) => match split::parse_arg_script(&c.args) {
                Some((_, inner)) => format!(
                    "script {}",
                    inner[..inner.len().min(3)]
                        .iter()
                        .map(|a| String::from_utf8_lossy(&a[..a.len().min(20)]).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                None => format!(
                    "{} {}",
                    String::from_utf8_lossy(&c.args[0]),
                    String::from_utf8_lossy(c.args[1..].first().map_or(&b""[..], |a| &a[..]))
                ),
            },
            Entry::Offset { .. } => "offset".into(),
            _ => "other".into(),
        })
        .collect()
}

#[test]
fn a_command_in_pieces_is_judged_as_the_source_sent_it() {
    let status = Status::default();
    let huge = vec![b'v'; crate::source::split::SPLIT_BYTES as usize];
    let batch = || in_pieces(0, &[b"RPUSH", b"user:list", &huge]);
    let n = batch().len();
    // Only user: keys, or no RPUSH, or no lists: the script goes, its pieces and the DEL
    // of their temporary key stay (they are ferry's own keys).
    for rules in [
        "block_key_prefix = [\"user:\"]",
        "block_command = [\"RPUSH\"]",
        "block_command_group = [\"list\"]",
        "block_type = [\"list\"]",
    ] {
        let out = transform(rules).apply(batch(), &status).unwrap();
        let got = brief(&out);
        assert_eq!(got.len(), n, "{rules}");
        assert_eq!(got[n - 2], "offset", "{rules}: {got:?}");
        assert!(
            got[n - 1].starts_with("DEL __ferry:arg:{"),
            "{rules}: {got:?}"
        );
        assert!(got[0].starts_with("SET __ferry:arg:{"), "{rules}: {got:?}");
    }
    // Allowed: the pieces pass even an allow list that does not name ferry's keys.
    let out = transform("allow_key_prefix = [\"user:\"]")
        .apply(batch(), &status)
        .unwrap();
    let got = brief(&out);
    assert!(
        got[n - 2].starts_with("script RPUSH user:list __ferry:arg:{"),
        "{got:?}"
    );
    // A db left out leaves everything out.
    let out = transform("block_db = [0]").apply(batch(), &status).unwrap();
    assert!(brief(&out).iter().all(|g| g == "offset"));
}

#[test]
fn a_command_in_pieces_gets_its_ttl_extended_and_its_blocked_keys_cut() {
    let status = Status::default();
    let huge = vec![b'v'; crate::source::split::SPLIT_BYTES as usize];
    let out = transform("ttl_extend = 1000")
        .apply(in_pieces(0, &[b"SETEX", b"k", b"100", &huge]), &status)
        .unwrap();
    let script = brief(&out);
    assert!(
        script.iter().any(|g| g == "script SETEX k 1100"),
        "{script:?}"
    );
    // MSET cut down to its allowed keys: the huge value's key blocked, a plain MSET left.
    let out = transform("block_keys = [\"{a}2\"]")
        .apply(
            in_pieces(0, &[b"MSET", b"{a}1", b"v", b"{a}2", &huge]),
            &status,
        )
        .unwrap();
    assert!(
        brief(&out).iter().any(|g| g == "MSET {a}1"),
        "{:?}",
        brief(&out)
    );
    let out = transform("block_keys = [\"{a}1\"]")
        .apply(
            in_pieces(0, &[b"MSET", b"{a}1", b"v", b"{a}2", &huge]),
            &status,
        )
        .unwrap();
    assert!(
        brief(&out)
            .iter()
            .any(|g| g.starts_with("script MSET {a}2 __ferry:arg:{")),
        "{:?}",
        brief(&out)
    );
}
