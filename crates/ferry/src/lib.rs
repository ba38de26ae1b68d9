//! ferry keeps a target Redis in one-way sync with a source Redis: it connects to the source as a
//! replica, copies its snapshot into the target, then applies every later write.
//!
//! Modules, in the order data flows:
//! - [`endpoint`]: server URLs (`redis://user:pass@host:port`, `rediss://` for TLS).
//! - [`tls`]: TLS settings checked into one rustls config per side; handshake errors in words.
//! - [`socket`]: the byte stream under a connection, plain TCP or TLS.
//! - [`conn`]: one RESP connection: connect, log in, request/reply.
//! - [`source`]: the replica client (`psync`) and the snapshot parser bridge (`snapshot`).
//! - [`entry`]: what flows from source to target.
//! - [`transform`]: what to sync (key, db, type, command filters), db mapping, TTL extension.
//! - [`script`]: the Lua transform step, a user's script applied to each entry.
//! - [`target`]: entries to commands (`encode`) and the pipelined writer (`standalone`).
//! - [`task`]: one sync task joining them; [`status`] is what it reports.
//! - [`throttle`]: limits on the keys, commands and bytes per second written to the target.
//! - [`heartbeat`]: a key written on the source every second; [`latency`]: the time each takes
//!   to reach the target, as percentiles over the last minute.
//! - [`checkpoint`]: where the target stands in the source's stream, kept in the target.
//! - [`check`]: the precheck (`ferry check`, and `sync` before it starts): will this work?
//! - [`config`]: TOML file and flags into a checked `TaskConfig`.
//! - [`api`]: `GET /status`; [`progress`]: the terminal view.
//! - [`rdbtool`]: `ferry rdb inspect` and `ferry rdb stats`, reading an RDB file offline.

pub mod api;
pub mod check;
pub mod checkpoint;
pub mod config;
pub mod conn;
pub mod endpoint;
pub mod entry;
pub mod error;
pub mod fanout;
pub mod heartbeat;
pub mod latency;
pub mod progress;
pub mod rdbtool;
pub mod relay;
pub mod script;
pub mod sentinel;
pub mod socket;
pub mod source;
pub mod spool;
pub mod status;
pub mod target;
pub mod task;
pub mod throttle;
pub mod tls;
pub mod topology;
pub mod transform;
pub mod verify;

pub use error::{Error, Result};
