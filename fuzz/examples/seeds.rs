//! Writes seed inputs into `fuzz/corpus/` (git-ignored), so that nothing is copied from the
//! shared fixtures into the repository:
//!
//! - `corpus/rdb_parser/`: one input per value found in the RDB fixtures, laid out as the
//!   target's third reading expects (type byte, then the value's raw bytes), plus a small
//!   snapshot per value (header, the key, EOF) that the parser reads whole;
//! - `corpus/resp_decoder/`: a few frames of every RESP2/RESP3 type.
//!
//! The fixture files themselves are given to `cargo fuzz run` as a read-only second corpus
//! directory. Usage (from the repository root):
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds [FIXTURES_DIR]`

use std::fs;
use std::path::{Path, PathBuf};

use ferry_rdb::{Event, Options, Parser, crc64};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn write(dir: &Path, bytes: &[u8]) {
    fs::write(dir.join(format!("{:016x}", crc64(bytes))), bytes).expect("write seed");
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../../shared/fixtures/rdb"));
    let rdb = root.join("corpus/rdb_parser");
    let resp = root.join("corpus/resp_decoder");
    fs::create_dir_all(&rdb).expect("corpus dir");
    fs::create_dir_all(&resp).expect("corpus dir");

    let mut paths = Vec::new();
    files(&fixtures, &mut paths);
    // The project's own damaged-value files and the hand-built Valkey 9 snapshot go in whole.
    let mut own = Vec::new();
    files(&root.join("../crates/rdb/tests/data"), &mut own);
    for p in own.iter().filter(|p| p.extension().is_some_and(|e| e == "rdb")) {
        write(&rdb, &fs::read(p).expect("read"));
    }
    // At most this many values of each type byte: enough variety, a corpus that loads fast.
    let mut per_type = [0usize; 256];
    let mut values = 0;
    for path in paths {
        let Ok(data) = fs::read(&path) else { continue };
        let Ok(parser) = Parser::new(&data[..], Options::default()) else {
            continue;
        };
        let version = parser.rdb_version();
        for event in parser.flatten() {
            let Event::Key(r) = event else { continue };
            let seen = &mut per_type[usize::from(r.meta.type_byte.0)];
            if r.raw.len() > 4096 || *seen >= 32 {
                continue;
            }
            *seen += 1;
            let mut value = vec![r.meta.type_byte.0];
            value.extend_from_slice(&r.raw);
            write(&rdb, &value);
            let mut file = if version == 80 {
                b"VALKEY080".to_vec()
            } else {
                format!("REDIS{version:04}").into_bytes()
            };
            file.extend_from_slice(&[r.meta.type_byte.0, 1, b'k']);
            file.extend_from_slice(&r.raw);
            file.push(0xFF);
            if version >= 5 {
                file.extend_from_slice(&crc64(&file).to_le_bytes());
            }
            write(&rdb, &file);
            values += 1;
        }
    }

    let frames: &[&[u8]] = &[
        b"+OK\r\n",
        b"-ERR unknown command\r\n",
        b":-42\r\n",
        b"$5\r\nhello\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
        b"_\r\n",
        b",1.5e10\r\n",
        b",-inf\r\n",
        b"#t\r\n",
        b"(3492890328409238509324850943850943825024385\r\n",
        b"!21\r\nSYNTAX invalid syntax\r\n",
        b"=15\r\ntxt:Some string\r\n",
        b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
        b"~2\r\n+a\r\n:1\r\n",
        b">3\r\n+message\r\n+chan\r\n$2\r\nhi\r\n",
        b"|1\r\n+ttl\r\n:3600\r\n*2\r\n:1\r\n:2\r\n",
        b"*2\r\n*1\r\n%1\r\n~0\r\n_\r\n>0\r\n",
    ];
    for f in frames {
        write(&resp, f);
    }
    println!(
        "{values} values from {} into {}; {} RESP frames into {}",
        fixtures.display(),
        rdb.display(),
        frames.len(),
        resp.display()
    );
}
