//! RESP2 and RESP3, the Redis wire protocol: frames, incremental decoding and encoding.
//!
//! The crate is pure: no I/O, no async. Bytes go in, [`Frame`]s come out, and back.
//!
//! # Layout
//!
//! - `frame.rs`: the wire value, [`Frame`], its accessors and a readable
//!   `redis-cli`-like [`Display`](std::fmt::Display).
//! - `check.rs`: [`check`] walks the start of a buffer without allocating and answers
//!   "complete, `n` bytes", "incomplete" or "invalid", holding the peer to [`Limits`].
//! - `decode.rs`: [`parse`] builds the frame found by [`check`] with zero-copy payloads;
//!   [`Decoder`] splits frames off a read buffer.
//! - `encode.rs`: [`encode_command`] and [`encode_frame`] append to a [`BytesMut`].
//! - `number.rs`: decimal integers and doubles, read the way Redis reads them.
//! - `error.rs`: [`Error`], the protocol violations, each with small static context.
//!
//! # Decoding in two steps
//!
//! "Need more bytes" is not an error. [`check`] answers `Ok(None)` for every strict prefix of a
//! valid frame, and `Err` as soon as the bytes are known to be wrong. Only a complete frame is
//! parsed and consumed. No length sent by the peer is trusted: it is held to [`Limits`] and to
//! the bytes actually present before anything is reserved, and nesting is bounded.
//!
//! ```
//! use bytes::BytesMut;
//! use ferry_resp::{Decoder, Frame, Limits, encode_command};
//!
//! let mut wire = BytesMut::new();
//! encode_command(&mut wire, &["SET", "key", "value"]);
//! let mut decoder = Decoder::new(Limits::default());
//!
//! let mut buf = BytesMut::from(&wire[..5]);
//! assert_eq!(decoder.decode(&mut buf).unwrap(), None); // incomplete: wait for more
//! buf.extend_from_slice(&wire[5..]);
//! let (frame, raw) = decoder.decode(&mut buf).unwrap().unwrap();
//! assert_eq!(raw, wire);
//! assert_eq!(frame.command_args().unwrap(), vec!["SET", "key", "value"]);
//! assert_eq!(frame.to_string(), r#"["SET", "key", "value"]"#);
//! ```

mod check;
mod decode;
mod encode;
mod error;
mod frame;
mod number;

pub use check::{DEPTH_CEILING, Limits, check};
pub use decode::{CommandArgs, Decoder, parse};
pub use encode::{encode_command, encode_frame};
pub use error::Error;
pub use frame::Frame;

#[doc(no_inline)]
pub use bytes::{Bytes, BytesMut};
