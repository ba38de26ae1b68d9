//! A task's local directory (`<data_dir>/tasks/<id>`), held by one process at a time: the spool
//! in it is emptied when a stream starts, so a second process running a task with the same id
//! must not use it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};

use crate::config::TaskConfig;
use crate::error::{Error, Result};

/// An exclusive lock on `<local dir>/lock`, released when dropped (or when the process ends,
/// however it ends: the OS releases it).
pub struct LocalLock {
    _file: File,
}

impl LocalLock {
    /// Takes the lock, or says which process holds it.
    pub fn take(config: &TaskConfig) -> Result<LocalLock> {
        let dir = config.local_dir();
        let local = |e: std::io::Error| {
            Error::Local(format!(
                "cannot use the task's local directory {}: {e}; choose another [sync] data_dir",
                dir.display()
            ))
        };
        std::fs::create_dir_all(&dir).map_err(local)?;
        let path = dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(local)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(Error::Local(format!(
                    "task {} is already running on this machine ({}): its local files in {} are in use; stop it first, or give this task another [sync] id",
                    config.id,
                    holder.trim(),
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(local(e)),
        }
        // Who holds it, for the message above; the lock itself is what counts.
        file.set_len(0).map_err(local)?;
        file.rewind().map_err(local)?;
        write!(file, "pid {}", std::process::id()).map_err(local)?;
        Ok(LocalLock { _file: file })
    }
}
