//! `--keys-per-sec`: keys are read no faster than this on average, so a production source
//! is not hurt. A batch is sent when its turn has come; nothing is dropped.

use std::time::Duration;

use tokio::time::Instant;

pub struct Pace {
    per_key: Option<Duration>,
    /// When the next batch may go.
    next: Instant,
}

impl Pace {
    pub fn new(keys_per_sec: Option<f64>) -> Pace {
        Pace {
            per_key: keys_per_sec.map(|r| Duration::from_secs_f64(1.0 / r)),
            next: Instant::now(),
        }
    }

    /// Waits for `keys` keys' turn.
    pub async fn take(&mut self, keys: usize) {
        let Some(per_key) = self.per_key else { return };
        let now = Instant::now();
        // Time not used while waiting on servers is not saved up for a burst later.
        if self.next < now {
            self.next = now;
        }
        tokio::time::sleep_until(self.next).await;
        self.next += per_key * keys as u32;
    }
}
