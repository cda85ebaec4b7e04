//! The trace file: what a cache was asked for, as JSON Lines (schema
//! version 1).
//!
//! A trace is a text file of JSON objects, one a line. The first line is a
//! header; every other line is an event. Several traces concatenated are
//! still a trace: a line holding `gocache_trace` starts a new segment with
//! its own header.
//!
//! # Header
//!
//! ```json
//! {"gocache_trace":1,"source":"prog","host":"ci-7","created":1767225600,"block":4096}
//! ```
//!
//! | field | meaning |
//! | --- | --- |
//! | `gocache_trace` | schema version (this is 1); a reader refuses a newer one |
//! | `source` | who recorded it: `prog`, `hook`, `wrapper`, `ci`, `synth`, or any other word |
//! | `host` | optional: the machine, for people |
//! | `created` | optional: Unix seconds when recording began |
//! | `block` | allocated bytes of one action entry (175 bytes in one filesystem block); default 4096 |
//! | `note` | optional: anything, for people |
//!
//! # Events
//!
//! ```json
//! {"t":1767225600123,"ev":"get","a":"9f3c0e21d4a8b7c6","hit":false}
//! {"t":1767225600871,"ev":"put","a":"9f3c0e21d4a8b7c6","o":"51aa0c3e9d2b7f10","size":81920,"cost":0.748}
//! {"t":1767225601002,"ev":"get","a":"0b7e99c2a1d3f456","hit":true,"o":"e4d2c1b0a9f8e7d6","size":4096}
//! {"t":1767225700000,"ev":"new","kind":"action","a":"77ab…","o":"c0ff…","size":12288}
//! {"t":1767225700000,"ev":"new","kind":"exe","o":"d00d…","size":6291456,"program":"stringer"}
//! {"t":1767225800000,"ev":"use","kind":"exe","o":"d00d…"}
//! {"t":1767225800412,"ev":"end"}
//! ```
//!
//! | field | meaning |
//! | --- | --- |
//! | `t` | when, in Unix milliseconds |
//! | `ev` | `get` (go looked an action up), `put` (go stored an action's output), `new` (an entry first seen by a scan or the hook), `use` (a use seen by the wrapper or the hook), `end` (a go command's `gocache prog` session closed: the real trim checks the limits there; no other field) |
//! | `kind` | the entry the event is about: `action` (the default, and the only kind for `get` and `put`), `output` or `exe` |
//! | `a` | the action ID (for `kind` `action`) |
//! | `o` | the output ID: the data entry an action names, or the output or executable itself |
//! | `exe` | for an action: `true` when `o` is an executable directory (`go run`, `go tool`) |
//! | `size` | allocated bytes of `o` (`st_blocks × 512`; a GOCACHEPROG body size rounded up to whole blocks) |
//! | `hit` | for `get`: whether the cache had it |
//! | `cost` | for `put` (and `new`): seconds go spent rebuilding it; for a `put` without it, the time since the `get` miss of the same action is used |
//! | `program` | for an executable: its file name, for people |
//! | `of` | for `get`: the action whose hit go was using when it asked (this lookup is an entry kept beside that action, Go's `Subkey(action, desc)` for its compiler or linker output, its list of compiled source files or its cgo header, which go asks for only after a hit): a replay that misses that action does not count this lookup (`gocache prog` records it); for `put`: the action, missed in the same session, whose rebuild wrote this entry beside it (go writes it again whenever it rebuilds that action: a replay that misses that action where the trace hit stores this entry again) |
//!
//! IDs are hex. Writers write the first 16 hex digits of Go's 64 (a
//! compact ID: 64 bits are plenty to tell a trace's entries apart, and a
//! trace is a fifth the size); readers accept 16 to 64 digits and use the
//! first 16, so a full ID and its compact form name the same entry.
//!
//! Compatibility: fields are only ever added. A reader ignores fields it
//! does not know, skips events whose `ev` it does not know (counting them),
//! and refuses a header with a newer version.
//!
//! What each source can record: `gocache prog` sees every `get` (hit or
//! miss) and `put`, and measures `cost`. The hook and the wrapper see
//! entries appear (`new`) and uses through mtimes and the `go run` shim
//! (`use`); they cannot see misses as such, so a `new` action is read as a
//! miss followed by a put, and a `use` of an action as a hit.
//!
//! Reading and writing are pure functions over [`BufRead`] and [`Write`].

