//! The wire: request lines read from the go command, responses written
//! back in batches, the pool of threads beside the reader, and the
//! server's timeline (`--trace`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};

use super::protocol::Response;
use crate::error::Error;

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The longest request line accepted. A real one is about 200 bytes; a
/// longer line is not a GOCACHEPROG request, and holding it whole would
/// only grow the process.
pub const MAX_REQUEST_LINE: usize = 1 << 20;

/// Requests waiting behind a get, already read, for the reader to hand the
/// get to the pool. Below this the reader answers it: a hand-off costs a
/// wake-up (about 30-40 us across the vCPUs of a VM, where a get takes
/// about 10 us), which only pays off while the reader has more to do.
pub(super) const HAND_OFF_AT: usize = 3;

/// Responses the reader keeps to send with the next while more requests
/// are waiting in its buffer: one write and one wake-up of the go command
/// for several, at the cost of a few microseconds for the first.
pub const DEFER_AT_MOST: usize = 4;

/// Requests waiting in the reader's buffer, whole lines only (go writes a
/// blank line after each), counted up to `at_most`.
pub fn requests_waiting(buf: &[u8], at_most: usize) -> usize {
    buf.split_inclusive(|&c| c == b'\n')
        .filter(|l| l.ends_with(b"\n") && l.iter().any(|c| !c.is_ascii_whitespace()))
        .take(at_most)
        .count()
}

/// Reads one request line into `line` (empty at the end of input), at
/// most [`MAX_REQUEST_LINE`] bytes, polling for `spin` first when nothing
/// is buffered ([`super::ServerConfig::spin`]).
pub(super) fn read_request_line(
    r: &mut BufReader<impl Read + AsFd>,
    line: &mut Vec<u8>,
    spin: std::time::Duration,
) -> Result<(), Error> {
    loop {
        if r.buffer().is_empty() && !spin.is_zero() {
            spin_until_readable(r.get_ref().as_fd(), spin);
        }
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(cause) => return Err(Error::RequestStream { cause }),
        };
        if buf.is_empty() {
            return Ok(());
        }
        let (take, done) = match buf.iter().position(|&c| c == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > MAX_REQUEST_LINE {
            let start = [line.as_slice(), buf].concat();
            return Err(Error::RequestTooLong {
                max_kib: MAX_REQUEST_LINE >> 10,
                start: String::from_utf8_lossy(&start[..start.len().min(60)]).into_owned(),
            });
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            return Ok(());
        }
    }
}

/// Polls `fd` until it is readable or `spin` has passed, without
/// sleeping: on a VM, waking a thread that sleeps on another CPU costs tens
/// of microseconds, several times a get.
fn spin_until_readable(fd: BorrowedFd<'_>, spin: std::time::Duration) {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let start = std::time::Instant::now();
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&now)) {
            Ok(0) if start.elapsed() < spin => std::hint::spin_loop(),
            _ => return,
        }
    }
}

/// The server's timeline (see [`super::ServerConfig::trace`]): events in
/// microseconds since the start, or nothing when not asked for.
pub(super) struct Timeline(Option<Recording>);

struct Recording {
    start: std::time::Instant,
    events: Mutex<Vec<(u64, &'static str, i64, u64)>>,
}

impl Timeline {
    /// A timeline that records when `on`.
    pub(super) fn new(on: bool) -> Timeline {
        Timeline(on.then(|| Recording {
            start: std::time::Instant::now(),
            events: Mutex::new(Vec::with_capacity(8192)),
        }))
    }

    /// Notes an event (`what`, for request `id`, with a number `n`).
    pub(super) fn note(&self, what: &'static str, id: i64, n: u64) {
        if let Some(t) = &self.0 {
            let us = t.start.elapsed().as_micros() as u64;
            lock(&t.events).push((us, what, id, n));
        }
    }

    /// Writes the events to `path` (nothing when not recording).
    pub(super) fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        let Some(t) = &self.0 else { return Ok(()) };
        let mut out = std::io::BufWriter::new(File::create(path)?);
        writeln!(out, "# us event id n")?;
        for (us, what, id, n) in lock(&t.events).iter() {
            writeln!(out, "{us} {what} {id} {n}")?;
        }
        out.flush()
    }
}

/// Sends responses, one JSON object a line. Whoever finds the writer idle
/// writes everything queued by then in one `write`, and goes on writing
/// what others queue meanwhile; they return at once. So no response waits
/// for a hand-off to a writing thread, and responses that finish together
/// leave in one system call.
pub(super) struct Writer {
    queue: Mutex<Outbox>,
    out: Mutex<Option<Box<dyn Write + Send>>>,
    timeline: Arc<Timeline>,
}

#[derive(Default)]
struct Outbox {
    bytes: Vec<u8>,
    /// A thread is writing; it will also write what is queued.
    writing: bool,
    /// The output failed (the go command went away): responses are dropped.
    broken: bool,
    /// The last batch's buffer, kept for the next.
    spare: Vec<u8>,
}

impl Writer {
    pub(super) fn new(out: Box<dyn Write + Send>, timeline: Arc<Timeline>) -> Writer {
        Writer {
            queue: Mutex::new(Outbox::default()),
            out: Mutex::new(Some(out)),
            timeline,
        }
    }

    /// Queues a response and writes everything queued.
    pub(super) fn send(&self, r: &Response) {
        self.queue(r);
        self.flush();
    }

    /// Queues a response without writing it: the caller will send or
    /// flush soon.
    pub(super) fn queue(&self, r: &Response) {
        let mut q = lock(&self.queue);
        if !q.broken {
            r.write_json(&mut q.bytes);
        }
    }

    /// Writes everything queued, unless another thread is writing (it
    /// writes this too, before it returns).
    pub(super) fn flush(&self) {
        let mut q = lock(&self.queue);
        if q.writing || q.bytes.is_empty() {
            return;
        }
        q.writing = true;
        loop {
            let spare = std::mem::take(&mut q.spare);
            let mut batch = std::mem::replace(&mut q.bytes, spare);
            drop(q);
            let ok = match lock(&self.out).as_mut() {
                Some(out) => out.write_all(&batch).and_then(|()| out.flush()).is_ok(),
                None => false,
            };
            self.timeline.note("write", 0, batch.len() as u64);
            batch.clear();
            q = lock(&self.queue);
            q.spare = batch;
            if !ok {
                q.broken = true;
                q.bytes.clear();
            }
            if q.bytes.is_empty() {
                q.writing = false;
                return;
            }
        }
    }

    /// Lets go of the output, once `close` is answered: the go command
    /// waits for the pipe to close, not for this process to end.
    pub(super) fn release(&self) {
        let out = lock(&self.out).take();
        drop(out);
    }
}

/// Threads beside the reader: they answer gets while more requests wait
/// to be read, finish puts (the renames into place), or fetch from the
/// remote tier; each job's response goes to the [`Writer`].
pub(super) struct Pool<J> {
    queue: Mutex<Jobs<J>>,
    wake: std::sync::Condvar,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

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
        let pool = Arc::new(Pool {
            queue: Mutex::new(Jobs {
                jobs: Default::default(),
                idle: 0,
                closing: false,
            }),
            wake: std::sync::Condvar::new(),
            threads: Mutex::new(Vec::new()),
        });
        let threads = (0..n)
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
            .collect();
        *lock(&pool.threads) = threads;
        pool
    }

    pub(super) fn submit(&self, job: J) {
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
