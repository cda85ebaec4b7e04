//! The pool of threads beside the reader of `gocache prog`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::protocol::{Response, Writer, lock};

/// Threads beside the reader: they answer gets while more requests wait
/// to be read, finish puts (the renames into place), or fetch from the
/// remote tier; each job's response goes to the [`Writer`].
pub(super) struct Pool<J> {
    queue: Mutex<Jobs<J>>,
    wake: std::sync::Condvar,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// For a pool started lazily ([`Pool::start_lazy`]): starts its
    /// threads, at the first job.
    later: Mutex<Option<Starter>>,
    /// `later` still holds its starter: the one check a job pays after.
    pending: AtomicBool,
}

type Starter = Box<dyn FnOnce() -> Vec<std::thread::JoinHandle<()>> + Send>;

struct Jobs<J> {
    jobs: std::collections::VecDeque<J>,
    /// Threads waiting for work: a job wakes one only when there is one.
    idle: usize,
    closing: bool,
}

impl<J: Send + 'static> Pool<J> {
    /// Starts `n` threads, each running jobs with `run` and sending what
    /// it answers to `writer`.
    pub(super) fn start(
        n: usize,
        writer: &Arc<Writer>,
        run: impl Fn(J) -> Option<Response> + Send + Clone + 'static,
    ) -> Arc<Pool<J>> {
        let pool = Pool::empty();
        *lock(&pool.threads) = spawn(&pool, n, writer, run);
        pool
    }

    /// [`Pool::start`], but the threads start with the first job: a
    /// session that never needs them (the remote fetchers of a warm
    /// build) spends nothing on them.
    pub(super) fn start_lazy(
        n: usize,
        writer: &Arc<Writer>,
        run: impl Fn(J) -> Option<Response> + Send + Clone + 'static,
    ) -> Arc<Pool<J>> {
        let pool = Pool::empty();
        let (weak, writer) = (Arc::downgrade(&pool), writer.clone());
        *lock(&pool.later) = Some(Box::new(move || match weak.upgrade() {
            Some(pool) => spawn(&pool, n, &writer, run),
            None => Vec::new(),
        }));
        pool.pending.store(true, Ordering::Release);
        pool
    }

    fn empty() -> Arc<Pool<J>> {
        Arc::new(Pool {
            queue: Mutex::new(Jobs {
                jobs: Default::default(),
                idle: 0,
                closing: false,
            }),
            wake: std::sync::Condvar::new(),
            threads: Mutex::new(Vec::new()),
            later: Mutex::new(None),
            pending: AtomicBool::new(false),
        })
    }

    pub(super) fn submit(&self, job: J) {
        if self.pending.load(Ordering::Acquire) {
            let start = lock(&self.later).take();
            if let Some(start) = start {
                self.pending.store(false, Ordering::Release);
                let threads = start();
                lock(&self.threads).extend(threads);
            }
        }
        let mut q = lock(&self.queue);
        q.jobs.push_back(job);
        if q.idle > 0 {
            self.wake.notify_one();
        }
    }

    fn next(&self) -> Option<J> {
        let mut q = lock(&self.queue);
        loop {
            if let Some(job) = q.jobs.pop_front() {
                return Some(job);
            }
            if q.closing {
                return None;
            }
            q.idle += 1;
            q = self
                .wake
                .wait(q)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            q.idle -= 1;
        }
    }

    /// Lets the threads finish what is queued, then stop.
    pub(super) fn close(&self) {
        lock(&self.queue).closing = true;
        self.wake.notify_all();
    }

    /// Waits for the threads to stop (after [`Pool::close`]).
    pub(super) fn join(&self) {
        for t in std::mem::take(&mut *lock(&self.threads)) {
            let _ = t.join();
        }
    }
}

/// Starts `n` threads of `pool`, each running jobs with `run` and sending
/// what it answers to `writer`.
fn spawn<J: Send + 'static>(
    pool: &Arc<Pool<J>>,
    n: usize,
    writer: &Arc<Writer>,
    run: impl Fn(J) -> Option<Response> + Send + Clone + 'static,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let (pool, writer, run) = (pool.clone(), writer.clone(), run.clone());
            std::thread::spawn(move || {
                while let Some(job) = pool.next() {
                    if let Some(r) = run(job) {
                        writer.send(&r);
                    }
                }
            })
        })
        .collect()
}
