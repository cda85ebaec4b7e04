//! `gocache go`: a wrapper around the real go command.
//!
//! It runs the real go with the same arguments, environment and stdio,
//! exits with go's status, and afterwards runs the post-insert hook. This
//! module holds all of it but the command line and the hook itself, which
//! the binary passes in ([`Wrap`]): finding the real go, starting it (or,
//! nested, becoming it) with signals passed on, rewriting a `go run`
//! command line so the exact executable used is seen, the shim that sees
//! it ([`shim`]) and reading back what it saw; and, after go exits, which
//! cached executable a `go tool NAME` ran ([`latest_exe_named`], which
//! asks the index).
//!
//! # Exact uses of cached executables
//!
//! - `go run`: the wrapper adds `-exec '<gocache> __exec-shim'`. Go still
//!   builds, caches and looks up the executable as usual (`-exec` only
//!   changes how it is started; `work/buildid.go` caches it either way), then
//!   runs `<shim> <executable> <args>`. The shim appends the executable's
//!   path to a file the wrapper named in [`USES_ENV`] and `exec`s it, so its
//!   arguments, stdio, exit status and signals are the program's own. A
//!   `go run` that has an `-exec` of its own (on the command line, or in
//!   `GOFLAGS` from the environment or the go env file) is left alone, and
//!   so is one that prints the command that runs the program (`-n`, `-x`):
//!   go prints what it would print without the wrapper. The hook then sees
//!   the run by the executable's mtime, as after plain go.
//! - `go tool NAME`: there is no `-exec` for tools; after go exits, the hook
//!   records a use of the cached executable named after the tool that was
//!   touched most recently. If two builds of one tool are cached this may
//!   credit the wrong one; both are recent anyway.
//!
//! # Never a loop
//!
//! Installed as `go` (a symlink earlier on `PATH`, or an alias), the wrapper
//! runs `$GOCACHE_GO`, or the first `go` on `PATH` that is not gocache:
//!
//! - not itself (same device and inode, after following links: the
//!   README's symlink);
//! - not any gocache binary (a copy, another version): every gocache
//!   carries an ELF note named `gocache` ([`MARKER_NOTE`]), which
//!   [`is_gocache_binary`] finds in the first page of a candidate with one
//!   read, so the real go costs one 8 KiB read to recognise;
//! - not a candidate already seen to start gocache again. A script such as
//!   `exec gocache go "$@"` can only be found out by running it, so each
//!   hand-over is written in [`HANDOFF_ENV`] ([`Handoff`]): the wrapper's
//!   pid and the candidate. A gocache that starts as a wrapper and is that
//!   candidate's process (spawned: its parent is the wrapper; exec'd: its
//!   own pid is the one handed over) knows that the candidate led back to
//!   gocache, adds it to [`LOOPS_ENV`], and tries the next `go` on PATH. A
//!   real go in between breaks the match, so `go generate` running go is
//!   not mistaken for a loop.
//!
//! A script that runs gocache without `exec` (`gocache go "$@"`) puts a
//! shell between them: gocache then starts as the child of the
//! candidate's process, which runs not the candidate's file but its
//! interpreter ([`Handoff::came_back_through_script`], read from `/proc`
//! on Linux). A real go running go would be its own file; go itself
//! starts its own go by path (`go generate`), and a program or test that
//! runs go is one process further down. Deeper chains (a script running
//! a shell running gocache) match nothing; [`DEPTH_ENV`] counts the
//! wrappers nested inside each other, and past [`MAX_NESTING`] the
//! wrapper stops with exit 127. When every candidate is gocache, it says
//! which is what and exits 127, as a shell does for a missing command.
//!
//! [`DEPTH_ENV`] is set for the real go and everything it starts, so a `go`
//! started from inside (`go generate`, a program that runs go) goes
//! straight to the real one, without a second hook.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::layout::{EntryName, Suffix};

/// Names the real go explicitly (an absolute path).
pub const GO_ENV: &str = "GOCACHE_GO";
/// Set for the real go and everything it starts: "already wrapped", as the
/// number of wrappers nested inside each other (1 for the outermost's go).
pub const DEPTH_ENV: &str = "GOCACHE_WRAPPED";
/// The candidate a wrapper just handed over to ([`Handoff`]).
pub const HANDOFF_ENV: &str = "GOCACHE_GO_HANDOFF";
/// Candidates seen to start gocache again, joined like `PATH`.
pub const LOOPS_ENV: &str = "GOCACHE_GO_LOOPS";
/// Wrappers nested deeper than this stop: some `go` on PATH starts gocache
/// again through a shell. (`go generate` running go nests two.)
pub const MAX_NESTING: u32 = 10;
/// The file the exec shim appends executable paths to.
pub const USES_ENV: &str = "GOCACHE_USES_FILE";
/// The cache directory, for the shim.
pub const CACHE_ENV: &str = "GOCACHE_WRAPPER_CACHE";
/// The hidden subcommand the shim runs as.
pub const SHIM_SUBCOMMAND: &str = "__exec-shim";

