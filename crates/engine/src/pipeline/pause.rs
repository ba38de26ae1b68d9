//! Pausing a task's writes: the handle sets it, every relay of the task watches it. While
//! paused, nothing new is handed to a target's writer (what it already holds is finished); the
//! command stream goes on being read into the spool, and the snapshot (which is not spooled) is
//! not read further.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone)]
pub struct Pause(Arc<watch::Sender<bool>>);

impl Default for Pause {
    fn default() -> Pause {
        Pause(Arc::new(watch::channel(false).0))
    }
}

impl Pause {
    /// Pauses (`true`) or resumes; whether that changed anything.
    pub fn set(&self, paused: bool) -> bool {
        self.0
            .send_if_modified(|now| std::mem::replace(now, paused) != paused)
    }

    pub fn is_paused(&self) -> bool {
        *self.0.borrow()
    }

    pub fn watch(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}
