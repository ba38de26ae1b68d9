//! A running task, as a program drives it: [`Task::start`] gives a [`TaskHandle`] with the
//! task's status, its events, and pause, resume, stop and join. The CLI drives one; a server
//! drives many with the same code.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Source, TaskConfig};
use crate::error::{Error, Result};
use crate::pipeline::pause::Pause;
use crate::spec::{LimitSection, LiveVerify, TaskId};
use crate::status::events::{Event, EventKind, Events};
use crate::status::throttle::{Limits, Throttle};
use crate::status::{Phase, Snapshot, Status};

/// Seconds of the source's stream position kept to tell its write rate.
const RATE_WINDOW: usize = 60;

/// Starts tasks.
pub struct Task;

impl Task {
    /// Starts `config` on the current tokio runtime. With `live_verify`, recently written keys
    /// are compared on both sides as the sync runs (`[verify] continuous`).
    pub fn start(config: TaskConfig, live_verify: Option<LiveVerify>) -> Result<TaskHandle> {
        let id = config.id.clone();
        let status = Arc::new(Status::new(Events::new(id.as_str())));
        let cancel = CancellationToken::new();
        let pause = Pause::default();
        let done = CancellationToken::new();
        if let Some(settings) = live_verify {
            let opts = crate::verify::Options::from_task(&config)?;
            crate::verify::live::spawn(opts, settings, status.clone(), done.clone())?;
        }
        let rates = Arc::new(Mutex::new(VecDeque::with_capacity(RATE_WINDOW + 1)));
        tokio::spawn(sample_rate(status.clone(), rates.clone(), done.clone()));
        let from_file = matches!(config.source, Source::RdbFile(_));
        let throttle = config.writer.throttle.clone();
        let spooled = config.checkpoint && config.spool.limit > 0;
        let join = {
            let (status, cancel, pause) = (status.clone(), cancel.clone(), pause.clone());
            let done = done.clone();
            tokio::spawn(async move {
                let result = super::run(config, status, cancel, pause).await;
                // Whatever ran beside the task (verification, the rate sampler) ends with it.
                done.cancel();
                result
            })
        };
        Ok(TaskHandle {
            id,
            status,
            cancel,
            pause,
            rates,
            from_file,
            spooled,
            throttle,
            done,
            join,
        })
    }
}

/// A running task. Dropping the handle does not stop it: call [`TaskHandle::stop`].
pub struct TaskHandle {
    id: TaskId,
    status: Arc<Status>,
    cancel: CancellationToken,
    pause: Pause,
    /// (when, source offset) once a second, oldest first.
    rates: Arc<Mutex<VecDeque<(Instant, u64)>>>,
    /// The source is a snapshot file.
    from_file: bool,
    spooled: bool,
    /// The limits every writer of the task asks before it writes.
    throttle: Option<Arc<Throttle>>,
    /// Cancelled once the task has ended.
    done: CancellationToken,
    join: JoinHandle<Result<()>>,
}

/// What [`TaskHandle::status`] returns: the status as `GET /status` shows it, and whether the
/// task is paused.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskStatus {
    pub id: String,
    pub paused: bool,
    #[serde(flatten)]
    pub status: Snapshot,
}

/// What pausing means for this task now: how long it can stay paused before the source drops
/// its link (after which it resumes from its checkpoint, with a partial resync if the source's
/// backlog still covers it, else as its `full_resync` setting says).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PauseReport {
    pub paused: bool,
    pub phase: Phase,
    /// Bytes of the command stream the spool can still take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool_room_bytes: Option<u64>,
    /// The source's write rate over the last minute, in bytes of its replication stream per
    /// second.
    pub source_bytes_per_s: f64,
    /// About how long, at that rate, until the spool is full and the source is no longer read;
    /// `None` when the source is not read while paused, or does not write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool_full_in_s: Option<u64>,
    /// The same in words.
    pub note: String,
}

impl TaskHandle {
    pub fn id(&self) -> &TaskId {
        &self.id
    }

    /// A point-in-time copy of the task's status.
    pub fn status(&self) -> TaskStatus {
        TaskStatus {
            id: self.id.to_string(),
            paused: self.pause.is_paused(),
            status: self.status.snapshot(),
        }
    }

    /// The live status, for a display that reads it often (the CLI's progress bar and its
    /// status endpoint).
    pub fn live_status(&self) -> &Arc<Status> {
        &self.status
    }

