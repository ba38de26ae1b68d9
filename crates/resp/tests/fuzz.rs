//! A deterministic fuzz loop: random and mutated inputs through check, parse and the decoder.
//!
//! Properties: nothing panics; `check` finding a frame of `n` bytes means `parse` accepts
//! exactly those bytes; re-encoding a parsed frame is stable.

mod common;

use common::{encode, samples};
use ferry_resp::{Bytes, BytesMut, Decoder, Limits, check, encode_frame, parse};

/// xorshift64: small, fast, and the same sequence on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes that steer random input towards the grammar.
const ALPHABET: &[u8] = b"+-:$*_,#(!=%~>|\r\n\r\n0123456789-1tfinfnaxe.:";

fn random_input(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(40);
    (0..len)
        .map(|_| match rng.below(8) {
            0 => rng.next() as u8,
            _ => ALPHABET[rng.below(ALPHABET.len())],
        })
        .collect()
}

fn mutate(rng: &mut Rng, wire: &[u8]) -> Vec<u8> {
    let mut out = wire.to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if at < out.len() => out[at] = rng.next() as u8,
            1 if at < out.len() => out[at] = ALPHABET[rng.below(ALPHABET.len())],
            2 if at < out.len() => {
                out.remove(at);
            }
            3 => out.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
            _ => out.truncate(at),
        }
    }
    out
}

fn reencode(frame: &ferry_resp::Frame) -> Bytes {
    let mut out = BytesMut::new();
    encode_frame(frame, &mut out);
    out.freeze()
}

fn exercise(input: &[u8], limits: &Limits) {
    let checked = check(input, limits);
    if let Ok(Some(n)) = checked {
        let raw = Bytes::copy_from_slice(&input[..n]);
        let frame =
            parse(&raw).unwrap_or_else(|e| panic!("check ok, parse {e}: {}", raw.escape_ascii()));
        let _ = frame.to_string();
        let again = reencode(&frame);
        let reparsed =
            parse(&again).unwrap_or_else(|e| panic!("re-encoded {e}: {}", again.escape_ascii()));
        assert_eq!(reencode(&reparsed), again);
    }
    let whole = parse(&Bytes::copy_from_slice(input));
    if let Ok(Some(n)) = checked {
        assert_eq!(whole.is_ok(), n == input.len(), "{}", input.escape_ascii());
    }
    let mut buf = BytesMut::from(input);
    let decoded = Decoder::new(limits.clone()).decode(&mut buf);
    match (checked, decoded) {
        (Ok(None), Ok(None)) | (Err(_), Err(_)) => assert_eq!(&buf[..], input),
        (Ok(Some(n)), Ok(Some((_, raw)))) => assert_eq!(&raw[..], &input[..n]),
        (c, d) => panic!("check {c:?} but decode {d:?}"),
    }
    // The command decoder agrees with decode + command_args on every input.
    let mut a = BytesMut::from(input);
    let mut b = BytesMut::from(input);
    let framed = Decoder::new(limits.clone()).decode(&mut a);
    let commands = Decoder::new(limits.clone()).decode_command(&mut b);
    match (framed, commands) {
        (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
        (Ok(Some((frame, raw))), Ok(Some((args, raw2)))) => {
            assert_eq!(raw, raw2);
            match (frame.command_args(), args) {
                (Some(want), Ok(got)) => assert_eq!(got, want),
                (None, Err(other)) => assert_eq!(other, frame),
                (want, got) => panic!("command_args {want:?} but decode_command {got:?}"),
            }
        }
        (f, c) => panic!("decode {f:?} but decode_command {c:?}"),
    }
    assert_eq!(a, b);
}

#[test]
fn random_and_mutated_inputs() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let corpus: Vec<Bytes> = samples().iter().map(encode).collect();
    let small = Limits {
        max_bulk: 16,
        max_elements: 4,
        max_depth: 3,
        max_line: 12,
    };
    for round in 0..100_000 {
        let input = if round % 2 == 0 {
            random_input(&mut rng)
        } else {
            let pick = rng.below(corpus.len());
            mutate(&mut rng, &corpus[pick])
        };
        exercise(&input, &Limits::default());
        if round % 4 == 1 {
            exercise(&input, &small);
        }
    }
}

#[test]
fn frames_at_the_depth_ceiling_survive_every_operation() {
    let levels = ferry_resp::DEPTH_CEILING;
    let mut wire = b"*1\r\n".repeat(levels);
    wire.extend_from_slice(b"$1\r\nx\r\n");
    let frame = parse(&Bytes::from(wire.clone())).unwrap();
    assert!(
        frame
            .to_string()
            .ends_with(&format!("\"x\"{}", "]".repeat(levels)))
    );
    assert_eq!(&reencode(&frame)[..], &wire[..]);
}
