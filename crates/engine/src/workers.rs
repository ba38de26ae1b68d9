//! The engine's shared workers: a fixed set of threads, each running a single-threaded tokio
//! runtime with a `LocalSet`, for work that cannot move between threads (a Lua state is tied
//! to the thread that made it): every task's Lua transform step and continuous verification
//! run here, so a process with many tasks has a bounded number of threads, not one or two per
//! task. Jobs are given to the worker with the fewest running, and stay there.
//!
//! A job that computes for long holds up the others on its worker: a Lua call is stopped at
//! `[transform] time_limit_ms` (100 ms by default), and verification only waits on the network.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
    /// Jobs running on it now.
    running: Arc<AtomicUsize>,
}

pub struct Workers {
    workers: Vec<Worker>,
}

/// The process's workers, started on first use: one per core, between 2 and 8.
pub fn shared() -> &'static Workers {
    static SHARED: OnceLock<Workers> = OnceLock::new();
    SHARED.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
        Workers::start(n)
    })
}

impl Workers {
    fn start(n: usize) -> Workers {
        let workers = (0..n)
            .map(|i| {
                let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
                let running = Arc::new(AtomicUsize::new(0));
                let count = running.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("ferry-worker-{i}"))
                    .spawn(move || {
                        let runtime = match tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            Ok(r) => r,
                            Err(e) => {
                                tracing::error!("worker {i} cannot start its runtime: {e}");
                                return;
                            }
                        };
                        let local = tokio::task::LocalSet::new();
                        local.block_on(&runtime, async move {
                            while let Some(job) = rx.recv().await {
                                let count = count.clone();
                                tokio::task::spawn_local(async move {
                                    job().await;
                                    count.fetch_sub(1, Relaxed);
                                });
                            }
                        });
                    });
                if let Err(e) = spawned {
                    tracing::error!("cannot start worker thread {i}: {e}");
                }
                Worker { jobs, running }
            })
            .collect();
        Workers { workers }
    }

    /// Runs the future `make` returns on the least busy worker, until it ends. `make` runs on
    /// that worker's thread, so what it builds (a Lua state) never leaves it. False when no
    /// worker could take it (its thread failed to start).
    pub fn spawn<F, Fut>(&self, make: F) -> bool
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let Some(worker) = self
            .workers
            .iter()
            .filter(|w| !w.jobs.is_closed())
            .min_by_key(|w| w.running.load(Relaxed))
        else {
            return false;
        };
        worker.running.fetch_add(1, Relaxed);
        let job: Job = Box::new(move || Box::pin(make()));
        if worker.jobs.send(job).is_err() {
            worker.running.fetch_sub(1, Relaxed);
            return false;
        }
        true
    }

    /// Threads in the pool.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_jobs_share_a_few_threads() {
        let workers = Workers::start(2);
        let (tx, mut rx) = mpsc::unbounded_channel();
        for i in 0..20 {
            let tx = tx.clone();
            assert!(workers.spawn(move || async move {
                // Not Send: stays on its worker.
                let local = std::rc::Rc::new(i);
                tokio::task::yield_now().await;
                let _ = tx.send((*local, std::thread::current().name().map(str::to_string)));
            }));
        }
        drop(tx);
        let mut seen = Vec::new();
        let mut threads = std::collections::BTreeSet::new();
        while let Some((i, name)) = rx.blocking_recv() {
            seen.push(i);
            threads.insert(name.unwrap());
        }
        seen.sort();
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
        assert!(threads.len() <= 2, "{threads:?}");
    }
}
