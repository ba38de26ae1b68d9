//! Test kit for ferry: real Redis servers, datasets, workloads and comparison.
//!
//! Every ferry integration test (and the benchmark) runs against real `redis-server`
//! processes, never a mock. This crate holds what they share:
//!
//! - `server`: [`Server`], a `redis-server` child process on a free loopback port in its
//!   own temp dir, killed and removed on drop; [`redis_server_bin`] finds the binary
//!   (`$FERRY_REDIS_SERVER` or `PATH`); [`wait_until`] polls a condition with a deadline.
//! - [`workload`]: [`workload::populate`] writes a deterministic dataset holding every type
//!   and encoding; [`workload::Workload`] issues deterministic random writes that cover
//!   [`workload::REQUIRED_COMMANDS`]; [`workload::run_in_background`] runs one on a thread.
//! - [`compare`]: key-by-key equality of two sides, each a standalone server or a cluster
//!   ([`compare::Side`]): type, `DEBUG DIGEST-VALUE`, TTL, stream groups, function
//!   libraries, with a report naming each differing key.
//! - [`cluster`]: [`Cluster`], a real Redis Cluster (masters, replicas, slots split evenly)
//!   with live slot moves ([`Cluster::move_slot`], [`Cluster::begin_move`]) and
//!   [`Cluster::failover`]; the workload runs on it too ([`workload::populate_cluster`],
//!   [`workload::run_in_background_cluster`]).
//! - `sentinel`: [`Sentinel::start`] runs `redis-server --sentinel` processes over a
//!   master and its replicas ([`Server::start_replica_of`]); [`Sentinels::failover`].
//! - [`tls`]: [`tls::TlsFiles`], a CA and certificates made at test time as PEM files, for
//!   [`Server::start_tls`] (TLS on a second port, the plain one kept for the test itself).
//! - [`versions`]: other Redis / Valkey builds fetched by `scripts/fetch-redis-versions`
//!   into a cache; [`versions::available`] lists them, [`Server::start_bin`] starts one.
//!
//! Nothing here talks to a non-loopback address, uses a fixed port or shares state between
//! tests; waiting is always polling with a deadline.

pub mod cluster;
pub mod compare;
mod sentinel;
mod server;
pub mod tls;
pub mod versions;
mod wire;
pub mod workload;

pub use cluster::{Cluster, Migration};
pub use sentinel::{Sentinel, Sentinels};
pub use server::{Server, redis_server_bin, wait_until};
pub use wire::escape;
