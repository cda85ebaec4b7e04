//! The GOCACHEPROG protocol (`cmd/go/internal/cacheprog`) and its wire:
//! request lines read from the go command, parsed and checked; the
//! responses we send, written back in batches; a put's body, streamed from
//! its base64 line; and the server's timeline (`--trace`). A get's path,
//! from the line read to the answer written, is this file, `serve.rs`,
//! level one's store (`cachedir/store.rs`) and the books (`books.rs`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};

use base64::Engine;

use crate::error::Error;
pub use crate::error::RequestError;
use crate::layout::{ActionEntry, Id};

/// A request from the go command.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    /// Unique per request; echoed in the response.
    #[serde(rename = "ID")]
    pub id: Option<i64>,
    /// `get`, `put` or `close`.
    pub command: Option<String>,
    /// Base64 of the 32-byte action ID.
    #[serde(rename = "ActionID")]
    pub action_id: Option<String>,
    /// Base64 of the 32-byte output ID.
    #[serde(rename = "OutputID")]
    pub output_id: Option<String>,
    /// The body's size; a body line follows when it is above zero.
    pub body_size: Option<i64>,
}

/// A response to the go command.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    /// The request's ID (0 for the first message).
    #[serde(rename = "ID")]
    pub id: i64,
    /// An error, if the request failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub err: String,
    /// The commands we support (first message only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub known_commands: Vec<&'static str>,
    /// A get found nothing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub miss: bool,
    /// Base64 of the output ID (get hits).
    #[serde(rename = "OutputID", skip_serializing_if = "Option::is_none")]
    pub output_id: Option<String>,
    /// The body's size (get hits).
    #[serde(skip_serializing_if = "is_zero")]
    pub size: i64,
    /// When the entry was put, RFC 3339 (get hits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Absolute path of the body on disk (get hits and puts).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub disk_path: String,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Response {
    /// The first message: the commands we know.
    pub fn known_commands() -> Response {
        Response {
            id: 0,
            known_commands: vec!["get", "put", "close"],
            ..Default::default()
        }
    }

    /// A get that found nothing.
    pub fn miss(id: i64) -> Response {
        Response {
            id,
            miss: true,
            ..Default::default()
        }
    }

    /// A get that found `entry`, whose output is at `disk_path`.
    pub fn hit(id: i64, entry: &ActionEntry, disk_path: String) -> Response {
        Response {
            id,
            output_id: Some(base64::engine::general_purpose::STANDARD.encode(entry.output.0)),
            size: entry.size as i64,
            time: rfc3339(entry.time_nanos),
            disk_path,
            ..Default::default()
        }
    }

    /// A put stored at `disk_path`, or a close (no path).
    pub fn done(id: i64, disk_path: String) -> Response {
        Response {
            id,
            disk_path,
            ..Default::default()
        }
    }

    /// A request that failed, and why.
    pub fn error(id: i64, err: String) -> Response {
        Response {
            id,
            err,
            ..Default::default()
        }
    }

    /// Appends the response as one JSON line, exactly as `serde_json`
    /// writes it (a test checks), without its per-field machinery: this
    /// runs for every request.
    pub(super) fn write_json(&self, out: &mut Vec<u8>) {
        let string = |out: &mut Vec<u8>, key: &[u8], v: &str| {
            out.extend_from_slice(key);
            let _ = serde_json::to_writer(&mut *out, v);
        };
        let _ = write!(out, "{{\"ID\":{}", self.id);
        if !self.err.is_empty() {
            string(out, b",\"Err\":", &self.err);
        }
        if !self.known_commands.is_empty() {
            out.extend_from_slice(b",\"KnownCommands\":");
            let _ = serde_json::to_writer(&mut *out, &self.known_commands);
        }
        if self.miss {
            out.extend_from_slice(b",\"Miss\":true");
        }
        if let Some(o) = &self.output_id {
            string(out, b",\"OutputID\":", o);
        }
        if self.size != 0 {
            let _ = write!(out, ",\"Size\":{}", self.size);
        }
        if let Some(t) = &self.time {
            string(out, b",\"Time\":", t);
        }
        if !self.disk_path.is_empty() {
            string(out, b",\"DiskPath\":", &self.disk_path);
        }
        out.extend_from_slice(b"}\n");
    }
}

/// An entry's time as the go command reads it: RFC 3339, nanoseconds.
fn rfc3339(nanos: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(
        nanos.div_euclid(1_000_000_000),
        nanos.rem_euclid(1_000_000_000) as u32,
    )
    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
}

/// A request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Look up an action.
    Get {
        /// The action ID.
        action: Id,
    },
    /// Store an output for an action; `size` body bytes follow.
    Put {
        /// The action ID.
        action: Id,
        /// The output ID (the body's SHA-256).
        output: Id,
        /// The body's size.
        size: u64,
    },
    /// Finish.
    Close,
    /// A request we answer with an error (its reason); `body` bytes of body
    /// follow and must be skipped.
    Bad {
        /// Why.
        reason: BadRequest,
        /// Body bytes that follow.
        body: u64,
    },
}

