//! The sandbox and the entry conversion, without servers: scripts given as text.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_rdb::{Chunk, KeyMeta, Record, TypeByte};

use super::{Limits, LuaTransform, ScriptError};
use crate::pipeline::entry::{Command, Entry};

fn load(code: &str) -> Result<LuaTransform, ScriptError> {
    LuaTransform::new("test.lua", code, Limits::default())
}

fn script(code: &str) -> LuaTransform {
    load(code).unwrap_or_else(|e| panic!("script does not load: {e}"))
}

fn meta(db: u64, key: &str, type_byte: TypeByte, expire_ms: Option<i64>) -> KeyMeta {
    KeyMeta {
        db,
        key: Bytes::from(key.to_string()),
        expire_ms,
        idle: None,
        freq: None,
        type_byte,
        key_metadata: None,
    }
}

fn key(db: u64, name: &str, type_byte: TypeByte) -> Entry {
    Entry::Key(Record {
        meta: meta(db, name, type_byte, Some(1_900_000_000_000)),
        raw: Bytes::from_static(b"\x05hello"),
    })
}

fn cmd(db: u32, args: &[&str], end_offset: u64) -> Command {
    let mut raw = BytesMut::new();
    ferry_resp::encode_command(&mut raw, args);
    Command {
        db,
        target_db: None,
        args: args.iter().map(|a| Bytes::from(a.to_string())).collect(),
        raw: raw.freeze(),
        end_offset,
        slot: None,
    }
}

fn encoded(args: &[&str]) -> Bytes {
    let mut raw = BytesMut::new();
    ferry_resp::encode_command(&mut raw, args);
    raw.freeze()
}

/// The one entry (or none) the script made of an entry.
fn one(result: Result<Vec<Entry>, ScriptError>) -> Option<Entry> {
    let out = result.unwrap_or_else(|e| panic!("the script failed: {e}"));
    assert!(out.len() <= 1, "{out:?}");
    out.into_iter().next()
}

fn error<T>(result: Result<T, ScriptError>) -> String {
    match result {
        Ok(_) => panic!("the script should fail"),
        Err(e) => e.to_string(),
    }
}

const PREFIX: &str = r#"
function transform(entry)
  if entry.kind == "key" then
    entry.key = "p:" .. entry.key
  else
    for _, i in ipairs(entry.keys) do entry.args[i] = "p:" .. entry.args[i] end
  end
  return entry
end
"#;

#[test]
fn a_renamed_key_keeps_its_payload_expiry_and_type() {
    let mut t = script(PREFIX);
    let Some(Entry::Key(r)) = one(t.apply(key(3, "a", TypeByte::LIST_QUICKLIST_2))) else {
        panic!("not a key");
    };
    assert_eq!(&r.meta.key[..], b"p:a");
    assert_eq!(r.meta.db, 3);
    assert_eq!(r.meta.type_byte, TypeByte::LIST_QUICKLIST_2);
    assert_eq!(r.meta.expire_ms, Some(1_900_000_000_000));
    assert_eq!(&r.raw[..], b"\x05hello");
}

#[test]
fn the_script_sees_type_db_and_expiry_and_may_change_db_and_expiry() {
    let mut t = script(
        r#"
        function transform(e)
          assert(e.kind == "key" and e.type == "hash" and e.db == 2 and e.expire_ms == 1900000000000)
          e.db = 5
          e.expire_ms = nil
          return e
        end"#,
    );
    let Some(Entry::Key(r)) = one(t.apply(key(2, "h", TypeByte::HASH_LISTPACK))) else {
        panic!("not a key");
    };
    assert_eq!((r.meta.db, r.meta.expire_ms), (5, None));
}

#[test]
fn nil_drops_a_key_and_turns_a_command_into_its_offset() {
    let mut t = script("function transform(e) return nil end");
    assert!(one(t.apply(key(0, "a", TypeByte::STRING))).is_none());
    let Some(Entry::Offset { offset, db }) =
        one(t.apply(Entry::Command(cmd(4, &["SET", "a", "1"], 777))))
    else {
        panic!("a dropped command must leave its offset");
    };
    assert_eq!((offset, db), (777, 4));
}