/// The ELF note every gocache binary carries (see the module doc): a
/// note named `gocache`, of type [`MARKER_NOTE_TYPE`], in the file's first
/// page. Each binary places it with [`marker_note!`](crate::marker_note).
#[repr(C, align(4))]
pub struct MarkerNote {
    namesz: u32,
    descsz: u32,
    kind: u32,
    name: [u8; 8],
    desc: [u8; 8],
}

/// The note's type ("gcwr" read as a little-endian u32, for `readelf -n`).
pub const MARKER_NOTE_TYPE: u32 = u32::from_le_bytes(*b"gcwr");

/// The note itself.
pub const MARKER_NOTE: MarkerNote = MarkerNote {
    namesz: 8,
    descsz: 8,
    kind: MARKER_NOTE_TYPE,
    name: *b"gocache\0",
    desc: *b"wrapper\0",
};

/// Places [`MARKER_NOTE`] in the binary that invokes it (in its `main.rs`,
/// at the top level): marks the file as gocache for a wrapper looking for
/// the real go on PATH ([`is_gocache_binary`]), so that a copy of gocache
/// named `go` is passed over without being run. In the binary, not the
/// library: the linker keeps a `#[used]` static of the program's own
/// object, not necessarily one of a library's.
#[macro_export]
macro_rules! marker_note {
    () => {
        // An ELF note; Mach-O names sections otherwise.
        #[cfg(not(target_vendor = "apple"))]
        #[used]
        #[unsafe(link_section = ".note.gocache")]
        static MARKER: $crate::wrapper::MarkerNote = $crate::wrapper::MARKER_NOTE;
    };
}

/// How much of a candidate's start [`is_gocache_binary`] reads: linkers
/// put notes right after the ELF and program headers.
const MARKER_READ: usize = 8192;

/// True when `path` is an ELF file carrying gocache's [`MARKER_NOTE`]
/// (any gocache build, under any name). Reads at most 8 KiB; anything that
/// cannot be read or is not ELF (a script) is not gocache by this test.
pub fn is_gocache_binary(path: &Path) -> bool {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut buf = Vec::with_capacity(MARKER_READ);
    if f.take(MARKER_READ as u64).read_to_end(&mut buf).is_err() {
        return false;
    }
    has_marker_note(&buf)
}

/// Looks for [`MARKER_NOTE`] in the PT_NOTE segments that lie inside
/// `head`, the start of an ELF file (32 or 64 bit, either byte order).
fn has_marker_note(head: &[u8]) -> bool {
    if head.len() < 52 || &head[..4] != b"\x7fELF" {
        return false;
    }
    let wide = match head[4] {
        1 => false,
        2 => true,
        _ => return false,
    };
    let big = match head[5] {
        1 => false,
        2 => true,
        _ => return false,
    };
    let at = |off: usize, len: usize| -> Option<u64> {
        let b = head.get(off..off.checked_add(len)?)?;
        let mut v = 0u64;
        for i in 0..len {
            let byte = if big { b[i] } else { b[len - 1 - i] };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    };
    let word = if wide { 8 } else { 4 };
    let (phoff, phentsize, phnum) = match (
        at(if wide { 32 } else { 28 }, word),
        at(if wide { 54 } else { 42 }, 2),
        at(if wide { 56 } else { 44 }, 2),
    ) {
        (Some(o), Some(e), Some(n)) => (o, e, n),
        _ => return false,
    };
    for i in 0..phnum {
        let Some(ph) = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .and_then(|o| usize::try_from(o).ok())
        else {
            return false;
        };
        const PT_NOTE: u64 = 4;
        if at(ph, 4) != Some(PT_NOTE) {
            continue;
        }
        let (off, size, align) = if wide {
            (at(ph + 8, 8), at(ph + 32, 8), at(ph + 48, 8))
        } else {
            (at(ph + 4, 4), at(ph + 16, 4), at(ph + 28, 4))
        };
        let (Some(off), Some(size)) = (off, size) else {
            continue;
        };
        let align = if align == Some(8) { 8 } else { 4 };
        let (Ok(mut pos), Ok(size)) = (usize::try_from(off), usize::try_from(size)) else {
            continue;
        };
        let Some(end) = pos.checked_add(size).filter(|&e| e <= head.len()) else {
            continue;
        };
        let pad = |n: usize| n.div_ceil(align) * align;
        while pos + 12 <= end {
            let (Some(namesz), Some(descsz), Some(kind)) =
                (at(pos, 4), at(pos + 4, 4), at(pos + 8, 4))
            else {
                break;
            };
            let name_at = pos + 12;
            let (namesz, descsz) = (namesz as usize, descsz as usize);
            let name = head.get(name_at..name_at.saturating_add(namesz).min(end));
            if kind == u64::from(MARKER_NOTE_TYPE) && name == Some(&MARKER_NOTE.name[..]) {
                return true;
            }
            pos = name_at
                .saturating_add(pad(namesz))
                .saturating_add(pad(descsz));
        }
    }
    false
}

/// What a wrapper hands over to a candidate go, in [`HANDOFF_ENV`]: its pid,
/// whether it spawned the candidate (then waits for it and runs the hook)
/// or exec'd it (a nested wrapper, which becomes it), and the candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handoff {
    /// The wrapper's pid.
    pub pid: u32,
    /// True: the candidate runs as the wrapper's child; false: in its place.
    pub spawned: bool,
    /// The candidate.
    pub go: PathBuf,
}

