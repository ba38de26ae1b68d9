//! ferry's engine: keeps a target Redis in one-way sync with a source Redis. It connects to the
//! source as a replica, copies its snapshot into the target, then applies every later write.
//! A library only: the `ferry` binary (and later the server) drive it.
//!
//! The public surface: [`spec::TaskSpec`] (a task's settings, serde both ways) →
//! [`config::TaskConfig::build`] → [`task::Task::start`] → [`task::TaskHandle`] (status,
//! [`status::events`], pause, resume, stop, join); [`check::run`] and [`verify::run`] for the
//! precheck and a verification; [`error::Error`] with its `code()` and `retry()`.
//!
//! Layout, roughly in the order data flows. No two modules import each other, directly or
//! through others; `spec`, `net` and `status` know nothing of tasks.
//! - [`spec`]: a task's settings as written (TOML or JSON), passwords held apart; pure.
//! - [`config`]: a spec validated, its files read, the engine's objects built: `TaskConfig`.
//! - [`net`]: server URLs, TLS, sockets, RESP connections, Sentinel, cluster topology.
//! - `source` (internal): the replica client (`psync`), the snapshot parser bridge (`snapshot`), huge
//!   commands in pieces (`split`), the heartbeat written on the source.
//! - `pipeline` (internal): what flows (`entry`), filters and db mapping (`transform`), the Lua step
//!   (`script`), the relay to the sinks, fan-out to several targets, the spool on disk.
//! - `sink` (internal): entries to commands (`encode`), the standalone writer and the cluster router,
//!   the checkpoint and the lease kept in the target, conflicts with data already there.
//! - [`status`]: what a running task reports, its typed events (the one source of its log
//!   lines, metrics and subscribers), latency percentiles, write limits (`throttle`).
//! - [`check`]: the precheck (will this work?); [`verify`]: compare target and source.
//! - [`task`]: one sync task joining them.
//! - [`error`]: the engine's errors and how they are retried; [`text`]: bytes in messages;
//!   [`workers`]: threads shared by every task for work tied to one thread (Lua).

pub mod check;
pub mod config;
pub mod error;
pub mod net;
pub(crate) mod pipeline;
pub(crate) mod sink;
pub(crate) mod source;
pub mod spec;
pub mod status;
pub mod task;
pub mod text;
pub mod verify;
pub mod workers;

pub use error::{Error, Result};
