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
//! - `keys.rs`: [`keys`] finds the key arguments of a command, what it does to each
//!   ([`Access`]) and whether it can be cut per slot ([`Kind`]), for every command a
//!   replication stream can hold.
//! - `split.rs`: [`split_by_slot`] cuts `DEL`, `MSET` and their kin into one command per
//!   slot; [`retain_keys`] keeps only some of their keys.
//! - `group.rs`: [`group`], the command group of each command (`string`, `sorted_set`,
//!   `generic`...), as Redis names them, for filters by group or by type of value.
//!
//! ```
//! use ferry_keyspace::{Keys, Kind, keys, slot, split_by_slot};
//!
//! let cmd = ["MSET", "{user1}.name", "Ada", "{user2}.name", "Alan"];
//! let Keys::Keyed(k) = keys(&cmd) else { unreachable!() };
//! assert_eq!(k.kind(), Kind::Split);
//! assert_eq!(k.slot(&cmd), None); // two slots: cut it
//! let parts = split_by_slot(&cmd).unwrap();
//! assert_eq!(parts[0].0, slot(b"user1"));
//! assert_eq!(parts[1].1, ["MSET", "{user2}.name", "Alan"]);
//! ```
#![warn(missing_docs)]

mod group;
mod keys;
mod slot;
mod split;

pub use group::{GROUPS, Group, group};
pub use keys::{Access, KeyArg, KeyArgs, Keys, Kind, keys, keys_before};
pub use slot::{SLOTS, SlotTags, slot};
pub use split::{retain_keys, split_by_slot};