#[test]
fn command_keys_are_renamed_by_their_positions_and_reencoded() {
    let mut t = script(PREFIX);
    let c = cmd(0, &["lmove", "src", "dst", "LEFT", "RIGHT"], 10);
    let Some(Entry::Command(out)) = one(t.apply(Entry::Command(c))) else {
        panic!("not a command");
    };
    // The name keeps the case it came in; only the keys change.
    assert_eq!(
        out.raw,
        encoded(&["lmove", "p:src", "p:dst", "LEFT", "RIGHT"])
    );
    assert_eq!(out.args.len(), 5);
    assert_eq!((out.db, out.target_db, out.end_offset), (0, None, 10));
    let c = cmd(0, &["MSET", "a", "1", "b", "2"], 11);
    let Some(Entry::Command(out)) = one(t.apply(Entry::Command(c))) else {
        panic!("not a command");
    };
    assert_eq!(out.raw, encoded(&["MSET", "p:a", "1", "p:b", "2"]));
}

#[test]
fn a_command_moved_to_another_db_keeps_its_source_db_for_the_checkpoint() {
    let mut t = script(
        r#"function transform(e)
             if e.kind == "command" and e.args[1]:sub(1, 4) == "old:" then e.db = 7 end
             return e
           end"#,
    );
    let c = cmd(1, &["SET", "old:x", "v"], 50);
    let raw = c.raw.clone();
    let Some(Entry::Command(out)) = one(t.apply(Entry::Command(c))) else {
        panic!("not a command");
    };
    assert_eq!((out.db, out.target_db, out.db_on_target()), (1, Some(7), 7));
    // Nothing but the db changed: the bytes go as they came.
    assert_eq!(out.raw, raw);
    let Some(Entry::Command(out)) =
        one(t.apply(Entry::Command(cmd(1, &["SET", "new:x", "v"], 60))))
    else {
        panic!("not a command");
    };
    assert_eq!(out.target_db, None);
}

#[test]
fn the_script_sees_the_commands_of_a_transaction_but_not_its_bounds() {
    let mut t = script(
        r#"function transform(e)
             if e.command == "MULTI" or e.command == "EXEC" then error("saw a bound") end
             return e
           end"#,
    );
    for args in [&["MULTI"][..], &["EXEC"][..]] {
        let Some(Entry::Command(out)) = one(t.apply(Entry::Command(cmd(0, args, 5)))) else {
            panic!("a bound must pass");
        };
        assert_eq!(&out.args[0][..], args[0].as_bytes());
    }
    assert!(t.apply(Entry::Command(cmd(0, &["INCR", "n"], 6))).is_ok());
}

