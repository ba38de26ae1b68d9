//! ferry's engine: keeps a target Redis in one-way sync with a source Redis. It connects to the
//! source as a replica, copies its snapshot into the target, then applies every later write.
//! A library only: the `ferry` binary (and later the server) drive it.
//!
//! Layout, in the order data flows:
//! - [`spec`]: a task's settings (TOML file and flags) checked into a `TaskConfig`.
//! - [`net`]: server URLs, TLS, sockets, RESP connections, Sentinel, cluster topology.
//! - [`source`]: the replica client (`psync`), the snapshot parser bridge (`snapshot`), huge
//!   commands in pieces (`split`), the heartbeat written on the source.
//! - [`pipeline`]: what flows (`entry`), filters and db mapping (`transform`), the Lua step
//!   (`script`), the relay to the sinks, fan-out to several targets, the spool on disk.
//! - [`sink`]: entries to commands (`encode`), the standalone writer and the cluster router,
//!   the checkpoint and the lease kept in the target, conflicts with data already there.
//! - [`status`]: what a running task reports; latency percentiles; write limits (`throttle`).
//! - [`check`]: the precheck (will this work?); [`verify`]: compare target and source.
//! - [`task`]: one sync task joining them.
//! - [`error`]: the engine's errors.

pub mod check;
pub mod config;
pub mod error;
pub mod net;
pub mod pipeline;
pub mod sink;
pub mod source;
pub mod spec;
pub mod status;
pub mod task;
pub mod verify;
pub mod workers;

pub use error::{Error, Result};
