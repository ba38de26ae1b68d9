//! Redis Cluster hash slots, and tags that put a key in a chosen slot.

use crc::{CRC_16_XMODEM, Crc};

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

// Built at compile time, so `slot` costs no setup and no allocation.
const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_XMODEM);

/// The Redis Cluster hash slot of `key`: CRC16/XMODEM of its hash tag, modulo 16384.
///
/// The hash tag is what lies between the first `{` and the first `}` after it, when that is
/// not empty; otherwise the whole key is hashed. This is what lets an application (and
/// ferry) keep related keys on one node: `{user1000}.following` and `{user1000}.followers`
/// share a slot.
///
/// ```
/// use ferry_keyspace::slot;
/// assert_eq!(slot(b"foo"), 12182);
/// assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
/// assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
/// ```
pub fn slot(key: &[u8]) -> u16 {
    CRC16.checksum(hash_tag(key)) % SLOTS
}

/// The part of `key` that [`slot`] hashes.
fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let rest = &key[open + 1..];
    match rest.iter().position(|&b| b == b'}') {
        // `{}`: an empty tag does not count, so such keys still spread over all slots.
        Some(0) | None => key,
        Some(close) => &rest[..close],
    }
}

/// The characters tags are made of: readable in `redis-cli`, in logs and in shells, and
/// never `{` or `}`, which would change what is hashed.
const TAG_ALPHABET: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// The longest tag [`SlotTags`] holds. Three characters already reach every slot (the tests
/// check it); the fourth is headroom for the search, never used in practice.
const MAX_TAG: usize = 4;

/// For every slot, a short ASCII tag `T` such that a key containing `{T}` (and no `{`
/// before it) lies in that slot.
///
/// ferry names its own keys (checkpoints, temporaries) with these, so that on a cluster
/// target a key can be written in the very slot, and so in the same `MULTI`/`EXEC`, as the
/// data it belongs to. Tags are alphanumeric, at most 3 characters long in practice, and
/// the shortest such tag (first in `0-9a-zA-Z` order) for each slot, so the table is
/// the same on every run and every machine.
///
/// Building it hashes about a quarter of a million three-byte strings: a few milliseconds,
/// done once.
#[derive(Clone)]
pub struct SlotTags {
    /// `tags[slot]`: the tag's bytes, zero-padded, and its length.
    tags: Box<[([u8; MAX_TAG], u8)]>,
}

impl SlotTags {
    /// Builds the table for all 16384 slots.
    pub fn new() -> SlotTags {
        let mut tags = vec![([0u8; MAX_TAG], 0u8); usize::from(SLOTS)].into_boxed_slice();
        let mut missing = usize::from(SLOTS);
        let mut candidate = [0u8; MAX_TAG];
        // Shortest first, so every slot gets its shortest tag; stop as soon as all are found.
        'search: for len in 1..=MAX_TAG {
            let mut digits = [0usize; MAX_TAG];
            loop {
                for (c, &d) in candidate.iter_mut().zip(&digits).take(len) {
                    *c = TAG_ALPHABET[d];
                }
                let s = usize::from(CRC16.checksum(&candidate[..len]) % SLOTS);
                if tags[s].1 == 0 {
                    tags[s] = (candidate, len as u8);
                    missing -= 1;
                    if missing == 0 {
                        break 'search;
                    }
                }
                // Next candidate of this length, last character fastest.
                let mut i = len;
                loop {
                    if i == 0 {
                        continue 'search;
                    }
                    i -= 1;
                    digits[i] += 1;
                    if digits[i] < TAG_ALPHABET.len() {
                        break;
                    }
                    digits[i] = 0;
                }
            }
        }
        SlotTags { tags }
    }

    /// The tag of `slot`: `slot(format!("{{{tag}}}"))` is `slot`. Only the low 14 bits of
    /// `slot` are used (as Redis does), so any `u16` is accepted.
    pub fn tag(&self, slot: u16) -> &str {
        let (bytes, len) = &self.tags[usize::from(slot % SLOTS)];
        // The alphabet is ASCII, so this never fails; an empty tag would mean a slot the
        // search did not reach, which the tests rule out.
        std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("")
    }

    /// `prefix{T}suffix`, where `T` is the tag of `slot`: a key in `slot` whatever the
    /// suffix holds (only the first `{...}` counts).
    ///
    /// # Panics
    ///
    /// When `prefix` contains `{`: the first `{` of the key would then not be the tag's,
    /// and the key would land in another slot. Prefixes are ferry's own constants
    /// (`__ferry:`), so this is a programming error, not something input can cause.
    pub fn key_in_slot(&self, prefix: &[u8], slot: u16, suffix: &[u8]) -> Vec<u8> {
        assert!(
            !prefix.contains(&b'{'),
            "a key prefix must not contain '{{': it would change the key's hash tag"
        );
        let tag = self.tag(slot).as_bytes();
        let mut key = Vec::with_capacity(prefix.len() + tag.len() + 2 + suffix.len());
        key.extend_from_slice(prefix);
        key.push(b'{');
        key.extend_from_slice(tag);
        key.push(b'}');
        key.extend_from_slice(suffix);
        key
    }
}

impl Default for SlotTags {
    fn default() -> SlotTags {
        SlotTags::new()
    }
}

impl std::fmt::Debug for SlotTags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // 16384 entries would drown any log line that prints this.
        f.debug_struct("SlotTags").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_slots() {
        // Values from the Redis Cluster specification and redis-cli CLUSTER KEYSLOT.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"123456789"), 0x31C3 % SLOTS); // the CRC16/XMODEM check value
        assert_eq!(slot(b""), 0);
    }

    #[test]
    fn hash_tags() {
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"foo{bar"), b"foo{bar");
        assert_eq!(hash_tag(b"foo}bar{"), b"foo}bar{");
        assert_eq!(hash_tag(b"{"), b"{");
        assert_eq!(hash_tag(b"{}"), b"{}");
        assert_eq!(hash_tag(b"{a}"), b"a");
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn every_slot_has_a_short_tag() {
        let tags = SlotTags::new();
        for s in 0..SLOTS {
            let tag = tags.tag(s);
            assert!(!tag.is_empty() && tag.len() <= 3, "slot {s}: {tag:?}");
            assert!(tag.bytes().all(|b| b.is_ascii_alphanumeric()));
            assert_eq!(slot(format!("{{{tag}}}").as_bytes()), s, "tag {tag:?}");
        }
    }

    #[test]
    fn keys_in_slot() {
        let tags = SlotTags::new();
        for s in [0, 1, 5061, 12182, SLOTS - 1] {
            let key = tags.key_in_slot(b"__ferry:ckpt:", s, b":x{y}");
            assert_eq!(slot(&key), s);
            assert!(key.starts_with(b"__ferry:ckpt:{"));
            assert!(key.ends_with(b"}:x{y}"));
        }
        // Slots wrap like Redis's: only the low 14 bits count.
        assert_eq!(tags.tag(SLOTS), tags.tag(0));
    }

    #[test]
    #[should_panic(expected = "prefix")]
    fn prefix_with_brace_is_refused() {
        SlotTags::new().key_in_slot(b"a{b", 0, b"");
    }

    #[test]
    fn tables_are_deterministic() {
        let (a, b) = (SlotTags::new(), SlotTags::new());
        assert!((0..SLOTS).all(|s| a.tag(s) == b.tag(s)));
    }
}
