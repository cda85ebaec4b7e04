//! The floor of the GOCACHEPROG protocol: a server that answers every get
//! from memory, with no file access per request, for `scripts/bench.sh
//! prog` to run beside Go's own cache, `gocache prog` and go-cacher.
//!
//! ```sh
//! cargo build --release --example prog_floor
//! GOCACHE=DIR GOCACHEPROG="target/release/examples/prog_floor SNAPSHOT" go build std
//! ```
//!
//! It reads requests as `gocache prog` does (the same parser, the same
//! buffer) and answers them on the thread that reads them, as `gocache
//! prog` does on two CPUs, holding answers back while more requests wait
//! as `gocache prog` does ([`gocache::prog::DEFER_AT_MOST`]). A get it has not seen is learned from the
//! cache directory in `$GOCACHE` (its action entry read, its output
//! checked); after `close`, what it learned is appended to SNAPSHOT, so the
//! next run loads SNAPSHOT with one read and answers every get it knows
//! with a lookup and a copy. What is left between Go's own cache and this
//! server is what the protocol costs on this machine: the go command's
//! JSON and channels, two pipe writes and two wake-ups per request.
//!
//! It is not a cache: it declares no `put` (the go command then stores
//! nothing), it never checks that a remembered output is still there, and
//! a warm build of an unchanged tree is the only thing it is good for.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use gocache::layout::{ActionEntry, EntryName, Id};
use gocache::prog::{Command, DEFER_AT_MOST, parse_request, requests_waiting};

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(snapshot), None) = (args.next(), args.next()) else {
        eprintln!("usage: GOCACHE=DIR GOCACHEPROG=\"prog_floor SNAPSHOT\" go build ...");
        std::process::exit(2);
    };
    let Some(cache) = std::env::var_os("GOCACHE").filter(|c| !c.is_empty()) else {
        eprintln!("prog_floor: GOCACHE is not set: it must name the cache directory");
        std::process::exit(2);
    };
    if let Err(e) = serve(Path::new(&cache), &PathBuf::from(snapshot)) {
        eprintln!("prog_floor: {e}");
        std::process::exit(1);
    }
}

/// The answers known, by action ID: everything after `{"ID":N`.
type Known = HashMap<Id, Vec<u8>>;

fn serve(cache: &Path, snapshot: &Path) -> std::io::Result<()> {
    send(b"{\"ID\":0,\"KnownCommands\":[\"get\",\"close\"]}\n")?;
    let mut known = load(snapshot)?;
    let mut learned = Vec::new();
    let mut input = BufReader::with_capacity(256 << 10, std::io::stdin().lock());
    let mut line = Vec::new();
    let mut out = Vec::with_capacity(4096);
    let mut deferred = 0;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (id, cmd) = parse_request(&line).map_err(std::io::Error::other)?;
        let _ = write!(out, "{{\"ID\":{id}");
        match cmd {
            Command::Get { action } => {
                let suffix = known.entry(action).or_insert_with(|| {
                    let s = learn(cache, action);
                    if s.is_some() {
                        learned.push(action);
                    }
                    s.unwrap_or_else(|| b",\"Miss\":true}\n".to_vec())
                });
                out.extend_from_slice(suffix);
            }
            Command::Close => {
                out.extend_from_slice(b"}\n");
                send(&out)?;
                break;
            }
            Command::Put { .. } | Command::Bad { .. } => {
                return Err(std::io::Error::other(
                    "only get and close are served here (a put means the build was not warm)",
                ));
            }
        }
        // Held while another request is already read, as gocache prog
        // holds its answers.
        if requests_waiting(input.buffer(), 1) > 0 && deferred < DEFER_AT_MOST {
            deferred += 1;
        } else {
            send(&out)?;
            out.clear();
            deferred = 0;
        }
    }
    save(snapshot, &known, &learned)
}

/// One get answered from the cache directory, as `gocache prog` finds it:
/// the action entry, then the output at the size the entry gives.
fn learn(cache: &Path, action: Id) -> Option<Vec<u8>> {
    use rustix::fs::{Mode, OFlags};
    // Never through a link: only what is in the cache directory is read.
    let apath = EntryName::action(action).path_in(cache);
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut data = Vec::new();
    std::fs::File::from(rustix::fs::open(&apath, flags, Mode::empty()).ok()?)
        .read_to_end(&mut data)
        .ok()?;
    let entry = ActionEntry::parse(&data, Some(action)).ok()?;
    let opath = EntryName::data(entry.output).path_in(cache);
    let meta = std::fs::symlink_metadata(&opath).ok()?;
    if !meta.is_file() || meta.len() != entry.size {
        return None;
    }
    let time = chrono::DateTime::from_timestamp_nanos(entry.time_nanos)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let output = base64::engine::general_purpose::STANDARD.encode(entry.output.0);
    let path = opath.to_str()?;
    let json = |s: &str| serde_json::to_string(s).expect("a string serializes");
    Some(
        format!(
            ",\"OutputID\":{},\"Size\":{},\"Time\":{},\"DiskPath\":{}}}\n",
            json(&output),
            entry.size,
            json(&time),
            json(path)
        )
        .into_bytes(),
    )
}

/// Writes all of `buf` to standard output, with no buffer in between.
fn send(buf: &[u8]) -> std::io::Result<()> {
    let mut rest = buf;
    while !rest.is_empty() {
        match rustix::io::write(rustix::stdio::stdout(), rest) {
            Ok(n) => rest = &rest[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// SNAPSHOT: a line per action, its hex ID, a space and the answer's
/// suffix (one JSON line, so no newline inside).
fn load(snapshot: &Path) -> std::io::Result<Known> {
    let mut data = Vec::new();
    match std::fs::File::open(snapshot) {
        Ok(mut f) => f.read_to_end(&mut data)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Known::new()),
        Err(e) => return Err(e),
    };
    let mut known = Known::new();
    for l in data.split_inclusive(|&c| c == b'\n') {
        let Some((hex, suffix)) = l.split_at_checked(gocache::layout::HEX_LEN) else {
            continue;
        };
        if let (Some(id), Some(suffix)) = (Id::from_hex(hex), suffix.strip_prefix(b" ")) {
            known.insert(id, suffix.to_vec());
        }
    }
    Ok(known)
}

fn save(snapshot: &Path, known: &Known, learned: &[Id]) -> std::io::Result<()> {
    if learned.is_empty() {
        return Ok(());
    }
    let mut out = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(snapshot)?,
    );
    for id in learned {
        out.write_all(id.to_hex().as_bytes())?;
        out.write_all(b" ")?;
        out.write_all(&known[id])?;
    }
    out.flush()
}
