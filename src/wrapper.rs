//! `gocache go`: a wrapper around the real go command.
//!
//! It runs the real go with the same arguments, environment and stdio,
//! exits with go's status, and afterwards runs the post-insert hook. What
//! this module holds is the library part (starting go and forwarding
//! signals is the binary's): finding the real go, rewriting a
//! `go run` command line so the exact executable used is seen, and reading
//! back what the shim saw; and, after go exits, which cached executable a
//! `go tool NAME` ran ([`latest_exe_named`], which asks the index).
//!
//! # Exact uses of cached executables
//!
//! - `go run`: the wrapper adds `-exec '<gocache> __exec-shim'`. Go still
//!   builds, caches and looks up the executable as usual (`-exec` only
//!   changes how it is started; `work/buildid.go` caches it either way), then
//!   runs `<shim> <executable> <args>`. The shim appends the executable's
//!   path to a file the wrapper named in [`USES_ENV`] and `exec`s it, so its
//!   arguments, stdio, exit status and signals are the program's own. A
//!   command line that already has `-exec` is left alone.
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
//! A script that runs gocache without `exec` puts a shell between them, so
//! nothing matches; [`DEPTH_ENV`] counts the wrappers nested inside each
//! other, and past [`MAX_NESTING`] the wrapper stops with exit 127. When
//! every candidate is gocache, it says which is what and exits 127, as a
//! shell does for a missing command.
//!
//! [`DEPTH_ENV`] is set for the real go and everything it starts, so a `go`
//! started from inside (`go generate`, a program that runs go) goes
//! straight to the real one, without a second hook.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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
/// page. The binary places it with
/// `#[used] #[unsafe(link_section = ".note.gocache")]`.
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
/// not `go run`, already has `-exec`, or the path cannot be quoted for go.
pub fn with_exec_shim(args: &[OsString], shim: &Path) -> Option<Vec<OsString>> {
    let pos = args.iter().position(|a| a == "run")?;
    // "run" must be the subcommand, not an argument after it.
    if args[..pos].iter().any(|a| !a.as_bytes().starts_with(b"-")) {
        return None;
    }
    let has_exec = args[pos + 1..].iter().any(|a| {
        let b = a.as_bytes();
        b == b"-exec" || b == b"--exec" || b.starts_with(b"-exec=") || b.starts_with(b"--exec=")
    });
    if has_exec {
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
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn go_run_gets_the_shim_unless_it_has_exec() {
        let shim = Path::new("/opt/my tools/gocache");
        let got = with_exec_shim(&os(&["run", ".", "-x"]), shim).unwrap();
        assert_eq!(
            got,
            os(&[
                "run",
                "-exec",
                "'/opt/my tools/gocache' __exec-shim",
                ".",
                "-x"
            ])
        );
        let got = with_exec_shim(&os(&["-C", "dir", "run", "x.go"]), shim);
        assert!(
            got.is_none(),
            "-C dir: 'dir' is the first non-flag, not run"
        );
        assert!(with_exec_shim(&os(&["run", "-exec", "qemu", "."]), shim).is_none());
        assert!(with_exec_shim(&os(&["run", "-exec=qemu", "."]), shim).is_none());
        assert!(with_exec_shim(&os(&["build", "run"]), shim).is_none());
        assert!(with_exec_shim(&os(&["run", "."]), Path::new("/a'b/gocache")).is_none());
    }

    #[test]
    fn hooks_and_tools() {
        assert!(wants_hook(&os(&["build", "./..."])));
        assert!(!wants_hook(&os(&["version"])));
        assert!(!wants_hook(&os(&[])));
        assert_eq!(
            tool_name(&os(&[
                "tool",
                "-n",
                "golang.org/x/tools/cmd/stringer",
                "-type=X"
            ])),
            Some("stringer".into())
        );
        assert_eq!(tool_name(&os(&["tool", "vet"])), Some("vet".into()));
        assert_eq!(tool_name(&os(&["run", "tool"])), None);
    }

    #[test]
    fn only_executables_in_this_cache_count() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let hex = "ab".repeat(32);
        let exe = cache.join("ab").join(format!("{hex}-d")).join("hello");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        std::fs::write(&exe, "").unwrap();
        assert_eq!(
            cached_exe_entry(&exe, &cache).unwrap().rel_path(),
            format!("ab/{hex}-d")
        );
        let other = dir.path().join("other");
        assert!(cached_exe_entry(&exe, &other).is_none());
        let wrong_sub = cache.join("cd").join(format!("{hex}-d")).join("hello");
        assert!(cached_exe_entry(&wrong_sub, &cache).is_none());
        assert!(cached_exe_entry(Path::new("/tmp/go-build123/b001/exe/hello"), &cache).is_none());
        let uses = dir.path().join("uses");
        std::fs::write(&uses, format!("{}\n/tmp/x/y\n", exe.display())).unwrap();
        assert_eq!(read_uses(&uses, &cache).len(), 1);
    }

    #[test]
    fn the_real_go_is_not_ourselves() {
        let dir = tempfile::tempdir().unwrap();
        let me = dir.path().join("gocache");
        std::fs::write(&me, "").unwrap();
        std::fs::set_permissions(&me, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let shim_dir = dir.path().join("shim");
        std::fs::create_dir(&shim_dir).unwrap();
        std::os::unix::fs::symlink(&me, shim_dir.join("go")).unwrap();
        let real_dir = dir.path().join("real");
        std::fs::create_dir(&real_dir).unwrap();
        std::fs::write(real_dir.join("go"), "").unwrap();
        std::fs::set_permissions(
            real_dir.join("go"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let path = std::env::join_paths([&shim_dir, &real_dir]).unwrap();
        assert_eq!(
            find_real_go(None, Some(&path), &me, &[]).unwrap(),
            real_dir.join("go")
        );
        let only_me = std::env::join_paths([&shim_dir]).unwrap();
        assert!(matches!(
            find_real_go(None, Some(&only_me), &me, &[]),
            Err(FindGoError::NotFound(s)) if s == [(shim_dir.join("go"), Skipped::Itself)]
        ));
        assert!(matches!(
            find_real_go(Some(OsStr::new("relative/go")), Some(&path), &me, &[]),
            Err(FindGoError::BadEnv(_))
        ));
        // A candidate seen to start gocache again is passed over.
        let loops = [real_dir.join("go")];
        let e = find_real_go(None, Some(&path), &me, &loops).unwrap_err();
        assert!(e.to_string().contains("runs gocache again"), "{e}");
        assert!(matches!(
            find_real_go(Some(real_dir.join("go").as_os_str()), None, &me, &loops),
            Err(FindGoError::EnvIsGocache(_, Skipped::Loops))
        ));
    }

    /// An ELF64 little-endian header with one PT_NOTE segment holding
    /// `notes`.
    fn elf_with_notes(notes: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // 64-bit
        f[5] = 1; // little-endian
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        f[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = 64;
        f[ph..ph + 4].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
        f[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes()); // p_offset
        f[ph + 32..ph + 40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        f[ph + 48..ph + 56].copy_from_slice(&4u64.to_le_bytes());
        f.extend_from_slice(notes);
        f
    }

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&(name.len() as u32).to_le_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&kind.to_le_bytes());
        n.extend_from_slice(name);
        n.resize(n.len().div_ceil(4) * 4, 0);
        n.extend_from_slice(desc);
        n.resize(n.len().div_ceil(4) * 4, 0);
        n
    }

    #[test]
    fn the_marker_note_is_found_among_other_notes_and_nowhere_else() {
        let gnu = note(b"GNU\0", 3, &[0xab; 20]);
        let ours = note(b"gocache\0", MARKER_NOTE_TYPE, b"wrapper\0");
        assert!(has_marker_note(&elf_with_notes(
            &[gnu.clone(), ours.clone()].concat()
        )));
        assert!(!has_marker_note(&elf_with_notes(&gnu)));
        // The right name with another type, or cut off by the segment.
        assert!(!has_marker_note(&elf_with_notes(&note(
            b"gocache\0",
            1,
            b"wrapper\0"
        ))));
        let mut cut = elf_with_notes(&ours);
        cut.truncate(cut.len() - 20);
        assert!(!has_marker_note(&cut));
        // Not ELF: a script that happens to hold the name.
        assert!(!has_marker_note(
            b"#!/bin/sh\nexec gocache go \"$@\"\n gocache\0 gcwr"
        ));
        assert!(!has_marker_note(&[]));
        // The in-memory note is laid out as an ELF note.
        // SAFETY: MarkerNote is repr(C), five plain fields and no padding.
        let bytes: &[u8] = unsafe {
            std::slice::from_raw_parts(
                (&MARKER_NOTE as *const MarkerNote).cast::<u8>(),
                std::mem::size_of::<MarkerNote>(),
            )
        };
        if cfg!(target_endian = "little") {
            assert_eq!(bytes, &ours[..]);
        }
    }

    #[test]
    fn a_handoff_comes_back_only_to_the_candidates_own_process() {
        let h = Handoff {
            pid: 100,
            spawned: true,
            go: PathBuf::from("/opt/my bin/go"),
        };
        assert_eq!(Handoff::parse(&h.to_env()), Some(h.clone()));
        // Spawned: the candidate (or what it exec'd) is the wrapper's child.
        assert!(h.came_back(200, 100));
        // A go the candidate started (go generate) is a grandchild.
        assert!(!h.came_back(300, 200));
        let e = Handoff {
            pid: 200,
            spawned: false,
            go: PathBuf::from("/usr/bin/go"),
        };
        assert_eq!(Handoff::parse(&e.to_env()), Some(e.clone()));
        // Exec'd: the candidate keeps the wrapper's pid; its children not.
        assert!(e.came_back(200, 100));
        assert!(!e.came_back(300, 200));
        for bad in [
            "",
            "spawn:x:/go",
            "exec:1:relative",
            "fork:1:/go",
            "spawn:1",
        ] {
            assert_eq!(Handoff::parse(OsStr::new(bad)), None, "{bad:?}");
        }
    }
}