    /// The task's events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.status.events().subscribe()
    }

    /// Stops writing to the targets: what a writer already holds is finished, the checkpoint
    /// stays where it is, the source link is kept (the command stream goes on into the spool).
    /// The report says how long that can last.
    pub fn pause(&self) -> PauseReport {
        if self.pause.set(true) {
            self.status.events().emit(EventKind::Paused);
        }
        self.pause_report()
    }

    /// Writes again, first what the spool kept while paused.
    pub fn resume(&self) {
        if self.pause.set(false) {
            self.status.events().emit(EventKind::Resumed);
        }
    }

    /// Replaces the task's write limits (`[limit]`) while it runs: every writer holds to
    /// them from its next write. Checked as the spec's are; a refusal changes nothing.
    pub fn set_limits(&self, section: &LimitSection) -> Result<Limits> {
        let limits = crate::config::limits(section)?;
        let Some(throttle) = &self.throttle else {
            return Err(Error::Config(
                "the task was started without its write limits: stop it and start it again to change them".into(),
            ));
        };
        throttle.set_limits(limits);
        self.status
            .events()
            .emit(EventKind::LimitsChanged { limits });
        Ok(limits)
    }

    pub fn is_paused(&self) -> bool {
        self.pause.is_paused()
    }

    /// Stops the task: it stops reading the source, finishes the writes in flight (their
    /// checkpoint with them), gives back its lease and ends. [`TaskHandle::join`] waits for
    /// that.
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Resolves once the task has ended (then [`TaskHandle::join`] gives its result at once).
    pub async fn ended(&self) {
        self.done.cancelled().await;
    }

    /// Waits for the task to end: `Ok` when it was stopped or finished its full copy.
    pub async fn join(self) -> Result<()> {
        self.join.await.unwrap_or_else(|e| {
            Err(Error::Internal {
                what: "the task",
                why: e.to_string(),
            })
        })
    }

    fn pause_report(&self) -> PauseReport {
        let snapshot = self.status.snapshot();
        let rate = {
            let rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
            match (rates.front(), rates.back()) {
                (Some((t0, o0)), Some((t1, o1))) if t1 > t0 => {
                    o1.saturating_sub(*o0) as f64 / (*t1 - *t0).as_secs_f64()
                }
                _ => 0.0,
            }
        };
        let paused = self.pause.is_paused();
        let room = self.spooled.then(|| spool_room(&snapshot)).flatten();
        let full_in = match room {
            Some(room) if rate > 0.0 && snapshot.phase == Phase::Incremental => {
                Some((room as f64 / rate) as u64)
            }
            _ => None,
        };
        let after = "then the source keeps the writes in its output buffer for replicas and drops the link when that is full (client-output-buffer-limit replica); the task then goes on from its checkpoint, with a partial resync if the source's backlog (repl-backlog-size) still covers it";
        let note = if self.from_file {
            "loading the snapshot file is paused; it can stay paused as long as needed".to_string()
        } else {
            match (snapshot.phase, room, full_in) {
                (Phase::Full | Phase::Connecting, _, _) => "the full copy is paused: the source's snapshot is not read further; the source drops the link after its repl-timeout (60 s by default) without progress, and the full copy then starts over; pause during the command stream, where the spool holds the writes".to_string(),
                (_, Some(room), Some(secs)) => format!(
                    "the command stream goes into the spool ({} MiB free); at the source's rate over the last minute ({:.0} KB/s) it is full in about {}; {after}",
                    room >> 20,
                    rate / 1000.0,
                    words(Duration::from_secs(secs))
                ),
                (_, Some(room), None) => format!(
                    "the command stream goes into the spool ({} MiB free); the source wrote nothing in the last minute; once it is full, {after}",
                    room >> 20
                ),
                (_, None, _) => format!(
                    "without a spool the source is not read while paused: {}",
                    after.trim_start_matches("then ")
                ),
            }
        };
        PauseReport {
            paused,
            phase: snapshot.phase,
            spool_room_bytes: room,
            source_bytes_per_s: rate,
            spool_full_in_s: full_in,
            note,
        }
    }
}

/// What the spools can still take: a cluster source's shards each fill their own (their room
/// adds up); several targets' fill side by side (the fullest decides).
fn spool_room(snapshot: &Snapshot) -> Option<u64> {
    let own =
        |s: &Snapshot| (s.spool_limit > 0).then(|| s.spool_limit.saturating_sub(s.spool_bytes));
    if !snapshot.shards.is_empty() {
        let rooms: Vec<u64> = snapshot
            .shards
            .iter()
            .filter_map(|p| spool_room(&p.status))
            .collect();
        return (!rooms.is_empty()).then(|| rooms.iter().sum());
    }
    if !snapshot.targets.is_empty() {
        return snapshot.targets.iter().filter_map(|p| own(&p.status)).min();
    }
    own(snapshot)
}

/// Once a second, where the source's stream stands: its write rate, for the pause report.
async fn sample_rate(
    status: Arc<Status>,
    rates: Arc<Mutex<VecDeque<(Instant, u64)>>>,
    done: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.cancelled() => return,
        }
        let offset = status
            .source_offset
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut rates = rates.lock().unwrap_or_else(|e| e.into_inner());
        rates.push_back((Instant::now(), offset));
        if rates.len() > RATE_WINDOW {
            rates.pop_front();
        }
    }
}

fn words(d: Duration) -> String {
    match d.as_secs() {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}