impl Handoff {
    /// The value for [`HANDOFF_ENV`]: `spawn:PID:PATH` or `exec:PID:PATH`.
    pub fn to_env(&self) -> OsString {
        let mut v = OsString::from(format!(
            "{}:{}:",
            if self.spawned { "spawn" } else { "exec" },
            self.pid
        ));
        v.push(&self.go);
        v
    }

    /// Parses [`Handoff::to_env`]'s value; `None` for anything else.
    pub fn parse(v: &OsStr) -> Option<Handoff> {
        let b = v.as_bytes();
        let (spawned, rest) = if let Some(r) = b.strip_prefix(b"spawn:") {
            (true, r)
        } else {
            (false, b.strip_prefix(b"exec:")?)
        };
        let colon = rest.iter().position(|&c| c == b':')?;
        let pid = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
        let go = PathBuf::from(OsStr::from_bytes(&rest[colon + 1..]));
        go.is_absolute().then_some(Handoff { pid, spawned, go })
    }

    /// True when the process `pid` (whose parent is `ppid`) is where this
    /// hand-over arrived, with no real go in between: the candidate started
    /// gocache again. Spawned, the candidate's process is the wrapper's
    /// child; exec'd, it keeps the wrapper's pid. (A go the candidate ran
    /// would be a child of the candidate, matching neither.)
    pub fn came_back(&self, pid: u32, ppid: u32) -> bool {
        if self.spawned {
            ppid == self.pid
        } else {
            pid == self.pid
        }
    }

    /// True when this process's parent, `ppid`, is the process of this
    /// hand-over's candidate (spawned: the wrapper's child; exec'd: the
    /// wrapper's pid) yet does not run the candidate's file: an
    /// interpreter runs it as a script, which started gocache again
    /// without `exec`. Reads `/proc`; where that cannot be read, false (the
    /// nesting limit stops such a loop instead).
    pub fn came_back_through_script(&self, ppid: u32) -> bool {
        let candidates_process = if self.spawned {
            parent_of(ppid) == Some(self.pid)
        } else {
            ppid == self.pid
        };
        candidates_process && runs_file(ppid, &self.go) == Some(false)
    }
}

/// The parent of process `pid` (Linux: `/proc/PID/stat`).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID ...": COMM may hold anything but ends at the
    // last ')'.
    let after = &stat[stat.iter().rposition(|&c| c == b')')? + 1..];
    let mut fields = after
        .split(|c| c.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    std::str::from_utf8(fields.nth(1)?).ok()?.parse().ok()
}

/// Whether process `pid` runs the file `exe` (Linux: `/proc/PID/exe`);
/// `None` when that cannot be read.
fn runs_file(pid: u32, exe: &Path) -> Option<bool> {
    let running = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
    let file = std::fs::metadata(exe).ok()?;
    Some(running.dev() == file.dev() && running.ino() == file.ino())
}

/// Why a `go` on PATH was passed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// It is this very executable (a link to it, or itself).
    Itself,
    /// It is a gocache binary (carries [`MARKER_NOTE`]).
    Gocache,
    /// Running it started gocache again (see [`Handoff`]).
    Loops,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Skipped::Itself => "is gocache itself",
            Skipped::Gocache => "is a gocache binary",
            Skipped::Loops => "runs gocache again",
        })
    }
}

/// Why the real go could not be found.
#[derive(Debug, thiserror::Error)]
pub enum FindGoError {
    /// `$GOCACHE_GO` is set but unusable.
    #[error(
        "$GOCACHE_GO is {0:?}, which is not an executable file (it must be an absolute path to the real go)"
    )]
    BadEnv(PathBuf),
    /// `$GOCACHE_GO` names gocache, or something that runs it again.
    #[error("$GOCACHE_GO is {0:?}, which {1}; it must name the real go")]
    EnvIsGocache(PathBuf, Skipped),
    /// No `go` on PATH but gocache.
    #[error(
        "no go command found on PATH other than gocache itself{}; install Go, or set GOCACHE_GO to the real go",
        list_skipped(.0)
    )]
    NotFound(Vec<(PathBuf, Skipped)>),
}