use std::borrow::Cow;
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::Id;

/// The schema version this module reads and writes.
pub const VERSION: u32 = 1;

/// The allocated bytes of an action entry when the header does not say.
pub const DEFAULT_BLOCK: u64 = 4096;

/// An entry's identity in a trace: the first 64 bits of its ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TraceId(pub u64);

impl TraceId {
    /// The compact form of a Go cache ID.
    pub fn of(id: &Id) -> TraceId {
        TraceId(id.prefix64())
    }

    /// Parses 16 to 64 hex digits (either case); the first 16 count.
    pub fn parse(s: &str) -> Option<TraceId> {
        let b = s.as_bytes();
        if !(16..=64).contains(&b.len()) || !b.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u64::from_str_radix(&s[..16], 16).ok().map(TraceId)
    }

    /// The 16 lowercase hex digits.
    pub fn to_hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

impl Serialize for TraceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// The first line of a trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// The schema version ([`VERSION`]).
    #[serde(rename = "gocache_trace")]
    pub version: u32,
    /// Who recorded it: `prog`, `hook`, `wrapper`, `ci`, `synth`, …
    pub source: String,
    /// The machine, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Unix seconds when recording began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// Allocated bytes of one action entry.
    #[serde(default = "default_block")]
    pub block: u64,
    /// Anything, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn default_block() -> u64 {
    DEFAULT_BLOCK
}

impl Header {
    /// A version-1 header for `source`.
    pub fn new(source: &str) -> Header {
        Header {
            version: VERSION,
            source: source.into(),
            host: None,
            created: None,
            block: DEFAULT_BLOCK,
            note: None,
        }
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// go looked an action up (GOCACHEPROG `get`, or Go's `cache.Get`).
    Get,
    /// go stored an action and its output.
    Put,
    /// An entry first seen (by a scan or the hook).
    New,
    /// A use seen by the wrapper or the hook.
    Use,
    /// A go command's session ended (`gocache prog`): where the real trim
    /// checks the limits, besides every 16 MiB of puts.
    End,
}

/// The entry an event is about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// An action entry (`-a`), naming an output.
    #[default]
    Action,
    /// An output file (`-d`).
    Output,
    /// An executable directory (`-d`, Go 1.24+ `go run` / `go tool`).
    Exe,
}

impl EntryKind {
    fn is_action(&self) -> bool {
        *self == EntryKind::Action
    }
}

impl From<crate::model::Kind> for EntryKind {
    fn from(k: crate::model::Kind) -> EntryKind {
        match k {
            crate::model::Kind::Action => EntryKind::Action,
            crate::model::Kind::Output => EntryKind::Output,
            crate::model::Kind::Exe => EntryKind::Exe,
        }
    }
}

/// One line of a trace after the header. Which fields an event carries
/// depends on `ev` and `kind`; see the module doc.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// Unix milliseconds.
    pub t: i64,
    /// What happened.
    pub ev: Op,
    /// The entry it is about.
    #[serde(skip_serializing_if = "EntryKind::is_action")]
    pub kind: EntryKind,
    /// The action ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a: Option<TraceId>,
    /// The output (or executable) ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub o: Option<TraceId>,
    /// For an action: its output is an executable directory.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub exe: bool,
    /// Allocated bytes of `o`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// For `get`: whether it hit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit: Option<bool>,
    /// Seconds spent rebuilding (for `put`, `new`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// An executable's file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// For `get`: the action whose cached result go was using when it
    /// asked (this lookup is an entry kept beside that action, Go's
    /// `Subkey(action, desc)` for its compiler or linker output, its list
    /// of compiled source files or its cgo header): go asks it only after
    /// a hit of that action, never after a miss. For `put`: the action,
    /// missed in the same session, whose rebuild wrote this entry beside
    /// it: go writes it again whenever it rebuilds that action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub of: Option<TraceId>,
}

