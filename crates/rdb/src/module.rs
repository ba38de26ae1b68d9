//! Module type ids: a module value (and module aux data) starts with a 64-bit id packing the
//! module type's 9-character name (6 bits a character) and its 10-bit encoding version.

use std::fmt;

use crate::length::read_length;
use crate::reader::Reader;

const CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A module type, as named in `MODULE LIST` and module type registration ("ReJSON-RL").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleType {
    pub name: String,
    pub encver: u64,
}

impl ModuleType {
    pub fn from_id(id: u64) -> ModuleType {
        let name = (0..9)
            .map(|i| CHARS[((id >> (58 - 6 * i)) & 63) as usize] as char)
            .collect();
        ModuleType {
            name,
            encver: id & 1023,
        }
    }

    /// The type of a module value from its raw bytes (as in a `Record`), which start with the
    /// id as an RDB length; None when they do not.
    pub fn of_value(raw: &[u8]) -> Option<ModuleType> {
        let mut rd = Reader::with_buffer(raw, false, raw.len());
        read_length(&mut rd).ok().map(ModuleType::from_id)
    }
}

impl fmt::Display for ModuleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (encver {})", self.name, self.encver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        // "ReJSON-RL" encver 3, as Redis computes it.
        let mut id = 0u64;
        for c in b"ReJSON-RL" {
            id = (id << 6) | CHARS.iter().position(|x| x == c).unwrap() as u64;
        }
        id = (id << 10) | 3;
        let t = ModuleType::from_id(id);
        assert_eq!((t.name.as_str(), t.encver), ("ReJSON-RL", 3));
        let mut raw = vec![0x81];
        raw.extend_from_slice(&id.to_be_bytes());
        assert_eq!(ModuleType::of_value(&raw), Some(t));
        assert_eq!(ModuleType::of_value(&[0x05]).map(|t| t.encver), Some(5));
        assert_eq!(
            ModuleType::of_value(&[0x41, 0x02]).map(|t| t.encver),
            Some(0x102)
        );
        assert_eq!(ModuleType::of_value(&[0x81, 1]), None);
    }
}