fn list_skipped(skipped: &[(PathBuf, Skipped)]) -> String {
    if skipped.is_empty() {
        return String::new();
    }
    let each: Vec<String> = skipped
        .iter()
        .map(|(p, why)| format!("{} {why}", p.display()))
        .collect();
    format!(" ({})", each.join(", "))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

/// Why `cand` is not the real go, if it is not.
fn not_go(cand: &Path, me: &Path, loops: &[PathBuf]) -> Option<Skipped> {
    if same_file(cand, me) {
        Some(Skipped::Itself)
    } else if loops.iter().any(|l| l == cand || same_file(l, cand)) {
        Some(Skipped::Loops)
    } else if is_gocache_binary(cand) {
        Some(Skipped::Gocache)
    } else {
        None
    }
}

/// Finds the real go: `$GOCACHE_GO`, else the first `go` on `path` that is
/// not `me` (gocache's own executable), not a gocache binary, and not one
/// of `loops` (candidates seen to start gocache again).
pub fn find_real_go(
    env_go: Option<&OsStr>,
    path: Option<&OsStr>,
    me: &Path,
    loops: &[PathBuf],
) -> Result<PathBuf, FindGoError> {
    if let Some(g) = env_go.filter(|g| !g.is_empty()) {
        let g = PathBuf::from(g);
        if !(g.is_absolute() && is_executable_file(&g)) {
            return Err(FindGoError::BadEnv(g));
        }
        return match not_go(&g, me, loops) {
            None => Ok(g),
            Some(why) => Err(FindGoError::EnvIsGocache(g, why)),
        };
    }
    let mut skipped = Vec::new();
    for dir in std::env::split_paths(path.unwrap_or_default()) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        let cand = dir.join("go");
        if !is_executable_file(&cand) {
            continue;
        }
        match not_go(&cand, me, loops) {
            None => return Ok(cand),
            Some(why) => skipped.push((cand, why)),
        }
    }
    Err(FindGoError::NotFound(skipped))
}

/// Now (Unix ns) by the clock file times are stamped from (Linux takes a
/// file's mtime from the coarse real-time clock, which can lag the precise
/// one by a tick): the wrapper reads it just before it starts go, and the
/// hook credits to the command's module the entries whose mtime is later
/// (see [`crate::index::Index::credit_module`]). An entry written before,
/// even in the same tick, is not later.
pub fn file_clock_ns() -> i64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    t.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as i64)
}

/// Go subcommands that never write the build cache: no hook after them.
/// When in doubt the hook runs (it is cheap when nothing changed).
pub const NO_HOOK: &[&str] = &["version", "env", "help", "fmt", "doc", "telemetry", "bug"];

/// True when the hook should run after `go <args>`.
pub fn wants_hook(args: &[OsString]) -> bool {
    match args.iter().find(|a| !a.as_bytes().starts_with(b"-")) {
        None => false,
        Some(cmd) => !NO_HOOK.iter().any(|n| cmd.as_bytes() == n.as_bytes()),
    }
}

/// The go subcommand (first argument not starting with `-`).
pub fn subcommand(args: &[OsString]) -> Option<&OsStr> {
    args.iter()
        .find(|a| !a.as_bytes().starts_with(b"-"))
        .map(|a| a.as_os_str())
}

/// Rewrites `go run ...` to start the program through the shim
/// (`shim` is the gocache executable). Returns `None` when the command is
/// not `go run`, has an `-exec` of its own or prints its commands (`-n`,
/// `-x`) among go's flags, or the path cannot be quoted for go. (`GOFLAGS`
/// is [`goflags_keep_go_run`]'s.)
pub fn with_exec_shim(args: &[OsString], shim: &Path) -> Option<Vec<OsString>> {
    let pos = args.iter().position(|a| a == "run")?;
    // "run" must be the subcommand, not an argument after it.
    if args[..pos].iter().any(|a| !a.as_bytes().starts_with(b"-")) {
        return None;
    }
    if run_flags(&args[pos + 1..]).any(keeps_go_run) {
        return None;
    }
    // go splits -exec with str.SplitQuotedFields: single quotes protect
    // spaces; a path holding a quote or newline cannot be passed.
    let p = shim.to_str()?;
    if p.contains(['\'', '"', '\n']) {
        return None;
    }
    let value = format!("'{p}' {SHIM_SUBCOMMAND}");
    let mut out = args.to_vec();
    out.splice(
        pos + 1..pos + 1,
        [OsString::from("-exec"), OsString::from(value)],
    );
    Some(out)
}