/// Why a request is answered with an error (the stream goes on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    /// A field it needs is not there.
    #[error("missing {0}")]
    Missing(&'static str),
    /// An ID that is not base64.
    #[error("{what} is not base64: {cause}")]
    NotBase64 {
        /// Which field.
        what: &'static str,
        /// Why.
        cause: base64::DecodeError,
    },
    /// An ID that is not 32 bytes.
    #[error("{what} is {len} bytes, expected 32")]
    IdLength {
        /// Which field.
        what: &'static str,
        /// Its length, decoded.
        len: usize,
    },
    /// A put's `BodySize` below zero.
    #[error("negative BodySize {0}")]
    NegativeBodySize(i64),
    /// A command we do not know.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
}

fn id_from_b64(s: Option<&str>, what: &'static str) -> Result<Id, BadRequest> {
    let s = s.ok_or(BadRequest::Missing(what))?;
    let b = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|cause| BadRequest::NotBase64 { what, cause })?;
    <[u8; 32]>::try_from(b.as_slice())
        .map(Id)
        .map_err(|_| BadRequest::IdLength { what, len: b.len() })
}

/// Parses one request line. `Ok((id, command))`; an unusable line is an
/// `Err` (the stream cannot continue).
pub fn parse_request(line: &[u8]) -> Result<(i64, Command), RequestError> {
    let req: Request =
        serde_json::from_slice(line).map_err(|e| RequestError::Malformed(e.to_string()))?;
    let id = req.id.ok_or(RequestError::NoId)?;
    let body = req.body_size.unwrap_or(0).max(0) as u64;
    let cmd = match req.command.as_deref() {
        Some("get") => match id_from_b64(req.action_id.as_deref(), "ActionID") {
            Ok(action) => Command::Get { action },
            Err(reason) => Command::Bad { reason, body },
        },
        Some("put") => match (
            id_from_b64(req.action_id.as_deref(), "ActionID"),
            id_from_b64(req.output_id.as_deref(), "OutputID"),
            req.body_size,
        ) {
            (_, _, Some(n)) if n < 0 => Command::Bad {
                reason: BadRequest::NegativeBodySize(n),
                body: 0,
            },
            (Ok(action), Ok(output), n) => Command::Put {
                action,
                output,
                size: n.unwrap_or(0) as u64,
            },
            (Err(reason), _, _) | (_, Err(reason), _) => Command::Bad { reason, body },
        },
        Some("close") => Command::Close,
        Some(other) => Command::Bad {
            reason: BadRequest::UnknownCommand(other.to_owned()),
            body,
        },
        None => Command::Bad {
            reason: BadRequest::Missing("Command"),
            body,
        },
    };
    Ok((id, cmd))
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The stream ended or broke: nothing more can be read.
    #[error("reading the body: {0}")]
    Io(#[from] std::io::Error),
    /// The body line is not a base64 JSON string (the line was consumed).
    #[error("{0}")]
    Bad(String),
}

/// Streams a body line (`"<base64>"`) from `r` into `out`, decoding as it
/// goes; returns the decoded length. Holds at most one buffer in memory.
pub fn stream_body(r: &mut impl BufRead, out: &mut impl Write) -> Result<u64, BodyError> {
    skip_blank_lines(r)?;
    let mut first = [0u8; 1];
    r.read_exact(&mut first)?;
    if first[0] != b'"' {
        let mut rest = Vec::new();
        r.read_until(b'\n', &mut rest)?;
        return Err(BodyError::Bad("body is not a JSON string".into()));
    }
    let eng = &base64::engine::general_purpose::STANDARD;
    let mut carry: Vec<u8> = Vec::with_capacity(4);
    let mut decoded = vec![0u8; 48 << 10];
    let mut total = 0u64;
    let mut bad: Option<String> = None;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(BodyError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let end = buf.iter().position(|&c| c == b'"');
        let chunk = &buf[..end.unwrap_or(buf.len())];
        if bad.is_none() {
            // Decode whole quads; keep the rest for the next chunk.
            let mut input = std::mem::take(&mut carry);
            input.extend_from_slice(chunk);
            let whole = if end.is_some() {
                input.len()
            } else {
                input.len() / 4 * 4
            };
            // 64 KiB pieces are whole quads, so only the last may be padded.
            for piece in input[..whole].chunks(64 << 10) {
                match eng.decode_slice(piece, &mut decoded) {
                    Ok(n) => {
                        out.write_all(&decoded[..n])?;
                        total += n as u64;
                    }
                    Err(e) => {
                        bad = Some(format!("body is not valid base64: {e}"));
                        break;
                    }
                }
            }
            carry = input[whole..].to_vec();
        }
        let used = chunk.len() + end.map_or(0, |_| 1);
        r.consume(used);
        if end.is_some() {
            break;
        }
    }
    // The rest of the line (normally just "\n").
    let mut rest = Vec::new();
    r.read_until(b'\n', &mut rest)?;
    match bad {
        Some(b) => Err(BodyError::Bad(b)),
        None => Ok(total),
    }
}

/// Skips blank lines (Go writes an extra newline after each request).
fn skip_blank_lines(r: &mut impl BufRead) -> Result<(), BodyError> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(BodyError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let skip = buf
            .iter()
            .take_while(|&&c| c == b'\n' || c == b'\r' || c == b' ')
            .count();
        if skip == 0 {
            return Ok(());
        }
        r.consume(skip);
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Read};

    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_say_why() {
        let a = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        let line = format!(r#"{{"ID":5,"Command":"get","ActionID":"{a}"}}"#);
        assert_eq!(
            parse_request(line.as_bytes()).unwrap(),
            (
                5,
                Command::Get {
                    action: Id([1; 32])
                }
            )
        );
        let line =
            format!(r#"{{"ID":6,"Command":"put","ActionID":"{a}","OutputID":"{a}","BodySize":3}}"#);
        assert_eq!(
            parse_request(line.as_bytes()).unwrap().1,
            Command::Put {
                action: Id([1; 32]),
                output: Id([1; 32]),
                size: 3
            }
        );
        assert!(matches!(
            parse_request(b"{not json"),
            Err(RequestError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"[1,2]"),
            Err(RequestError::Malformed(_))
        ));
        assert_eq!(
            parse_request(br#"{"Command":"get"}"#),
            Err(RequestError::NoId)
        );
        assert!(matches!(
            parse_request(br#"{"ID":1,"Command":"fly"}"#).unwrap().1,
            Command::Bad { .. }
        ));
        assert!(matches!(
            parse_request(br#"{"ID":1,"Command":"get","ActionID":"AAAA"}"#)
                .unwrap()
                .1,
            Command::Bad { .. }
        ));
        assert!(matches!(
            parse_request(br#"{"ID":1,"Command":"get","ActionID":"!!"}"#)
                .unwrap()
                .1,
            Command::Bad { .. }
        ));
    }

    #[test]
    fn responses_are_written_as_serde_writes_them() {
        let cases = [
            Response {
                id: 0,
                known_commands: vec!["get", "put", "close"],
                ..Default::default()
            },
            Response {
                id: 7,
                miss: true,
                ..Default::default()
            },
            Response {
                id: 8,
                output_id: Some("AQID".into()),
                size: 175,
                time: rfc3339(1_700_000_000_123_456_789),
                disk_path: "/c/\"q\"\\/ü/\u{1}/ab/cd-d".into(),
                ..Default::default()
            },
            Response {
                id: -3,
                err: "storing \"x\"\n: no space".into(),
                ..Default::default()
            },
        ];
        for r in cases {
            let mut ours = Vec::new();
            r.write_json(&mut ours);
            let mut theirs = serde_json::to_vec(&r).unwrap();
            theirs.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs)
            );
        }
    }

    #[test]
    fn bodies_stream_in_pieces_and_bad_ones_are_refused() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
        let input = format!("\n\"{b64}\"\nNEXT");
        // A tiny buffer forces many partial chunks.
        let mut r = BufReader::with_capacity(7, input.as_bytes());
        let mut out = Vec::new();
        assert_eq!(stream_body(&mut r, &mut out).unwrap(), data.len() as u64);
        assert_eq!(out, data);
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");
        let mut r = BufReader::new("\"QUJD*EVG\"\nNEXT".as_bytes());
        assert!(matches!(
            stream_body(&mut r, &mut Vec::new()),
            Err(BodyError::Bad(_))
        ));
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(
            rest, "NEXT",
            "a bad body is consumed to the end of its line"
        );
        let mut r = BufReader::new("\"QUJD".as_bytes());
        assert!(matches!(
            stream_body(&mut r, &mut Vec::new()),
            Err(BodyError::Io(_))
        ));
    }

    #[test]
    fn random_bytes_never_panic_the_parser() {
        let mut rng = fastrand::Rng::with_seed(5);
        let seeds: [&[u8]; 3] = [
            br#"{"ID":1,"Command":"put","ActionID":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=","BodySize":3}"#,
            br#"{"ID":2,"Command":"get","ActionID":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}"#,
            b"\"QUJD\"\n",
        ];
        for _ in 0..2000 {
            let mut b = seeds[rng.usize(0..seeds.len())].to_vec();
            for _ in 0..rng.usize(0..6) {
                let i = rng.usize(0..b.len());
                match rng.u8(0..3) {
                    0 => b[i] = rng.u8(..),
                    1 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, rng.u8(..)),
                }
                if b.is_empty() {
                    break;
                }
            }
            let _ = parse_request(&b);
            let _ = stream_body(&mut BufReader::new(b.as_slice()), &mut std::io::sink());
        }
    }
}
