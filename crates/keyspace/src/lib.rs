//! Where Redis keys live, and which arguments of a command are keys.
//!
//! The crate is pure: no I/O, no async. ferry uses it to route replicated writes to the
//! nodes of a cluster target, to rename or filter keys inside commands, and to name its own
//! keys in a chosen slot.
//!
//! # Layout
//!
//! - `slot.rs`: [`slot`], the Redis Cluster hash slot of a key, and [`SlotTags`], a tag for
//!   every slot so a key can be put in any slot on purpose.
mod slot;

pub use slot::{SLOTS, SlotTags, slot};