/// The flags of go's build flags and `go run`'s that take a value, as in
/// `-tags X` (the rest are booleans): what tells a flag's value from the
/// package.
const RUN_VALUE_FLAGS: &[&str] = &[
    "C",
    "asmflags",
    "buildmode",
    "compiler",
    "covermode",
    "coverpkg",
    "debug-actiongraph",
    "debug-runtime-trace",
    "debug-trace",
    "exec",
    "gccgoflags",
    "gcflags",
    "installsuffix",
    "ldflags",
    "mod",
    "modfile",
    "overlay",
    "p",
    "pgo",
    "pkgdir",
    "tags",
    "toolexec",
];

/// go's own flags among `after_run`, the arguments after `run`: up to the
/// package (what follows it is the program's), each without its value.
fn run_flags(after_run: &[OsString]) -> impl Iterator<Item = &[u8]> {
    let mut rest = after_run.iter();
    std::iter::from_fn(move || {
        let flag = rest.next()?.as_bytes();
        if flag == b"--" || flag == b"-" || !flag.starts_with(b"-") {
            return None;
        }
        let name = flag.strip_prefix(b"--").unwrap_or(&flag[1..]);
        if !name.contains(&b'=') && RUN_VALUE_FLAGS.iter().any(|v| v.as_bytes() == name) {
            rest.next();
        }
        Some(flag)
    })
}

/// True for a flag that leaves `go run` to go: an `-exec` (the user's),
/// `-n` or `-x` (go prints the command that runs the program) set to true.
fn keeps_go_run(flag: &[u8]) -> bool {
    let flag = flag
        .strip_prefix(b"--")
        .unwrap_or(flag.strip_prefix(b"-").unwrap_or(flag));
    let (name, value) = match flag.iter().position(|&c| c == b'=') {
        Some(eq) => (&flag[..eq], Some(&flag[eq + 1..])),
        None => (flag, None),
    };
    match name {
        b"exec" => true,
        // strconv.ParseBool's false; anything else go takes for true or
        // refuses.
        b"n" | b"x" => !matches!(
            value,
            Some(b"0" | b"f" | b"F" | b"false" | b"FALSE" | b"False")
        ),
        _ => false,
    }
}

/// True when the go command's `GOFLAGS` (`goflags`, as
/// [`crate::layout::go_setting`] reads it) leave `go run` to go: they set
/// `-exec`, `-n` or `-x` (see [`with_exec_shim`]).
pub fn goflags_keep_go_run(goflags: &OsStr) -> bool {
    split_quoted(goflags.as_bytes())
        .iter()
        .any(|f| f.starts_with(b"-") && keeps_go_run(f))
}

/// Fields separated by spaces, a field in single or double quotes taken
/// whole (as go's `quoted.Split` reads GOFLAGS).
fn split_quoted(s: &[u8]) -> Vec<Vec<u8>> {
    let mut fields = Vec::new();
    let mut rest = s;
    loop {
        rest = &rest[rest.iter().take_while(|c| c.is_ascii_whitespace()).count()..];
        let Some(&first) = rest.first() else {
            return fields;
        };
        let (field, len) = match first {
            b'\'' | b'"' => match rest[1..].iter().position(|&c| c == first) {
                Some(end) => (&rest[1..end + 1], end + 2),
                None => (&rest[1..], rest.len()),
            },
            _ => {
                let end = rest
                    .iter()
                    .position(|c| c.is_ascii_whitespace())
                    .unwrap_or(rest.len());
                (&rest[..end], end)
            }
        };
        fields.push(field.to_vec());
        rest = &rest[len..];
    }
}

/// If `exe` is a cached executable `<cache>/<xx>/<hex>-d/<program>` of the
/// cache in `cache_dir`, its entry name.
pub fn cached_exe_entry(exe: &Path, cache_dir: &Path) -> Option<EntryName> {
    let dir = exe.parent()?;
    let name = EntryName::parse_os(dir.file_name()?)?;
    if name.suffix != Suffix::Data {
        return None;
    }
    let sub = dir.parent()?;
    if sub.file_name()?.as_bytes() != crate::layout::subdir_name(name.subdir()).as_bytes() {
        return None;
    }
    let root = sub.parent()?;
    (root == cache_dir || same_file(root, cache_dir)).then_some(name)
}

/// What the shim writes for an executable it is about to run: its path
/// when it is in the cache; otherwise (the first run of a program, which Go
/// starts from its build directory) `sha256 <hex>` of its content, which is
/// the name of the entry Go cached it under.
pub fn use_line(exe: &Path, cache_dir: Option<&Path>) -> Option<Vec<u8>> {
    if let Some(c) = cache_dir
        && cached_exe_entry(exe, c).is_some()
    {
        let mut l = exe.as_os_str().as_bytes().to_vec();
        l.push(b'\n');
        return Some(l);
    }
    use sha2::Digest;
    let mut f = std::fs::File::open(exe).ok()?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match std::io::Read::read(&mut f, &mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(_) => return None,
        }
    }
    let id = crate::layout::Id(h.finalize().into());
    Some(format!("sha256 {id}\n").into_bytes())
}

