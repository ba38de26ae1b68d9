//! Sources of entries. `psync` acts as a replica of a live server: handshake, snapshot, then the
//! command stream. `snapshot` turns RDB bytes into entries on a thread of its own; `split`
//! passes a huge command on in pieces; `heartbeat` writes the key whose return measures latency.

pub mod heartbeat;
pub mod payload_check;
pub mod psync;
pub mod scan;
pub mod snapshot;
pub mod split;