impl Event {
    /// A go command's session ended at `t`.
    pub fn end(t: i64) -> Event {
        Event::bare(t, Op::End, EntryKind::Action)
    }

    fn bare(t: i64, ev: Op, kind: EntryKind) -> Event {
        Event {
            t,
            ev,
            kind,
            a: None,
            o: None,
            exe: false,
            size: None,
            hit: None,
            cost: None,
            program: None,
            of: None,
        }
    }

    /// A `get` that missed.
    pub fn get_miss(t: i64, action: TraceId) -> Event {
        Event {
            a: Some(action),
            hit: Some(false),
            ..Event::bare(t, Op::Get, EntryKind::Action)
        }
    }

    /// A `get` that hit, answering `output` of `size` allocated bytes.
    pub fn get_hit(t: i64, action: TraceId, output: TraceId, size: u64) -> Event {
        Event {
            a: Some(action),
            o: Some(output),
            size: Some(size),
            hit: Some(true),
            ..Event::bare(t, Op::Get, EntryKind::Action)
        }
    }

    /// A `put` of `output` under `action`, with the rebuild's seconds when
    /// known.
    pub fn put(t: i64, action: TraceId, output: TraceId, size: u64, cost: Option<f64>) -> Event {
        Event {
            a: Some(action),
            o: Some(output),
            size: Some(size),
            cost,
            ..Event::bare(t, Op::Put, EntryKind::Action)
        }
    }

    /// A `new` or `use` of an entry; `a` for an action, `o` for what it
    /// names or is.
    pub fn seen(t: i64, ev: Op, kind: EntryKind, a: Option<TraceId>, o: TraceId) -> Event {
        Event {
            a,
            o: Some(o),
            ..Event::bare(t, ev, kind)
        }
    }

    /// Marks an action's output as an executable.
    pub fn with_exe(mut self, exe: bool) -> Event {
        self.exe = exe;
        self
    }

    /// Sets the size of `o`.
    pub fn with_size(mut self, size: u64) -> Event {
        self.size = Some(size);
        self
    }
}

/// A whole trace in memory (several segments merge into one).
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// The headers, one per segment, in file order.
    pub headers: Vec<Header>,
    /// The events, in file order.
    pub events: Vec<Event>,
    /// Events skipped because their `ev` is newer than this reader.
    pub skipped: u64,
}

impl Trace {
    /// The allocated bytes of an action entry: the first header's.
    pub fn block(&self) -> u64 {
        self.headers.first().map_or(DEFAULT_BLOCK, |h| h.block)
    }
}

/// Writes a header and events as JSON Lines.
pub fn write<'a>(
    out: &mut impl Write,
    header: &Header,
    events: impl IntoIterator<Item = &'a Event>,
) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, header)?;
    out.write_all(b"\n")?;
    for e in events {
        serde_json::to_writer(&mut *out, e)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// A line as read: a header or an event, fields borrowed from the line.
#[derive(Deserialize)]
struct Raw<'a> {
    gocache_trace: Option<u64>,
    t: Option<i64>,
    #[serde(borrow)]
    ev: Option<Cow<'a, str>>,
    kind: Option<EntryKind>,
    #[serde(borrow)]
    a: Option<Cow<'a, str>>,
    #[serde(borrow)]
    o: Option<Cow<'a, str>>,
    exe: Option<bool>,
    size: Option<u64>,
    hit: Option<bool>,
    cost: Option<f64>,
    program: Option<String>,
    #[serde(borrow)]
    of: Option<Cow<'a, str>>,
}