/// Reads what the shim wrote (see [`use_line`]) and maps it to the entries
/// of `cache_dir`.
pub fn read_uses(file: &Path, cache_dir: &Path) -> Vec<EntryName> {
    let Ok(data) = std::fs::read(file) else {
        return Vec::new();
    };
    data.split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| match l.strip_prefix(b"sha256 ") {
            Some(hex) => crate::layout::Id::from_hex(hex).map(EntryName::data),
            None => cached_exe_entry(Path::new(OsStr::from_bytes(l)), cache_dir),
        })
        .collect()
}

/// The program name of `go tool NAME` (the last element of a tool path
/// such as `golang.org/x/tools/cmd/stringer`), if the command is one.
pub fn tool_name(args: &[OsString]) -> Option<String> {
    let pos = args.iter().position(|a| a == "tool")?;
    if args[..pos].iter().any(|a| !a.as_bytes().starts_with(b"-")) {
        return None;
    }
    let name = args[pos + 1..]
        .iter()
        .find(|a| !a.as_bytes().starts_with(b"-"))?;
    let s = name.to_str()?;
    Some(s.rsplit('/').next().unwrap_or(s).to_string())
}

// Running go: what `gocache go ARGS` does, start to end.

/// What the binary gives the wrapper: its own executable, where the
/// hook's cache is, and the hook.
pub struct Wrap<'a> {
    /// gocache's own executable: the shim `go run` starts, and never taken
    /// for the real go.
    pub me: PathBuf,
    /// The cache go is to use, set as its `GOCACHE` (`gocache --cache-dir
    /// DIR go`); `None`: go finds its own, as gocache does.
    pub go_cache: Option<PathBuf>,
    /// Where the hook's cache is, as `go env GOCACHE` finds it; asked only
    /// when the go command may write the cache ([`wants_hook`]). `None`:
    /// no hook (and no shim).
    pub locate: &'a dyn Fn() -> Option<PathBuf>,
    /// The hook, after go exits, with what the wrapper saw; its problems
    /// are its own to report, never a failure of the go command.
    pub hook: &'a dyn Fn(AfterGo),
}

/// What the wrapper saw of the go command it ran, for the hook.
#[derive(Debug, Default)]
pub struct AfterGo {
    /// Cached executables `go run` started (through the exec shim).
    pub exe_uses: Vec<EntryName>,
    /// The program name of `go tool NAME`, if that was the command.
    pub tool: Option<String>,
    /// The Go module the command ran in: what it added and used is
    /// credited to it.
    pub module: Option<crate::gomod::Module>,
    /// When the command started ([`file_clock_ns`]): only entries with a
    /// later mtime count as added or used by it.
    pub started_ns: Option<i64>,
}

/// Why the wrapper could not run go; [`WrapError::exit_code`] is its
/// status, as a shell's for a command it cannot find or start.
#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    /// Wrappers nested [`MAX_NESTING`] deep: a `go` on PATH starts
    /// gocache again through a shell.
    #[error(
        "{depth} wrapped go commands nested inside each other{}: a `go` on PATH seems to run \
         gocache again (a script without `exec`?); make it `exec gocache go \"$@\"`, or set \
         GOCACHE_GO to the real go",
        .through.as_ref().map(|g| format!(", each through {}", g.display())).unwrap_or_default()
    )]
    TooDeep {
        /// How deep.
        depth: u32,
        /// The candidate the last wrapper handed over to, if known.
        through: Option<PathBuf>,
    },
    /// No real go to run.
    #[error("{find} (PATH={path})")]
    NoGo {
        /// What was found instead.
        find: FindGoError,
        /// `$PATH`, for people.
        path: String,
    },
    /// The real go could not be started.
    #[error("cannot run {}: {cause}", go.display())]
    Start {
        /// The real go.
        go: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// Waiting for go failed.
    #[error("waiting for go: {0}")]
    Wait(std::io::Error),
}

impl WrapError {
    /// The wrapper's exit status: 127 without a real go, 126 when it
    /// cannot be started, 1 when waiting for it failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            WrapError::TooDeep { .. } | WrapError::NoGo { .. } => 127,
            WrapError::Start { .. } => 126,
            WrapError::Wait(_) => 1,
        }
    }
}

