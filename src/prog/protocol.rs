//! The GOCACHEPROG protocol (`cmd/go/internal/cacheprog`): the requests
//! the go command sends, parsed and checked; the responses we send, and
//! how they are written; a put's body, streamed from its base64 line.

use std::io::{BufRead, Write};

use base64::Engine;

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
