//! The pool of threads beside the reader of `gocache prog`.

use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::protocol::{Response, Writer, lock};

/// Threads beside the reader: they answer gets while more requests wait
/// to be read, finish puts (the renames into place), or fetch from the
/// remote tier; each job's response goes to the [`Writer`].
pub(super) struct Pool<J> {
    queue: Mutex<Jobs<J>>,
    wake: std::sync::Condvar,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// For a pool that grows with its work ([`Pool::start_lazy`]): starts
    /// one more thread.
    grow: OnceLock<Grower>,
    /// The most threads it starts.
    max: usize,
}

type Grower = Box<dyn Fn() -> Option<std::thread::JoinHandle<()>> + Send + Sync>;

struct Jobs<J> {
    jobs: std::collections::VecDeque<J>,
    /// Threads waiting for work: a job wakes one only when there is one.
    idle: usize,
    /// Threads started.
    started: usize,
    closing: bool,
}

impl<J: Send + 'static> Pool<J> {
    /// Starts `n` threads, each running jobs with `run` and sending what
    /// it answers to `writer`.
    pub(super) fn start(
        n: usize,
        writer: &Arc<Writer>,
        run: impl Fn(J) -> Option<Response> + Send + Sync + Clone + 'static,
    ) -> Arc<Pool<J>> {
        let pool = Pool::empty(n);
        let threads = (0..n).map(|_| worker(&pool, writer, &run)).collect();
        *lock(&pool.threads) = threads;
        lock(&pool.queue).started = n;
        pool
    }

    /// [`Pool::start`], but no thread starts before there is work, and one
    /// more only when more jobs wait than threads are idle, up to `n`: a
    /// session that never needs them (the remote fetchers of a warm
    /// build) spends nothing on them, one with a miss or two, a thread.
    pub(super) fn start_lazy(
        n: usize,
        writer: &Arc<Writer>,
        run: impl Fn(J) -> Option<Response> + Send + Sync + Clone + 'static,
    ) -> Arc<Pool<J>> {
        let pool = Pool::empty(n);
        let (weak, writer): (Weak<Pool<J>>, _) = (Arc::downgrade(&pool), writer.clone());
        let grow: Grower = Box::new(move || Some(worker(&weak.upgrade()?, &writer, &run)));
        let _ = pool.grow.set(grow);
        pool
    }

    fn empty(max: usize) -> Arc<Pool<J>> {
        Arc::new(Pool {
            queue: Mutex::new(Jobs {
                jobs: Default::default(),
                idle: 0,
                started: 0,
                closing: false,
            }),
            wake: std::sync::Condvar::new(),
            threads: Mutex::new(Vec::new()),
            grow: OnceLock::new(),
            max,
        })
    }

    pub(super) fn submit(&self, job: J) {
        let more = {
            let mut q = lock(&self.queue);
            q.jobs.push_back(job);
            if q.idle > 0 {
                self.wake.notify_one();
            }
            let more = q.jobs.len() > q.idle && q.started < self.max && self.grow.get().is_some();
            if more {
                q.started += 1;
            }
            more
        };
        if more && let Some(grow) = self.grow.get() {
            match grow() {
                Some(thread) => lock(&self.threads).push(thread),
                None => lock(&self.queue).started -= 1,
            }
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

/// Starts a thread of `pool`, running jobs with `run` and sending what it
/// answers to `writer`.
fn worker<J: Send + 'static>(
    pool: &Arc<Pool<J>>,
    writer: &Arc<Writer>,
    run: &(impl Fn(J) -> Option<Response> + Send + Clone + 'static),
) -> std::thread::JoinHandle<()> {
    let (pool, writer, run) = (pool.clone(), writer.clone(), run.clone());
    std::thread::spawn(move || {
        while let Some(job) = pool.next() {
            if let Some(r) = run(job) {
                writer.send(&r);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    fn writer() -> Arc<Writer> {
        let timeline = Arc::new(super::super::protocol::Timeline::new(false));
        Arc::new(Writer::new(Box::new(std::io::sink()), timeline))
    }

    fn threads<J: Send + 'static>(pool: &Pool<J>) -> usize {
        lock(&pool.threads).len()
    }

    #[test]
    fn a_lazy_pool_starts_no_thread_before_work_and_one_for_jobs_one_at_a_time() {
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let d = done.clone();
        let pool = Pool::start_lazy(8, &writer(), move |tx: mpsc::Sender<()>| {
            d.fetch_add(1, Ordering::SeqCst);
            tx.send(()).unwrap();
            None
        });
        assert_eq!(threads(&pool), 0);
        for _ in 0..5 {
            pool.submit(tx.clone());
            rx.recv().unwrap();
            // The worker is back waiting before the next job comes, as a
            // go command's second miss comes long after its first.
            while lock(&pool.queue).idle == 0 {
                std::thread::yield_now();
            }
        }
        assert_eq!(threads(&pool), 1, "jobs one at a time need one thread");
        pool.close();
        pool.join();
        assert_eq!(done.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn a_lazy_pool_grows_to_its_bound_for_jobs_that_wait_together() {
        // Each job waits until four run at once (or a second went by): the
        // pool must run its bound of four at once, and no more.
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (r, m) = (running.clone(), most.clone());
        let pool = Pool::start_lazy(4, &writer(), move |_: ()| {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let start = std::time::Instant::now();
            while r.load(Ordering::SeqCst) < 4 && start.elapsed().as_secs() < 1 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            r.fetch_sub(1, Ordering::SeqCst);
            None
        });
        for _ in 0..12 {
            pool.submit(());
        }
        assert_eq!(threads(&pool), 4);
        pool.close();
        pool.join();
        assert_eq!(most.load(Ordering::SeqCst), 4);
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn an_eager_pool_starts_its_threads_at_once_and_finishes_what_is_queued() {
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let pool = Pool::start(3, &writer(), move |_: ()| {
            d.fetch_add(1, Ordering::SeqCst);
            None
        });
        assert_eq!(threads(&pool), 3);
        for _ in 0..50 {
            pool.submit(());
        }
        pool.close();
        pool.join();
        assert_eq!(done.load(Ordering::SeqCst), 50);
        assert_eq!(threads(&pool), 0);
    }
}