impl Wrap<'_> {
    /// Runs the real go with `args` and returns its exit status (a signal
    /// that killed go kills this process the same way); then, unless
    /// this wrapper is nested inside another one's go (it becomes the
    /// real go then), the hook.
    pub fn run(&self, args: &[OsString]) -> Result<ExitCode, WrapError> {
        let mut launch = Launch::from_env(&self.me)?;
        launch.go_cache = self.go_cache.clone();
        if let Some(depth) = launch.depth {
            // Already inside a wrapped go (go generate, a program running
            // go): become the real go, no hook.
            return Err(launch.exec_nested(args, depth));
        }
        // Where the cache is (go creates it if it is missing; the hook
        // runs after go, on what go set up).
        let cache = if wants_hook(args) {
            (self.locate)()
        } else {
            None
        };
        let uses = tempfile::NamedTempFile::new().ok();
        let shimmed = match (&cache, &uses) {
            (Some(_), Some(_)) => with_exec_shim(args, &self.me).filter(|_| {
                let goflags = crate::layout::go_setting("GOFLAGS", &|k| std::env::var_os(k));
                !goflags.is_some_and(|f| goflags_keep_go_run(&f))
            }),
            _ => None,
        };
        let mut cmd = launch.command(shimmed.as_deref().unwrap_or(args), 1, true);
        if let (Some(u), Some(cache)) = (&uses, &cache) {
            cmd.env(USES_ENV, u.path()).env(CACHE_ENV, cache);
        }
        // What the command writes or touches has a later mtime than this.
        let started_ns = file_clock_ns();
        let status = spawn_and_wait(cmd, &launch.real)?;
        if let Some(cache) = &cache {
            let exe_uses = uses
                .as_ref()
                .map(|u| read_uses(u.path(), cache))
                .unwrap_or_default();
            let module = std::env::current_dir().ok().and_then(|cwd| {
                crate::gomod::Module::find(&crate::gomod::go_command_dir(args, &cwd))
            });
            (self.hook)(AfterGo {
                exe_uses,
                tool: tool_name(args),
                module,
                started_ns: Some(started_ns),
            });
        }
        Ok(exit_code_of(status.map_err(WrapError::Wait)?))
    }
}

/// The real go, found from the environment the wrapper started in.
struct Launch {
    /// The real go.
    real: PathBuf,
    /// How many wrappers deep this one is nested; `None`: the outermost.
    depth: Option<u32>,
    /// Candidates seen to start gocache again, joined for [`LOOPS_ENV`].
    loops: Option<OsString>,
    /// `GOCACHE` for go, if the wrapper sets it ([`Wrap::go_cache`]).
    go_cache: Option<PathBuf>,
}

impl Launch {
    /// Reads [`DEPTH_ENV`], [`LOOPS_ENV`] and [`HANDOFF_ENV`], stops a
    /// wrapper nested too deep, and finds the real go (see "Never a
    /// loop" in the module doc).
    fn from_env(me: &Path) -> Result<Launch, WrapError> {
        // Inside a wrapped go already: how many wrappers deep (an older
        // gocache wrote "1").
        let depth: Option<u32> = std::env::var_os(DEPTH_ENV)
            .map(|v| v.to_str().and_then(|s| s.parse().ok()).unwrap_or(1).max(1));
        // Candidates seen to start gocache again, and whether the one just
        // handed over to did.
        let mut loops: Vec<PathBuf> = std::env::var_os(LOOPS_ENV)
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| p.is_absolute())
                    .collect()
            })
            .unwrap_or_default();
        let handoff = std::env::var_os(HANDOFF_ENV).and_then(|v| Handoff::parse(&v));
        let (pid, ppid) = (std::process::id(), std::os::unix::process::parent_id());
        if let Some(h) = &handoff
            && (h.came_back(pid, ppid) || h.came_back_through_script(ppid))
            && !loops.contains(&h.go)
        {
            loops.push(h.go.clone());
        }
        if let Some(d) = depth
            && d >= MAX_NESTING
        {
            return Err(WrapError::TooDeep {
                depth: d,
                through: handoff.map(|h| h.go),
            });
        }
        let real = find_real_go(
            std::env::var_os(GO_ENV).as_deref(),
            std::env::var_os("PATH").as_deref(),
            me,
            &loops,
        )
        .map_err(|find| WrapError::NoGo {
            find,
            path: std::env::var("PATH").unwrap_or_default(),
        })?;
        // A path holding ':' cannot be listed; such a loop is found again
        // by its hand-over, one hop later.
        let loops = (!loops.is_empty())
            .then(|| std::env::join_paths(&loops).ok())
            .flatten();
        Ok(Launch {
            real,
            depth,
            loops,
            go_cache: None,
        })
    }

    /// The real go with `args`, for a wrapper `depth` deep that spawns it
    /// (`spawned`) or becomes it: the nesting and the hand-over in its
    /// environment.
    fn command(&self, args: &[OsString], depth: u32, spawned: bool) -> Command {
        let handoff = Handoff {
            pid: std::process::id(),
            spawned,
            go: self.real.clone(),
        };
        let mut cmd = Command::new(&self.real);
        cmd.args(args)
            .env(DEPTH_ENV, depth.to_string())
            .env(HANDOFF_ENV, handoff.to_env());
        if let Some(l) = &self.loops {
            cmd.env(LOOPS_ENV, l);
        }
        if let Some(c) = &self.go_cache {
            cmd.env("GOCACHE", c);
        }
        cmd
    }

    /// Becomes the real go, one wrapper deeper than `depth`; returns only
    /// when that fails.
    fn exec_nested(&self, args: &[OsString], depth: u32) -> WrapError {
        let cause = self.command(args, depth + 1, false).exec();
        WrapError::Start {
            go: self.real.clone(),
            cause,
        }
    }
}