/// Reads a trace (one or several segments). `what` names the input in
/// errors (a file name). Errors say the line and what is wrong with it.
pub fn read(input: impl BufRead, what: &str) -> Result<Trace> {
    let mut trace = Trace {
        headers: Vec::new(),
        events: Vec::new(),
        skipped: 0,
    };
    for (n, line) in input.lines().enumerate() {
        let n = n + 1;
        let line = line.map_err(|e| Error::io("reading", what, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| Error::Invalid(format!("trace {what}, line {n}: {why}"));
        let raw: Raw = serde_json::from_str(&line).map_err(|e| bad(unreadable(&line, &e)))?;
        if let Some(v) = raw.gocache_trace {
            if v > u64::from(VERSION) {
                return Err(bad(format!(
                    "schema version {v} is newer than this gocache reads ({VERSION}); upgrade gocache"
                )));
            }
            let h: Header = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            trace.headers.push(h);
            continue;
        }
        if trace.headers.is_empty() {
            return Err(bad(
                "no header: a trace starts with a line like {\"gocache_trace\":1,\"source\":\"prog\"}"
                    .into(),
            ));
        }
        match event(raw) {
            Ok(Some(e)) => trace.events.push(e),
            Ok(None) => trace.skipped += 1,
            Err(why) => return Err(bad(why)),
        }
    }
    if trace.headers.is_empty() {
        return Err(Error::Invalid(format!(
            "trace {what} is empty: it has no header line"
        )));
    }
    Ok(trace)
}

/// Why a line could not be read, in a trace's own terms: not JSON at all,
/// or JSON with a field of the wrong type (which field, and what it must
/// be), or JSON that is not an object.
fn unreadable(line: &str, e: &serde_json::Error) -> String {
    use serde_json::Value;
    if !e.is_data() {
        return format!("not JSON ({e}); each line is a JSON object");
    }
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line) else {
        return "not a JSON object: each line is a header like {\"gocache_trace\":1,\"source\":\"prog\"} or an event like {\"t\":1767225600123,\"ev\":\"get\",\"a\":\"9f3c0e21d4a8b7c6\",\"hit\":false}".into();
    };
    const MUST: [(&str, &str); 13] = [
        ("gocache_trace", "the schema version, a whole number"),
        ("t", "a time in Unix milliseconds, a whole number"),
        ("ev", "a string: get, put, new or use"),
        ("kind", "one of \"action\", \"output\", \"exe\""),
        ("a", "a string of 16 hex digits (an action's ID)"),
        ("o", "a string of 16 hex digits (an output's ID)"),
        ("exe", "true or false"),
        ("size", "a whole number of bytes"),
        ("hit", "true or false"),
        ("cost", "a number of seconds"),
        ("program", "a string"),
        ("source", "a string"),
        ("of", "a string of 16 hex digits (an action's ID)"),
    ];
    for (field, must) in MUST {
        if let Some(v) = fields.get(field) {
            let ok = match field {
                "gocache_trace" | "t" | "size" => v.is_u64() || (field == "t" && v.is_i64()),
                "exe" | "hit" => v.is_boolean(),
                "cost" => v.is_number(),
                "kind" => matches!(v.as_str(), Some("action" | "output" | "exe")),
                _ => v.is_string(),
            };
            if !ok {
                return format!("\"{field}\" must be {must}, not {v}");
            }
        }
    }
    format!("not a trace line ({e})")
}

/// Checks one event line; `None` for an `ev` this reader does not know.
fn event(raw: Raw) -> std::result::Result<Option<Event>, String> {
    let t = raw.t.ok_or("an event needs \"t\" (Unix milliseconds)")?;
    let ev = match raw.ev.as_deref() {
        Some("get") => Op::Get,
        Some("put") => Op::Put,
        Some("new") => Op::New,
        Some("use") => Op::Use,
        Some("end") => Op::End,
        Some(_) => return Ok(None),
        None => return Err("an event needs \"ev\" (get, put, new, use or end)".into()),
    };
    let id = |field: &str, v: &Option<Cow<str>>| -> std::result::Result<Option<TraceId>, String> {
        match v {
            None => Ok(None),
            Some(s) => TraceId::parse(s)
                .map(Some)
                .ok_or_else(|| format!("\"{field}\" must be 16 to 64 hex digits, not {s:?}")),
        }
    };
    let a = id("a", &raw.a)?;
    let o = id("o", &raw.o)?;
    let of = id("of", &raw.of)?;
    let kind = raw.kind.unwrap_or_default();
    if let Some(c) = raw.cost
        && !(c.is_finite() && c >= 0.0)
    {
        return Err(format!("\"cost\" must be seconds, 0 or more, not {c}"));
    }
    let need = |ok: bool, why: &str| if ok { Ok(()) } else { Err(why.to_string()) };
    if ev == Op::End {
        return Ok(Some(Event::bare(t, Op::End, EntryKind::Action)));
    }
    match ev {
        Op::Get => {
            need(kind.is_action(), "a get is about an action")?;
            need(a.is_some(), "a get needs \"a\"")?;
            need(raw.hit.is_some(), "a get needs \"hit\"")?;
        }
        Op::Put => {
            need(kind.is_action(), "a put is about an action")?;
            need(a.is_some() && o.is_some(), "a put needs \"a\" and \"o\"")?;
        }
        Op::New | Op::Use => match kind {
            EntryKind::Action => need(a.is_some(), "an action event needs \"a\"")?,
            EntryKind::Output | EntryKind::Exe => {
                need(o.is_some(), "an output or exe event needs \"o\"")?
            }
        },
        Op::End => {}
    }
    Ok(Some(Event {
        t,
        ev,
        kind,
        a,
        o,
        exe: raw.exe.unwrap_or(false),
        size: raw.size,
        hit: raw.hit,
        cost: raw.cost,
        program: raw.program,
        of: of.filter(|_| matches!(ev, Op::Get | Op::Put)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> TraceId {
        TraceId(n)
    }

    #[test]
    fn events_round_trip_through_json_lines() {
        let mut h = Header::new("prog");
        h.host = Some("ci-7".into());
        h.created = Some(1_767_225_600);
        let events = vec![
            Event::get_miss(1000, id(1)),
            Event::put(1800, id(1), id(2), 8192, Some(0.8)),
            Event::get_hit(2000, id(1), id(2), 8192),
            Event::seen(3000, Op::New, EntryKind::Action, Some(id(3)), id(4))
                .with_exe(true)
                .with_size(1 << 20),
            Event {
                program: Some("stringer".into()),
                ..Event::seen(3000, Op::New, EntryKind::Exe, None, id(4)).with_size(1 << 20)
            },
            Event::seen(4000, Op::Use, EntryKind::Exe, None, id(4)),
            Event::end(4100),
            Event {
                of: Some(id(1)),
                ..Event::get_miss(4200, id(5))
            },
            Event {
                of: Some(id(5)),
                ..Event::put(4300, id(6), id(7), 4096, None)
            },
        ];
        let mut buf = Vec::new();
        write(&mut buf, &h, &events).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert_eq!(
            text.lines().nth(1).unwrap(),
            r#"{"t":1000,"ev":"get","a":"0000000000000001","hit":false}"#
        );
        assert!(text.lines().nth(5).unwrap().contains(r#""kind":"exe""#));
        assert_eq!(text.lines().nth(7).unwrap(), r#"{"t":4100,"ev":"end"}"#);
        assert_eq!(
            text.lines().nth(8).unwrap(),
            r#"{"t":4200,"ev":"get","a":"0000000000000005","hit":false,"of":"0000000000000001"}"#
        );
        assert!(
            text.lines()
                .nth(9)
                .unwrap()
                .ends_with(r#""of":"0000000000000005"}"#),
            "a put keeps the action whose rebuild wrote it: {text}"
        );
        let back = read(&buf[..], "mem").unwrap();
        assert_eq!(back.headers, vec![h]);
        assert_eq!(back.events, events);
        assert_eq!(back.skipped, 0);
    }

    #[test]
    fn full_ids_and_their_compact_form_name_the_same_entry() {
        let full = Id([0xab; 32]);
        assert_eq!(TraceId::parse(&full.to_hex()), Some(TraceId::of(&full)));
        assert_eq!(TraceId::parse("ABABABABABABABAB"), Some(TraceId::of(&full)));
        assert_eq!(TraceId::of(&full).to_hex(), "abababababababab");
        for bad in ["", "abc", "zzzzzzzzzzzzzzzz", &"a".repeat(65)] {
            assert_eq!(TraceId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn segments_unknown_fields_and_newer_events_are_read() {
        let text = concat!(
            "{\"gocache_trace\":1,\"source\":\"hook\",\"block\":512,\"future\":1}\n",
            "\n",
            "{\"t\":5,\"ev\":\"use\",\"kind\":\"output\",\"o\":\"00000000000000ff\",\"later\":[1]}\n",
            "{\"t\":6,\"ev\":\"evict\",\"a\":\"00000000000000ff\"}\n",
            "{\"gocache_trace\":1,\"source\":\"prog\"}\n",
            "{\"t\":7,\"ev\":\"get\",\"a\":\"00000000000000ff\",\"hit\":false}\n",
        );
        let t = read(text.as_bytes(), "mem").unwrap();
        assert_eq!(t.headers.len(), 2);
        assert_eq!(t.block(), 512);
        assert_eq!(t.headers[1].block, DEFAULT_BLOCK);
        assert_eq!(t.events.len(), 2);
        assert_eq!(t.skipped, 1);
    }

    #[test]
    fn bad_traces_say_which_line_and_why() {
        let h = "{\"gocache_trace\":1,\"source\":\"prog\"}\n";
        let cases = [
            ("", "no header line"),
            ("{\"t\":1,\"ev\":\"get\"}\n", "line 1: no header"),
            (
                "{\"gocache_trace\":2,\"source\":\"x\"}\n",
                "newer than this gocache",
            ),
            ("{\"gocache_trace\":1}\n", "line 1: missing field `source`"),
            ("not json\n", "line 1: not JSON"),
            (
                "{\"a\":1}\n",
                "line 1: \"a\" must be a string of 16 hex digits",
            ),
        ];
        for (text, needle) in cases {
            let e = read(text.as_bytes(), "t.jsonl").unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("t.jsonl"), "{text:?}: {e}");
        }
        let events = [
            ("{\"ev\":\"get\"}", "needs \"t\""),
            ("{\"t\":1}", "needs \"ev\""),
            ("{\"t\":1,\"ev\":\"get\",\"hit\":true}", "needs \"a\""),
            (
                "{\"t\":1,\"ev\":\"get\",\"a\":\"0000000000000001\"}",
                "needs \"hit\"",
            ),
            (
                "{\"t\":1,\"ev\":\"put\",\"a\":\"0000000000000001\"}",
                "needs \"a\" and \"o\"",
            ),
            (
                "{\"t\":1,\"ev\":\"get\",\"a\":\"xyz\",\"hit\":true}",
                "hex digits",
            ),
            ("{\"t\":1,\"ev\":\"new\",\"kind\":\"exe\"}", "needs \"o\""),
            (
                "{\"t\":1,\"ev\":\"new\",\"kind\":\"dir\"}",
                "\"kind\" must be one of \"action\", \"output\", \"exe\", not \"dir\"",
            ),
            (
                "{\"a\":1}",
                "\"a\" must be a string of 16 hex digits (an action's ID), not 1",
            ),
            (
                "{\"t\":\"now\"}",
                "\"t\" must be a time in Unix milliseconds",
            ),
            ("[1]", "not a JSON object"),
            (
                "{\"t\":1,\"ev\":\"put\",\"a\":\"0000000000000001\",\"o\":\"0000000000000001\",\"cost\":-1}",
                "\"cost\" must be",
            ),
        ];
        for (line, needle) in events {
            let text = format!("{h}{line}\n");
            let e = read(text.as_bytes(), "t.jsonl").unwrap_err().to_string();
            assert!(e.contains("line 2") && e.contains(needle), "{line}: {e}");
        }
    }
}
