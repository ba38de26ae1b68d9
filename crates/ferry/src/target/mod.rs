//! Targets: turn entries into commands and pipeline them. `encode` is the part every target
//! shares (entry → RESP commands with what to expect back); `standalone` writes to one server.

pub mod caps;
pub mod encode;
pub mod standalone;