/// The child being waited for, for [`forward`].
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Starts `cmd` (the real go, `go`) and waits for it, as a shell waits for
/// a foreground job. A failure to start is an error; one to wait is
/// returned for after the hook.
fn spawn_and_wait(mut cmd: Command, go: &Path) -> Result<std::io::Result<ExitStatus>, WrapError> {
    // Like a shell with a foreground job: Ctrl-C and Ctrl-\ go to the whole
    // process group (go included); we wait for go and still run the hook.
    // SIGTERM and SIGHUP sent to us alone are passed on to go: handlers
    // that exec resets for go. An ignored signal stays ignored across exec,
    // so SIGINT and SIGQUIT are ignored only once go has started; that way
    // std starts go with posix_spawn (no fork of this process, no code
    // between fork and exec). A Ctrl-C in the microseconds between reaches
    // go as well; only the hook after it is lost.
    // SAFETY: the handler only calls kill(2).
    unsafe {
        libc::signal(libc::SIGTERM, forward as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, forward as *const () as libc::sighandler_t);
    }
    let mut child = cmd.spawn().map_err(|cause| WrapError::Start {
        go: go.to_path_buf(),
        cause,
    })?;
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    // SAFETY: setting dispositions; no handler runs.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
    let status = child.wait();
    CHILD.store(0, Ordering::SeqCst);
    Ok(status)
}

/// go's exit status as this process's: its code, or, when a signal killed
/// it, the same death (so a shell sees the same signal).
fn exit_code_of(status: ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(c), _) => ExitCode::from(c.clamp(0, 255) as u8),
        (None, Some(sig)) => {
            // SAFETY: restoring the default action, then raising.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
            }
            ExitCode::from((128 + sig).clamp(0, 255) as u8)
        }
        _ => ExitCode::FAILURE,
    }
}

/// Why the shim could not become the program.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// Started without a program.
    #[error("{SHIM_SUBCOMMAND} needs the program to run (go run -exec starts it)")]
    NoProgram,
    /// The program could not be run.
    #[error("cannot run {}: {cause}", exe.display())]
    Exec {
        /// The program.
        exe: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
}

impl ShimError {
    /// The shim's exit status: 2 without a program; as a shell's, 127 for
    /// a program not found and 126 for one that cannot be run.
    pub fn exit_code(&self) -> u8 {
        match self {
            ShimError::NoProgram => 2,
            ShimError::Exec { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound => 127,
            ShimError::Exec { .. } => 126,
        }
    }
}

/// The shim, `gocache __exec-shim EXE ARGS...` (what `go run -exec`
/// starts; `args` are what follows [`SHIM_SUBCOMMAND`]): notes the
/// executable in [`USES_ENV`]'s file, then becomes it. Returns only when
/// that fails.
pub fn shim(args: &[OsString]) -> ShimError {
    let Some((exe, rest)) = args.split_first() else {
        return ShimError::NoProgram;
    };
    let exe = Path::new(exe);
    if let Some(file) = std::env::var_os(USES_ENV) {
        use std::io::Write;
        // Best effort: a use not recorded must not stop the program.
        let cache = std::env::var_os(CACHE_ENV).map(PathBuf::from);
        if let Some(line) = use_line(exe, cache.as_deref())
            && let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&file)
        {
            let _ = f.write_all(&line);
        }
    }
    let cause = Command::new(exe)
        .args(rest)
        .env_remove(USES_ENV)
        .env_remove(CACHE_ENV)
        .env_remove(HANDOFF_ENV)
        .exec();
    ShimError::Exec {
        exe: exe.to_path_buf(),
        cause,
    }
}

// After go exits: the one part of the wrapper that reads the index.

/// The cached executable called `program` whose directory Go touched most
/// recently: what `go tool NAME` just ran, as near as can be told (the
/// index knows the cached executables by program name; their mtimes say
/// which Go used last).
pub fn latest_exe_named(
    cache_dir: &Path,
    index: &crate::index::Index,
    program: &str,
) -> crate::Result<Option<EntryName>> {
    let mut best: Option<(std::time::SystemTime, EntryName)> = None;
    for e in index.exes_named(program)? {
        if let Ok(m) = std::fs::symlink_metadata(e.path_in(cache_dir)).and_then(|m| m.modified())
            && best.is_none_or(|(t, _)| m > t)
        {
            best = Some((m, e));
        }
    }
    Ok(best.map(|(_, n)| n))
}

#[cfg(test)]
mod tests;
