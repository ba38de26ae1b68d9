//! Sources of entries. `psync` acts as a replica of a live server: handshake, snapshot, then the
//! command stream. `snapshot` turns RDB bytes into entries on a thread of its own.

pub mod payload_check;
pub mod psync;
pub mod snapshot;
pub mod split;
