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
//! looks for the first `go` on `PATH` that is not itself (by device and
//! inode, after following links), or uses `$GOCACHE_GO`. It sets
//! [`DEPTH_ENV`] for the real go, so a `go` started from inside (`go
//! generate`, a program that runs go) goes straight to the real one.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::layout::{EntryName, Suffix};

/// Names the real go explicitly (an absolute path).
pub const GO_ENV: &str = "GOCACHE_GO";
/// Set for the real go and everything it starts: "already wrapped".
pub const DEPTH_ENV: &str = "GOCACHE_WRAPPED";
/// The file the exec shim appends executable paths to.
pub const USES_ENV: &str = "GOCACHE_USES_FILE";
/// The cache directory, for the shim.
pub const CACHE_ENV: &str = "GOCACHE_WRAPPER_CACHE";
/// The hidden subcommand the shim runs as.
pub const SHIM_SUBCOMMAND: &str = "__exec-shim";

/// Why the real go could not be found.
#[derive(Debug, thiserror::Error)]
pub enum FindGoError {
    /// `$GOCACHE_GO` is set but unusable.
    #[error(
        "$GOCACHE_GO is {0:?}, which is not an executable file (it must be an absolute path to the real go)"
    )]
    BadEnv(PathBuf),
    /// No `go` on PATH but gocache itself.
    #[error(
        "no go command found on PATH other than gocache itself; install Go, or set GOCACHE_GO to the real go"
    )]
    NotFound,
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

/// Finds the real go: `$GOCACHE_GO`, else the first `go` on `path` that is
/// not `me` (gocache's own executable).
pub fn find_real_go(
    env_go: Option<&OsStr>,
    path: Option<&OsStr>,
    me: &Path,
) -> Result<PathBuf, FindGoError> {
    if let Some(g) = env_go.filter(|g| !g.is_empty()) {
        let g = PathBuf::from(g);
        if g.is_absolute() && is_executable_file(&g) && !same_file(&g, me) {
            return Ok(g);
        }
        return Err(FindGoError::BadEnv(g));
    }
    for dir in std::env::split_paths(path.unwrap_or_default()) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        let cand = dir.join("go");
        if is_executable_file(&cand) && !same_file(&cand, me) {
            return Ok(cand);
        }
    }
    Err(FindGoError::NotFound)
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
            find_real_go(None, Some(&path), &me).unwrap(),
            real_dir.join("go")
        );
        let only_me = std::env::join_paths([&shim_dir]).unwrap();
        assert!(matches!(
            find_real_go(None, Some(&only_me), &me),
            Err(FindGoError::NotFound)
        ));
        assert!(matches!(
            find_real_go(Some(OsStr::new("relative/go")), Some(&path), &me),
            Err(FindGoError::BadEnv(_))
        ));
    }
}
