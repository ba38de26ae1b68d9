//! What happens to entries between source and sink, in the order they pass: `entry` (what
//! flows), `transform` (filters, db mapping, TTL extension), `script` (the user's Lua step),
//! `relay` (one source's entries to the sinks, with the ACK offset), `fanout` (one stream into
//! several targets), `pause` (the handle's pause switch) and `spool` (the command stream on local disk while a target lags).

pub mod entry;
pub mod fanout;
pub mod pause;
pub mod relay;
pub mod script;
pub mod spool;
pub mod transform;