#[test]
fn a_big_key_follows_the_decision_made_at_its_start() {
    let mut t = script(PREFIX);
    let start = Arc::new(meta(0, "big", TypeByte::LIST_QUICKLIST_2, None));
    let Some(Entry::BigStart(to)) = one(t.apply(Entry::BigStart(start.clone()))) else {
        panic!("not a start");
    };
    assert_eq!(&to.key[..], b"p:big");
    let chunk = Chunk::ListItems(vec![Bytes::from_static(b"x")]);
    let Some(Entry::BigChunk(m, _)) = one(t.apply(Entry::BigChunk(start.clone(), chunk))) else {
        panic!("not a chunk");
    };
    assert!(Arc::ptr_eq(&m, &to));
    let Some(Entry::BigEnd(m)) = one(t.apply(Entry::BigEnd(start))) else {
        panic!("not an end");
    };
    assert!(Arc::ptr_eq(&m, &to));

    let mut t =
        script(r#"function transform(e) if e.type == "list" then return nil end return e end"#);
    let start = Arc::new(meta(0, "big", TypeByte::LIST_QUICKLIST_2, None));
    assert!(one(t.apply(Entry::BigStart(start.clone()))).is_none());
    let chunk = Chunk::ListItems(vec![Bytes::from_static(b"x")]);
    assert!(one(t.apply(Entry::BigChunk(start.clone(), chunk))).is_none());
    assert!(one(t.apply(Entry::BigEnd(start))).is_none());
}

#[test]
fn ferrys_own_keys_are_neither_shown_nor_made() {
    let mut t = script(r#"function transform(e) error("saw " .. e.key) end"#);
    assert!(one(t.apply(key(0, "__ferry:checkpoint:x", TypeByte::STRING))).is_some());
    let mut t = script(r#"function transform(e) e.key = "__ferry:checkpoint:x" return e end"#);
    let e = error(t.apply(key(0, "a", TypeByte::STRING)));
    assert!(e.contains("test.lua:1:") && e.contains("__ferry:"), "{e}");
    let mut t = script(r#"function transform(e) e.args[1] = "__ferry:x" return e end"#);
    let e = error(t.apply(Entry::Command(cmd(0, &["SET", "a", "1"], 1))));
    assert!(e.contains("__ferry:"), "{e}");
}

#[test]
fn what_cannot_be_written_is_refused_naming_the_function_line() {
    let cases = [
        (r#"return "yes""#, "returned a string"),
        (r#"e.type = "set" return e"#, "type"),
        (r#"e.db = -1 return e"#, "db"),
        (r#"e.db = "x" return e"#, "db"),
        (r#"e.key = 5 return e"#, "key"),
        (r#"e.expire_ms = "soon" return e"#, "expire_ms"),
    ];
    for (body, needle) in cases {
        let mut t = script(&format!("\n\nfunction transform(e)\n {body}\nend"));
        let e = error(t.apply(key(0, "a", TypeByte::STRING)));
        assert!(
            e.starts_with("transform script test.lua:3: transform() "),
            "{e}"
        );
        assert!(
            e.contains(needle) && e.contains("key \"a\" in db 0"),
            "{body}: {e}"
        );
    }
    let mut t = script(r#"function transform(e) e.command = "MULTI" return e end"#);
    assert!(error(t.apply(Entry::Command(cmd(0, &["SET", "a", "1"], 1)))).contains("MULTI"));
    let mut t = script(r#"function transform(e) e.args[2] = {} return e end"#);
    assert!(error(t.apply(Entry::Command(cmd(0, &["SET", "a", "1"], 1)))).contains("args[2]"));
}

#[test]
fn a_runtime_error_names_the_file_and_line() {
    let mut t = script("function transform(e)\n  local x = nil\n  return x.y\nend");
    let e = error(t.apply(key(0, "a", TypeByte::STRING)));
    assert!(
        e.starts_with("transform script test.lua:3: attempt to index"),
        "{e}"
    );
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn syntax_errors_and_a_missing_function_fail_at_load() {
    let e = error(load("function transform(e)\n return e\nen"));
    assert!(e.starts_with("transform script test.lua:3:"), "{e}");
    let e = error(load("transform = 5"));
    assert!(e.contains("defines no function transform"), "{e}");
}

#[test]
fn the_sandbox_has_no_files_processes_modules_or_loaders() {
    for (code, needle) in [
        (r#"io.open("/etc/passwd")"#, "io is not available"),
        (r#"os.execute("true")"#, "os is not available"),
        (r#"require("socket")"#, "require is not available"),
        (r#"debug.getinfo(1)"#, "debug is not available"),
        (r#"package.loadlib("x", "y")"#, "package is not available"),
        (r#"load("return 1")"#, "global 'load'"),
        (r#"dofile("/etc/passwd")"#, "global 'dofile'"),
        (r#"loadfile("/etc/passwd")"#, "global 'loadfile'"),
        (r#"string.dump(print)"#, "field 'dump'"),
        (r#"coroutine.wrap(print)"#, "global 'coroutine'"),
    ] {
        // At load...
        let e = error(load(&format!(
            "\n{code}\nfunction transform(e) return e end"
        )));
        assert!(
            e.starts_with("transform script test.lua:2: ") && e.contains(needle),
            "{code}: {e}"
        );
        // ...and in a call.
        let mut t = script(&format!("function transform(e)\n {code}\n return e\nend"));
        let e = error(t.apply(key(0, "a", TypeByte::STRING)));
        assert!(
            e.starts_with("transform script test.lua:2: ") && e.contains(needle),
            "{code}: {e}"
        );
    }
    // What a script does need is there.
    let mut t = script(
        r#"function transform(e)
             print("seen", e.key, nil, 1)
             e.key = string.upper(e.key) .. table.concat({"-", math.floor(2.5)}) .. utf8.char(233)
             return e
           end"#,
    );
    let Some(Entry::Key(r)) = one(t.apply(key(0, "a", TypeByte::STRING))) else {
        panic!("not a key");
    };
    assert_eq!(&r.meta.key[..], "A-2é".as_bytes());
}

#[test]
fn an_endless_loop_is_stopped_by_the_time_limit() {
    let limits = Limits {
        time: Duration::from_millis(50),
        ..Limits::default()
    };
    let mut t = LuaTransform::new(
        "loop.lua",
        "function transform(e)\n  while true do\n  end\nend",
        limits,
    )
    .unwrap();
    let e = error(t.apply(key(0, "a", TypeByte::STRING)));
    assert!(e.starts_with("transform script loop.lua:"), "{e}");
    assert!(e.contains("longer than 50 ms"), "{e}");
    // The state is still usable by a call that ends: the clock starts again for each call.
    let mut t = LuaTransform::new(
        "slow.lua",
        "n = 0\nfunction transform(e)\n  n = n + 1\n  if n == 1 then while true do end end\n  return e\nend",
        limits,
    )
    .unwrap();
    assert!(t.apply(key(0, "a", TypeByte::STRING)).is_err());
    assert!(one(t.apply(key(0, "a", TypeByte::STRING))).is_some());
}

#[test]
fn memory_is_bounded() {
    let limits = Limits {
        memory: 8 << 20,
        ..Limits::default()
    };
    let mut t = LuaTransform::new(
        "mem.lua",
        "function transform(e)\n  local t = {}\n  for i = 1, 1e8 do t[i] = i end\n  return e\nend",
        limits,
    )
    .unwrap();
    let e = error(t.apply(key(0, "a", TypeByte::STRING)));
    assert!(e.contains("out of memory (limit 8 MiB)"), "{e}");
}

#[test]
fn a_command_may_become_several_applied_together() {
    let mut t = script(
        r#"function transform(e)
             if e.command ~= "DEL" then return e end
             local a = {kind = "command", db = 5, command = "DEL", args = {e.args[1]}}
             local b = {kind = "command", db = e.db, command = "DEL", args = {e.args[2]}}
             return {a, b}
           end"#,
    );
    let out = t
        .apply(Entry::Command(cmd(0, &["DEL", "x", "y"], 40)))
        .unwrap();
    let shown: Vec<(String, Option<u32>, u64)> = out
        .iter()
        .map(|e| match e {
            Entry::Command(c) => (
                String::from_utf8_lossy(&c.raw).into_owned(),
                c.target_db,
                c.end_offset,
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    let text = |args: &[&str]| String::from_utf8_lossy(&encoded(args)).into_owned();
    // Outside a transaction of the source's: wrapped in one of their own.
    assert_eq!(
        shown,
        [
            (text(&["MULTI"]), None, 40),
            (text(&["DEL", "x"]), Some(5), 40),
            (text(&["DEL", "y"]), None, 40),
            (text(&["EXEC"]), None, 40),
        ]
    );
    // Inside one: applied within it.
    assert!(one(t.apply(Entry::Command(cmd(0, &["MULTI"], 50)))).is_some());
    assert_eq!(
        t.apply(Entry::Command(cmd(0, &["DEL", "x", "y"], 60)))
            .unwrap()
            .len(),
        2
    );
    assert!(one(t.apply(Entry::Command(cmd(0, &["EXEC"], 70)))).is_some());
    // An empty list drops it; a key cannot become a list.
    let mut t = script(r#"function transform(e) return {} end"#);
    assert!(matches!(
        one(t.apply(Entry::Command(cmd(0, &["DEL", "x"], 80)))),
        Some(Entry::Offset { offset: 80, db: 0 })
    ));
    let e = error(t.apply(key(0, "a", TypeByte::STRING)));
    assert!(e.contains("without kind"), "{e}");
}
