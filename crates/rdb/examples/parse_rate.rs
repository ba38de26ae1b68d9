//! Parses an RDB file and prints the parse rate: `cargo run --release -p ferry-rdb
//! --example parse_rate -- FILE [-v] [--no-validate]` (`-v` prints every event;
//! `--no-validate` turns off [`Options::validate_values`], to measure what validation costs).

use std::time::Instant;

use ferry_rdb::{Event, Options, Parser};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: parse_rate FILE [-v]");
        std::process::exit(2);
    };
    let rest: Vec<String> = args.collect();
    let verbose = rest.iter().any(|a| a == "-v");
    let options = Options {
        validate_values: !rest.iter().any(|a| a == "--no-validate"),
        ..Options::default()
    };
    let file = std::fs::File::open(&path).expect("open");
    let start = Instant::now();
    let mut parser = Parser::new(file, options).expect("header");
    let (mut keys, mut big) = (0u64, 0u64);
    loop {
        match parser.next_event() {
            Ok(Some(ev)) => {
                if verbose {
                    println!("{ev:?}");
                }
                match ev {
                    Event::Key(_) => keys += 1,
                    Event::BigValueStart(_) => big += 1,
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes = parser.bytes_read();
    println!(
        "{keys} keys + {big} big values, {bytes} bytes in {secs:.3}s: {:.0} keys/s, {:.1} MB/s",
        (keys + big) as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}
