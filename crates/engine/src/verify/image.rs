//! Where the sync puts each source key: the Lua transform first (it may rename the key, move
//! it to another db, change its expiry or drop it), then the `[filter]` rules (db, key and
//! type rules, `ttl_extend`), then the db map, in the order the sync applies them. The same
//! functions the sync calls, so a key the sync leaves out is not a difference.

use std::sync::Arc;

use bytes::Bytes;
use ferry_rdb::{KeyMeta, TypeByte};

use crate::error::Result;
use crate::pipeline::entry::OWN_KEY_PREFIX;
use crate::pipeline::script::{LuaTransform, Script};
use crate::pipeline::transform::{DbMap, Rules, ttl};

/// The key a source key should be on the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub db: u32,
    pub key: Bytes,
    /// Absolute unix ms, or None for a key without expiry.
    pub expire_ms: Option<i64>,
}

pub struct Mapper {
    rules: Option<Arc<Rules>>,
    db_map: DbMap,
    /// Its own Lua state: a Lua state stays on the thread that made it, and verify runs on one.
    script: Option<LuaTransform>,
}

impl Mapper {
    pub fn new(
        rules: Option<Arc<Rules>>,
        db_map: DbMap,
        script: Option<&Script>,
    ) -> Result<Mapper> {
        let script = match script {
            Some(s) => Some(s.start()?),
            None => None,
        };
        Ok(Mapper {
            rules,
            db_map,
            script,
        })
    }

    /// Whether a target key's origin can be worked out backwards (no script renames keys).
    pub fn invertible(&self) -> bool {
        self.script.is_none()
    }

    /// The image of source key `key` in `db`, of `kind` (as `TYPE` names it), expiring at
    /// `expire_ms`; None when the sync would not copy it.
    pub fn image(
        &self,
        db: u32,
        key: &Bytes,
        kind: &str,
        expire_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<Option<Image>> {
        if key.starts_with(OWN_KEY_PREFIX) {
            return Ok(None);
        }
        let mut meta = KeyMeta {
            db: u64::from(db),
            key: key.clone(),
            expire_ms,
            idle: None,
            freq: None,
            type_byte: type_byte(kind),
            key_metadata: None,
        };
        if let Some(script) = &self.script {
            match script.key_image(&meta)? {
                Some(m) => meta = m,
                None => return Ok(None),
            }
        }
        let db = u32::try_from(meta.db).unwrap_or(u32::MAX);
        if let Some(rules) = &self.rules {
            if !(rules.db_passes(db) && rules.key_passes(&meta.key) && rules.type_passes(kind)) {
                return Ok(None);
            }
            if rules.ttl_extend_ms > 0 {
                meta.expire_ms = meta
                    .expire_ms
                    .map(|at| ttl::extend_at(at, rules.ttl_extend_ms, now_ms));
            }
        }
        Ok(Some(Image {
            db: self.db_map.target(db),
            key: meta.key,
            expire_ms: meta.expire_ms,
        }))
    }

    /// For a key found in target db `db` (with no script): the source dbs it could have come
    /// from, of the `source_dbs` the source has, or none when the sync would not have written
    /// it there (a key the filter leaves out is the target's own business, not a difference).
    pub fn origins(&self, db: u32, key: &[u8], kind: &str, source_dbs: u32) -> Vec<u32> {
        if key.starts_with(OWN_KEY_PREFIX) {
            return Vec::new();
        }
        if let Some(rules) = &self.rules
            && !(rules.key_passes(key) && rules.type_passes(kind))
        {
            return Vec::new();
        }
        // A db keeps its number unless the map sends it elsewhere.
        let mut from: Vec<u32> = self
            .db_map
            .entries()
            .filter(|&(_, t)| t == db)
            .map(|(s, _)| s)
            .collect();
        if self.db_map.target(db) == db && !from.contains(&db) {
            from.push(db);
        }
        from.retain(|&s| s < source_dbs && self.rules.as_ref().is_none_or(|r| r.db_passes(s)));
        from.sort_unstable();
        from
    }
}

/// A type byte of the kind `TYPE` names: the script and the type rules see only the kind.
fn type_byte(kind: &str) -> TypeByte {
    match kind {
        "string" => TypeByte::STRING,
        "list" => TypeByte::LIST_QUICKLIST_2,
        "set" => TypeByte::SET,
        "zset" => TypeByte::ZSET_2,
        "hash" => TypeByte::HASH,
        "stream" => TypeByte::STREAM_LISTPACKS_3,
        _ => TypeByte::MODULE_2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::FilterSection;

    fn rules(section: FilterSection) -> Option<Arc<Rules>> {
        Some(Arc::new(Rules::build(&section).unwrap()))
    }

    #[test]
    fn filtered_keys_have_no_image_and_dbs_are_mapped() {
        let mut section = FilterSection {
            allow_key_prefix: vec!["user:".into()],
            ttl_extend: Some(10),
            ..FilterSection::default()
        };
        section.db_map.insert("1".into(), 5);
        let r = rules(section);
        let mapper = Mapper::new(r.clone(), r.unwrap().db_map.clone(), None).unwrap();
        let key = Bytes::from_static(b"user:1");
        let image = mapper
            .image(1, &key, "hash", Some(2_000_000), 1_000_000)
            .unwrap()
            .unwrap();
        assert_eq!(image.db, 5);
        assert_eq!(image.key, key);
        assert_eq!(image.expire_ms, Some(2_010_000));
        let other = Bytes::from_static(b"order:1");
        assert_eq!(mapper.image(1, &other, "hash", None, 0).unwrap(), None);
        let own = Bytes::from_static(b"__ferry:checkpoint:x");
        assert_eq!(mapper.image(0, &own, "hash", None, 0).unwrap(), None);
        // Backwards: target db 5 holds source db 1 and source db 5 (which keeps its number);
        // db 1 of the target gets nothing.
        assert_eq!(mapper.origins(5, b"user:1", "hash", 16), vec![1, 5]);
        assert!(mapper.origins(1, b"user:1", "hash", 16).is_empty());
        assert_eq!(mapper.origins(2, b"user:1", "hash", 16), vec![2]);
        assert!(mapper.origins(2, b"user:1", "hash", 1).is_empty());
        assert!(mapper.origins(5, b"order:1", "hash", 16).is_empty());
    }

    #[test]
    fn a_script_renames_and_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.lua");
        std::fs::write(
            &path,
            "function transform(e)\n  if e.key:sub(1, 4) == 'tmp:' then return nil end\n  e.key = 'new:' .. e.key\n  e.db = 2\n  return e\nend\n",
        )
        .unwrap();
        let script = Script::load(&path, crate::pipeline::script::Limits::default()).unwrap();
        let mapper = Mapper::new(None, DbMap::default(), Some(&script)).unwrap();
        assert!(!mapper.invertible());
        let image = mapper
            .image(0, &Bytes::from_static(b"a"), "string", None, 0)
            .unwrap()
            .unwrap();
        assert_eq!((image.db, &image.key[..]), (2, &b"new:a"[..]));
        let tmp = Bytes::from_static(b"tmp:a");
        assert_eq!(mapper.image(0, &tmp, "string", None, 0).unwrap(), None);
    }
}
