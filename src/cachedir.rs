//! The cache directory: how gocache opens it, names its own files in it,
//! sweeps them, and takes turns trimming it.
//!
//! # Descriptors
//!
//! gocache reaches nothing inside the cache by a path: the cache directory
//! is opened once ([`open_dir`], following a symlink at the cache path
//! itself, which is where the user put the cache), and everything inside it
//! through descriptors, each directory opened `O_NOFOLLOW | O_DIRECTORY`
//! ([`open_dir_at`]) and each name looked at with the `*at` calls. A symlink
//! where a subdirectory belongs is never followed, so nothing outside the
//! cache can be reached, whatever is swapped in.
//!
//! [`CacheDir`] holds the cache's descriptor and a table of its 256
//! subdirectories' descriptors, each opened on first use and then shared
//! (`Sync`, no lock on the way: `gocache prog` answers every get through
//! it). A subdirectory removed while the table holds it (`go clean -cache`)
//! stays the removed one for that `CacheDir`: short-lived users (a trim
//! run) open a fresh one; `gocache prog` keeps one per go command.
//!
//! # gocache's own files inside the subdirectories
//!
//! Two kinds, both named so that they never match Go's entry pattern (Go
//! ignores them) and both swept when left behind:
//! - `gocache prog`'s temporary files ([`TMP_PREFIX`], [`tmp_name`]): a
//!   put is written there and renamed into place. One left by a killed
//!   server is removed by a full trim once it is an hour old
//!   ([`sweep_prog_temps`]).
//! - the trim executor's move-aside names ([`TRASH_PREFIX`],
//!   [`trash_name`]): an entry is renamed there just before it is removed.
//!   One left by a killed trim is removed by the next trim that opens the
//!   subdirectory ([`sweep_trash`]).
//!
//! # Level one's entries
//!
//! [`store::LocalStore`] reads and writes entries in Go's layout, as Go
//! does (action entries, outputs, temporary files renamed into place,
//! "last used" mtimes): `gocache prog`'s gets and puts and the remote
//! tier's fetches go through it.
//!
//! # gocache's own directory and the trim lock
//!
//! gocache keeps its files in `<cache>/gocache/` ([`own_dir`]): the index
//! (see [`crate::index`]) and the trim lock. The directory and the files
//! in it are opened without following a symlink, like everything else in
//! the cache: a link there is refused, never written through. What gocache
//! creates there follows the cache's owner, as what Go creates does: mode
//! `0777`/`0666` less the umask (Go's), and, when gocache runs as root in
//! another user's cache, that user's owner and group
//! ([`own_like_parent`]), so that one `sudo gocache stats` does not lock
//! the owner out of their own index and lock.
//!
//! One trim at a time: an exclusive, non-blocking fs4 lock on
//! `<cache>/gocache/trim.lock` ([`TrimLock`]). A second trim, a hook or
//! `gocache prog` sees it taken and steps aside. Readers never take it.
//! `gocache ci end` waits a little for it ([`TrimLock::acquire_within`]):
//! a hook evicting holds it for moments. Another user's lock file is
//! locked through a read-only descriptor; with no lock file to open at
//! all, a trim goes on without it (safe: see [`TrimLock`]).
//!
//! # Times gocache sets (the CI mode)
//!
//! `gocache ci` moves mtimes, and only these: an entry's own mtime
//! ([`set_entry_mtime`]; Go reads it only as "last used" and moves it
//! itself), a subdirectory's mtime ([`seal_subdir`]; Go never reads it,
//! gocache's incremental sync does), and Go's `trim.txt`
//! ([`write_go_trim_time`], written the way Go writes it). See
//! [`crate::ci`] for why.
//!
//! # Is it a Go build cache?
//!
//! A mistyped `GOCACHE` (a project directory, `$HOME`) must not get an
//! index written into it, nor anything removed. [`check_go_cache`] takes a
//! directory for a Go build cache when it holds Go's README (Go writes it
//! into every cache it opens), or all 256 subdirectories `00`..`ff` (Go
//! creates them every time it opens a cache), or nothing but names Go and
//! gocache use there (an empty directory, say, which Go fills on its
//! first build). Anything else is refused with what was found, before the
//! index is opened; [`CacheDir::open`], which everything that removes
//! entries goes through, checks again. `gocache prog` first sets up a
//! missing or empty cache as Go does ([`init_like_go`]); the wrapper's
//! hook runs after the go command, which has set it up.
//!
//! # The index file's place
//!
//! By default `<cache>/gocache/index.sqlite` ([`default_index_path`]),
//! whose directory gocache creates (inside a cache it recognised). An
//! index named with `--index` or `$GOCACHE_INDEX` must be in an existing
//! directory: a typo there creates nothing ([`index_path`]). Either way
//! the index is opened only as gocache's own file, never through a
//! symlink at it or at its directory (see [`crate::index`]'s `open`).

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::error::{Error, Result};
use crate::layout::{EntryName, GOCACHE_DIR, TopLevel, parse_subdir, subdir_name};
use crate::model::{Other, UnixTime};

pub mod store;

// ---------------------------------------------------------------------------
// Opening

/// Checks that `dir` is an existing, readable directory (following a
/// symlink at the cache directory itself: the user chose that path).
pub fn check_cache_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::CacheMissing(dir.to_owned()))
        }
        Err(e) => Err(Error::io("reading", dir, e)),
        Ok(m) if !m.is_dir() => Err(Error::CacheNotADirectory(dir.to_owned())),
        Ok(_) => std::fs::read_dir(dir)
            .map(drop)
            .map_err(|e| Error::io("reading", dir, e)),
    }
}

// ---------------------------------------------------------------------------
// Is it a Go build cache?

/// The README Go writes into every cache directory it opens
/// (`cacheREADME` in cmd/go/internal/cache/default.go). Its first line is
/// the marker [`check_go_cache`] looks for; later lines changed over Go
/// releases (golang.org became go.dev).
pub const GO_README: &str = "This directory holds cached build artifacts from the Go build system.
Run \"go clean -cache\" if the directory is getting too large.
Run \"go clean -fuzzcache\" to delete the fuzz cache.
See go.dev to learn more about Go.
";

/// Why [`check_go_cache`] took a directory for a Go build cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recognised {
    /// It holds Go's README.
    Readme,
    /// It holds the 256 subdirectories `00`..`ff`.
    Subdirs,
    /// It holds only names Go and gocache use there (or nothing at all).
    OnlyGoNames,
}

/// True when `dir` holds Go's README (not following a symlink).
fn has_go_readme(dir: &OwnedFd) -> bool {
    let first_line = GO_README.lines().next().unwrap_or_default().as_bytes();
    let Ok(fd) = rustix::fs::openat(
        dir,
        "README",
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    ) else {
        return false;
    };
    let mut buf = [0u8; 128];
    let mut got = 0;
    while got < first_line.len() {
        match rustix::io::read(&fd, &mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf[..got].starts_with(first_line)
}

/// Checks that the existing directory `dir` looks like a Go build cache
/// (see the module doc) before anything is written to it or removed from
/// it; [`Error::NotAGoCache`] says what was found when it does not.
///
/// Costs one `openat` and a read when Go's README is there (every cache
/// Go has used), else one listing of the top level.
pub fn check_go_cache(dir: &Path) -> Result<Recognised> {
    let fd = open_dir(dir).map_err(|e| Error::io("opening", dir, e))?;
    recognise(&fd, dir)
}

/// [`check_go_cache`] of the directory open as `fd`.
fn recognise(fd: &OwnedFd, dir: &Path) -> Result<Recognised> {
    if has_go_readme(fd) {
        return Ok(Recognised::Readme);
    }
    let mut subdirs = 0usize;
    let mut odd: Vec<String> = Vec::new();
    let mut foreign_readme = false;
    let items = rustix::fs::Dir::read_from(fd).map_err(|e| Error::io("reading", dir, e.into()))?;
    for item in items {
        let item = item.map_err(|e| Error::io("reading", dir, e.into()))?;
        let name = item.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let is_dir = || match item.file_type() {
            FileType::Unknown => {
                rustix::fs::statat(fd, item.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode as _) == FileType::Directory)
            }
            t => t == FileType::Directory,
        };
        match TopLevel::classify(name) {
            TopLevel::Subdir(_) if is_dir() => subdirs += 1,
            TopLevel::Readme => foreign_readme = true,
            TopLevel::Subdir(_) | TopLevel::Other => {
                odd.push(String::from_utf8_lossy(name).into_owned())
            }
            TopLevel::TrimTxt | TopLevel::TestExpire | TopLevel::Fuzz | TopLevel::Gocache => {}
        }
    }
    if subdirs == 256 {
        return Ok(Recognised::Subdirs);
    }
    if odd.is_empty() && !foreign_readme {
        return Ok(Recognised::OnlyGoNames);
    }
    odd.sort();
    let mut found = match odd.len() {
        0 => String::new(),
        n => {
            let shown: Vec<&str> = odd.iter().take(3).map(String::as_str).collect();
            let more = match n - shown.len() {
                0 => String::new(),
                m => format!(" and {m} more"),
            };
            format!("it holds {}{more}", shown.join(", "))
        }
    };
    if !found.is_empty() {
        found.push_str(", ");
    }
    found.push_str(if foreign_readme {
        "a README that is not Go's"
    } else {
        "no README from Go"
    });
    found.push_str(&match subdirs {
        0 => " and none of the subdirectories 00..ff".to_string(),
        n => format!(" and {n} of the 256 subdirectories 00..ff"),
    });
    Err(Error::NotAGoCache {
        dir: dir.to_owned(),
        found,
    })
}

/// Sets up `dir` as the go command does before it uses a cache (`cache.Open`
/// after `initDefaultCache`): creates it (and its parents, as `MkdirAll`),
/// writes the README if there is none, and creates the 256 subdirectories.
/// For `gocache prog` started on a cache Go has not created yet. Does
/// nothing to a directory that holds Go's README already.
pub fn init_like_go(dir: &Path) -> Result<()> {
    if let Ok(fd) = open_dir(dir)
        && has_go_readme(&fd)
    {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    // Refuse what Go would take over but gocache must not: a project
    // directory named by mistake.
    check_go_cache(dir)?;
    let fd = open_dir(dir).map_err(|e| Error::io("opening", dir, e))?;
    if rustix::fs::statat(&fd, "README", AtFlags::SYMLINK_NOFOLLOW).is_err() {
        // Best effort, as Go's.
        let _ = std::fs::write(dir.join("README"), GO_README);
    }
    for s in 0..=255u8 {
        match rustix::fs::mkdirat(&fd, subdir_name(s), Mode::from_raw_mode(0o777)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(Error::io("creating", dir.join(subdir_name(s)), e.into())),
        }
    }
    Ok(())
}

/// The index file's default place: `<cache>/gocache/index.sqlite`.
pub fn default_index_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join(GOCACHE_DIR).join("index.sqlite")
}

/// The index file to use for the cache at `cache_dir`: `explicit` (from
/// `--index` or `$GOCACHE_INDEX`) when given, whose directory must exist
/// already (gocache creates none for it: [`Error::IndexDir`]), else
/// [`default_index_path`].
pub fn index_path(cache_dir: &Path, explicit: Option<&Path>) -> Result<PathBuf> {
    let Some(path) = explicit else {
        return Ok(default_index_path(cache_dir));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let unusable = |cause| Error::IndexDir {
        path: path.to_owned(),
        dir: dir.to_owned(),
        cause,
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(path.to_owned()),
        Ok(_) => Err(unusable(std::io::Error::from_raw_os_error(libc::ENOTDIR))),
        Err(e) => Err(unusable(e)),
    }
}

/// [`check_cache_dir`] and [`check_go_cache`] in one: `dir` exists, is a
/// readable directory (a symlink to one is followed), and looks like a Go
/// build cache. One `open` of the directory for both: the hook after every
/// go command runs this.
pub fn check_cache(dir: &Path) -> Result<Recognised> {
    let fd = match open_dir(dir) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::CacheMissing(dir.to_owned()));
        }
        // The path is a file; not a component above it (that is an I/O
        // error on the path, as `stat` gives it).
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) && std::fs::metadata(dir).is_ok() => {
            return Err(Error::CacheNotADirectory(dir.to_owned()));
        }
        Err(e) => return Err(Error::io("reading", dir, e)),
    };
    recognise(&fd, dir)
}

/// Opens the cache directory itself (a symlink to it is followed: it is
/// where the user put the cache).
pub fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the directory `name` in `parent` (or the absolute path `name`
/// with [`rustix::fs::CWD`]) without following a symlink: how gocache opens
/// every directory inside the cache.
pub fn open_dir_at(parent: impl AsFd, name: impl rustix::path::Arg) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The cache directory, open, with its subdirectories' descriptors opened
/// on first use (see the module doc).
pub struct CacheDir {
    path: PathBuf,
    fd: OwnedFd,
    subdirs: [OnceLock<OwnedFd>; 256],
}

impl std::fmt::Debug for CacheDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheDir")
            .field("path", &self.path)
            .finish()
    }
}

impl CacheDir {
    /// Opens the cache directory at `path` (see [`open_dir`]), once it is
    /// seen to look like a Go build cache ([`check_go_cache`]): everything
    /// that removes entries, or writes them, goes through here.
    pub fn open(path: &Path) -> Result<CacheDir> {
        let fd = open_dir(path).map_err(|e| Error::io("opening", path, e))?;
        recognise(&fd, path)?;
        Ok(CacheDir {
            path: path.to_owned(),
            fd,
            subdirs: [const { OnceLock::new() }; 256],
        })
    }

    /// The cache directory's path (for messages and the paths handed to Go).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cache directory's own descriptor.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Subdirectory `s`, opened on first use; `None` when it is missing or
    /// not a real directory (a symlink is not followed). A failed open is
    /// tried again next time.
    pub fn subdir(&self, s: u8) -> Option<&OwnedFd> {
        let slot = &self.subdirs[s as usize];
        if let Some(fd) = slot.get() {
            return Some(fd);
        }
        let fd = open_dir_at(&self.fd, subdir_name(s)).ok()?;
        Some(slot.get_or_init(|| fd))
    }

    /// The executable inside the executable entry `name` (a directory),
    /// opened read-only without following a symlink at either step; `None`
    /// when it is not there, or `program` is not a plain file name.
    pub fn open_exe(&self, name: &crate::layout::EntryName, program: &str) -> Option<File> {
        if program.is_empty() || program.contains('/') || program == "." || program == ".." {
            return None;
        }
        let sub = self.subdir(name.subdir())?;
        let dir = open_dir_at(sub, name.c_file_name().as_c_str()).ok()?;
        let fd = rustix::fs::openat(
            &dir,
            program,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        (FileType::from_raw_mode(st.st_mode as _) == FileType::RegularFile).then(|| File::from(fd))
    }

    /// Subdirectory `s`, created first if missing (as Go creates it); an
    /// error if its name is taken by anything but a real directory.
    pub fn ensure_subdir(&self, s: u8) -> std::io::Result<&OwnedFd> {
        if let Some(fd) = self.subdir(s) {
            return Ok(fd);
        }
        match rustix::fs::mkdirat(&self.fd, subdir_name(s), Mode::from_raw_mode(0o777)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        self.subdir(s).ok_or_else(|| {
            std::io::Error::other(format!(
                "{} is not a directory (a symlink is not followed)",
                self.path.join(subdir_name(s)).display()
            ))
        })
    }
}

/// Apparent and allocated bytes of the tree `name` in `parent` (a file or
/// a directory), not following links, counting what it can read.
pub fn tree_size(parent: &OwnedFd, name: &std::ffi::CStr) -> (u64, u64) {
    let mut total = (0u64, 0u64);
    let Ok(st) = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) else {
        return total;
    };
    total.0 = total
        .0
        .saturating_add(u64::try_from(st.st_size).unwrap_or(0));
    total.1 = total
        .1
        .saturating_add(u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512));
    if FileType::from_raw_mode(st.st_mode as _) != FileType::Directory {
        return total;
    }
    let Ok(fd) = open_dir_at(parent, name) else {
        return total;
    };
    let Ok(dir) = rustix::fs::Dir::read_from(&fd) else {
        return total;
    };
    for item in dir.flatten() {
        let b = item.file_name().to_bytes();
        if b == b"." || b == b".." {
            continue;
        }
        let (a, l) = tree_size(&fd, item.file_name());
        total.0 = total.0.saturating_add(a);
        total.1 = total.1.saturating_add(l);
    }
    total
}

/// Allocated bytes of gocache's own directory in the cache (`gocache/`:
/// the index with its WAL and shared memory, a moved-aside damaged copy,
/// the trim lock), measured now: these change while gocache runs, so a
/// budget check counts them as they are, not as the last scan saw them.
pub fn own_dir_allocated(cache_dir: &Path) -> u64 {
    let Ok(fd) = open_dir(cache_dir) else {
        return 0;
    };
    let name = std::ffi::CString::new(GOCACHE_DIR).expect("no NUL in the name");
    tree_size(&fd, &name).1
}

// ---------------------------------------------------------------------------
// gocache's own names inside the subdirectories

/// The prefix of `gocache prog`'s temporary files in the subdirectories.
pub const TMP_PREFIX: &str = ".gocache-tmp-";

/// The prefix of the names entries are moved to just before removal.
pub const TRASH_PREFIX: &str = ".gocache-trash-";

/// A temporary file's name for process `pid`'s `seq`th file.
pub fn tmp_name(pid: u32, seq: u64) -> std::ffi::CString {
    std::ffi::CString::new(format!("{TMP_PREFIX}{pid}-{seq}")).expect("no NUL in numbers")
}

/// The move-aside name of trim worker `worker` in process `pid` (one at a
/// time per worker and subdirectory).
pub fn trash_name(pid: u32, worker: usize) -> String {
    format!("{TRASH_PREFIX}{pid}-{worker}")
}

/// gocache's own files among `others` (odd items a scan recorded) whose
/// names start with `prefix`: `(subdirectory, name)`.
fn own_files<'a>(others: &'a [Other], prefix: &'a str) -> impl Iterator<Item = (u8, &'a str)> {
    others.iter().filter_map(move |o| {
        let (sub, name) = o.path.split_once('/')?;
        let s = parse_subdir(sub.as_bytes())?;
        (name.starts_with(prefix) && !name.contains('/')).then_some((s, name))
    })
}

/// The subdirectories where a scan saw trash left by a killed trim.
pub fn subdirs_with_trash(others: &[Other]) -> std::collections::HashSet<u8> {
    own_files(others, TRASH_PREFIX).map(|(s, _)| s).collect()
}

// ---------------------------------------------------------------------------
// Sweeps

/// Removes trash left in the subdirectory `dir` by a trim that was killed
/// between moving an entry aside and removing it. Only names with
/// [`TRASH_PREFIX`] are touched, through the subdirectory's descriptor.
/// Returns how many went.
pub fn sweep_trash(dir: &OwnedFd) -> u64 {
    let Ok(rd) = rustix::fs::Dir::read_from(dir) else {
        return 0;
    };
    let names: Vec<std::ffi::CString> = rd
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_bytes()
                .starts_with(TRASH_PREFIX.as_bytes())
        })
        .map(|e| e.file_name().to_owned())
        .collect();
    let mut n = 0;
    for name in names {
        let Ok(s) = name.to_str() else { continue };
        let st = rustix::fs::statat(dir, s, AtFlags::SYMLINK_NOFOLLOW);
        let ok = match st.map(|st| FileType::from_raw_mode(st.st_mode as _)) {
            Ok(FileType::Directory) => remove_exe_dir(dir, s).is_ok(),
            Ok(_) => rustix::fs::unlinkat(dir, s, AtFlags::empty()).is_ok(),
            Err(_) => false,
        };
        n += ok as u64;
    }
    n
}

/// How old a temporary file of `gocache prog` must be before a trim
/// removes it: a put in progress is never that slow.
pub const PROG_TEMP_MAX_AGE: i64 = 3600;

/// Removes temporary files `gocache prog` left in the cache (a server
/// killed mid-put) once they are over [`PROG_TEMP_MAX_AGE`] old: only
/// regular files named [`TMP_PREFIX`]… among the odd items a scan found
/// (`others`), through the subdirectory's descriptor. Returns how many went.
pub fn sweep_prog_temps(dir: &CacheDir, others: &[Other], now: UnixTime) -> u64 {
    let mut n = 0;
    for (s, name) in own_files(others, TMP_PREFIX) {
        let Some(fd) = dir.subdir(s) else {
            continue;
        };
        #[allow(clippy::useless_conversion)]
        let old = rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
            FileType::from_raw_mode(st.st_mode as _) == FileType::RegularFile
                && now.saturating_sub(i64::from(st.st_mtime)) > PROG_TEMP_MAX_AGE
        });
        if old && rustix::fs::unlinkat(fd, name, AtFlags::empty()).is_ok() {
            n += 1;
        }
    }
    n
}

/// Why an executable directory was not removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExeDirError {
    /// It holds a subdirectory: not Go's layout, so it is left alone.
    HoldsSubdir,
    /// A call failed; what and why.
    Failed(String),
}

impl std::fmt::Display for ExeDirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExeDirError::HoldsSubdir => {
                f.write_str("executable directory holds a subdirectory; left alone")
            }
            ExeDirError::Failed(msg) => f.write_str(msg),
        }
    }
}

/// Removes the executable directory `name` in the subdirectory `dir`: its
/// files with `unlinkat` relative to its own descriptor (a symlink inside
/// is removed as a link), then the directory. One holding a subdirectory
/// is left alone.
pub fn remove_exe_dir(dir: &OwnedFd, name: &str) -> std::result::Result<(), ExeDirError> {
    let failed = |what: &str, e: rustix::io::Errno| ExeDirError::Failed(format!("{what}: {e}"));
    let fd = open_dir_at(dir, name).map_err(|e| failed("cannot open executable directory", e))?;
    let mut inner = Vec::new();
    for item in rustix::fs::Dir::read_from(&fd)
        .map_err(|e| failed("cannot read executable directory", e))?
    {
        let item = item.map_err(|e| failed("cannot read executable directory", e))?;
        let b = item.file_name().to_bytes();
        if b == b"." || b == b".." {
            continue;
        }
        if item.file_type() == FileType::Directory {
            return Err(ExeDirError::HoldsSubdir);
        }
        inner.push(item.file_name().to_owned());
    }
    for f in &inner {
        match rustix::fs::unlinkat(&fd, f.as_c_str(), AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(rustix::io::Errno::ISDIR) => return Err(ExeDirError::HoldsSubdir),
            Err(e) => return Err(failed("cannot remove executable", e)),
        }
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
        .map_err(|e| failed("cannot remove executable directory", e))
}

// ---------------------------------------------------------------------------
// Times gocache sets (the CI mode)

/// Sets the mtime of the entry `name` (a file, or an executable's
/// directory) to `t`, whole seconds, through its subdirectory's
/// descriptor and never through a symlink; its atime is left alone.
pub fn set_entry_mtime(dir: &CacheDir, name: &EntryName, t: UnixTime) -> std::io::Result<()> {
    let fd = dir.subdir(name.subdir()).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("subdirectory {} is missing", subdir_name(name.subdir())),
        )
    })?;
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: t.max(0),
            tv_nsec: 0,
        },
    };
    Ok(rustix::fs::utimensat(
        fd,
        name.c_file_name().as_c_str(),
        &times,
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// The mtime of subdirectory `s` now, in nanoseconds (`None`: missing,
/// or not a real directory).
pub fn subdir_mtime_ns(dir: &CacheDir, s: u8) -> Option<i64> {
    let st = rustix::fs::fstat(dir.subdir(s)?).ok()?;
    #[allow(clippy::useless_conversion)]
    let secs = i64::from(st.st_mtime);
    Some(
        secs.saturating_mul(1_000_000_000)
            .saturating_add(st.st_mtime_nsec as i64),
    )
}

/// Sets subdirectory `s`'s mtime to `t`, whole seconds, if it is still
/// `was_ns` (as [`subdir_mtime_ns`] read it): `gocache ci end` "seals" a
/// subdirectory it has just synced, so that the next incremental sync
/// trusts it (a whole second survives any tar format; an even one, the
/// two-second times of zip). Returns the new mtime in nanoseconds, or
/// `None` when it changed meanwhile (something was added: leave it to
/// the next sync). `dir` must have been opened after the sync (a
/// subdirectory replaced since is not the one its table holds).
pub fn seal_subdir(
    dir: &CacheDir,
    s: u8,
    was_ns: i64,
    t: UnixTime,
) -> std::io::Result<Option<i64>> {
    let Some(fd) = dir.subdir(s) else {
        return Ok(None);
    };
    if subdir_mtime_ns(dir, s) != Some(was_ns) {
        return Ok(None);
    }
    let at = rustix::fs::Timespec {
        tv_sec: t.max(0),
        tv_nsec: 0,
    };
    rustix::fs::futimens(
        fd,
        &rustix::fs::Timestamps {
            last_access: at,
            last_modification: at,
        },
    )?;
    Ok(Some(t.max(0).saturating_mul(1_000_000_000)))
}

/// Go's `trim.txt`: when Go last trimmed the cache, in Unix seconds
/// (`None`: missing or unreadable).
pub fn read_go_trim_time(dir: &CacheDir) -> Option<UnixTime> {
    let fd = rustix::fs::openat(
        dir.fd(),
        "trim.txt",
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 32];
    let n = rustix::io::read(&fd, &mut buf).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

/// Writes `t` into Go's `trim.txt` as Go does after trimming (the number,
/// no newline, under an exclusive `flock` of the file itself, which is
/// what Go's lockedfile takes), never through a symlink. Go skips its own
/// trim while the time there is less than a day old (and not over an hour
/// ahead).
pub fn write_go_trim_time(dir: &CacheDir, t: UnixTime) -> std::io::Result<()> {
    use std::io::Write;
    let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = match rustix::fs::openat(
        dir.fd(),
        "trim.txt",
        flags | OFlags::CREATE | OFlags::EXCL,
        Mode::from_raw_mode(0o666),
    ) {
        Ok(fd) => {
            // Made by a root run: the cache owner's Go must still write it.
            own_like_parent(dir.fd(), &fd);
            fd
        }
        Err(rustix::io::Errno::EXIST) => {
            rustix::fs::openat(dir.fd(), "trim.txt", flags, Mode::empty())?
        }
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode as _) != FileType::RegularFile {
        return Err(std::io::Error::other("trim.txt is not a regular file"));
    }
    let mut file = File::from(fd);
    fs4::FileExt::lock(&file)?;
    let written = file
        .set_len(0)
        .and_then(|()| file.write_all(t.to_string().as_bytes()));
    let _ = fs4::FileExt::unlock(&file);
    written
}

// ---------------------------------------------------------------------------
// gocache's own directory and the trim lock

/// Gives `created` (a file or directory this process has just created in
/// the directory `parent`) the parent's owner and group, when this process
/// runs as root: so that a root run in someone else's cache (a `sudo
/// gocache stats`) leaves files the cache's owner can still write and
/// remove, as a file the owner created there would be. Not root: nothing
/// to do (the file is the user's, its mode `0666`/`0777` less the umask,
/// as Go's). Best effort: a failed `fchown` leaves the file as it was.
pub fn own_like_parent(parent: impl AsFd, created: impl AsFd) {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let Ok(st) = rustix::fs::fstat(parent) else {
        return;
    };
    let mine = rustix::fs::fstat(&created);
    if mine.is_ok_and(|m| m.st_uid == st.st_uid && m.st_gid == st.st_gid) {
        return;
    }
    let _ = rustix::fs::fchown(
        created,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    );
}

/// Opens the directory `name` in `parent` without following a symlink,
/// creating it first when it is missing (mode `0777` less the umask, as Go
/// creates its directories; owned like `parent`, see [`own_like_parent`]).
/// A symlink or anything but a directory under that name is an error
/// (`ELOOP`, `ENOTDIR`): never followed, never replaced.
pub fn open_or_create_dir_at(
    parent: &OwnedFd,
    name: impl rustix::path::Arg + Copy,
) -> std::io::Result<OwnedFd> {
    match open_dir_at(parent, name) {
        Err(rustix::io::Errno::NOENT) => {}
        opened => return Ok(opened?),
    }
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o777)) {
        Ok(()) => {
            let fd = open_dir_at(parent, name)?;
            own_like_parent(parent, &fd);
            Ok(fd)
        }
        Err(rustix::io::Errno::EXIST) => Ok(open_dir_at(parent, name)?),
        Err(e) => Err(e.into()),
    }
}

/// Opens (creating it if missing, as [`open_or_create_dir_at`]) gocache's
/// own directory in the cache, `<cache>/gocache`, never through a symlink.
pub fn own_dir(cache_dir: &Path) -> std::io::Result<OwnedFd> {
    let cache = open_dir(cache_dir)?;
    open_or_create_dir_at(&cache, GOCACHE_DIR)
}

/// Opens the file `name` in `dir` for a lock: read and write, created if
/// missing (mode `0666` less the umask, owned like `dir`); read-only when
/// this user may not write it (another user's lock: `flock` takes a lock
/// through a read-only descriptor too). Never through a symlink; only a
/// regular file.
fn open_lock_file(dir: &OwnedFd, name: &str) -> std::io::Result<File> {
    let flags = OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = match rustix::fs::openat(
        dir,
        name,
        flags | OFlags::RDWR | OFlags::CREATE | OFlags::EXCL,
        Mode::from_raw_mode(0o666),
    ) {
        Ok(fd) => {
            own_like_parent(dir, &fd);
            fd
        }
        Err(rustix::io::Errno::EXIST) => {
            match rustix::fs::openat(dir, name, flags | OFlags::RDWR, Mode::empty()) {
                Err(rustix::io::Errno::ACCESS | rustix::io::Errno::ROFS) => {
                    rustix::fs::openat(dir, name, flags | OFlags::RDONLY, Mode::empty())?
                }
                opened => opened?,
            }
        }
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode as _) != FileType::RegularFile {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(File::from(fd))
}

/// The lock file's place: `<cache>/gocache/trim.lock`.
pub fn lock_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join(GOCACHE_DIR).join("trim.lock")
}

/// An exclusive hold on the trim lock; released on drop.
///
/// The lock file is opened without following a symlink (at `gocache/` or
/// at `trim.lock`), read-only when it is another user's, and created owned
/// like the cache directory. When it can be neither created nor opened
/// (`gocache/` is a symlink, or not writable by this user and has no lock
/// file yet), the trim goes on without one: a lock only keeps two trims
/// from doing the same work; the executor re-checks every entry just before
/// removing it, so two at once never remove anything twice or anything in
/// use. [`TrimLock::held`] says which.
#[derive(Debug)]
pub struct TrimLock {
    file: Option<File>,
    path: PathBuf,
}

impl TrimLock {
    /// Takes the lock without waiting. `Ok(None)`: another process holds it.
    pub fn try_acquire(cache_dir: &Path) -> Result<Option<TrimLock>> {
        let path = lock_path(cache_dir);
        let file = match own_dir(cache_dir).and_then(|dir| open_lock_file(&dir, "trim.lock")) {
            Ok(file) => file,
            // No lock to take: go on without one (see the type's doc).
            Err(_) => return Ok(Some(TrimLock { file: None, path })),
        };
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(Some(TrimLock {
                file: Some(file),
                path,
            })),
            Err(fs4::TryLockError::WouldBlock) => Ok(None),
            // A filesystem without locks (some network ones): as with no
            // lock file, go on without one.
            Err(fs4::TryLockError::Error(_)) => Ok(Some(TrimLock { file: None, path })),
        }
    }

    /// Takes the lock, waiting up to `wait` for another holder to let go.
    /// `Ok(None)`: still held after that.
    pub fn acquire_within(cache_dir: &Path, wait: std::time::Duration) -> Result<Option<TrimLock>> {
        let started = std::time::Instant::now();
        loop {
            if let Some(lock) = TrimLock::try_acquire(cache_dir)? {
                return Ok(Some(lock));
            }
            if started.elapsed() >= wait {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// False when no lock file could be opened and the trim goes on
    /// without one.
    pub fn held(&self) -> bool {
        self.file.is_some()
    }
}

impl Drop for TrimLock {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            let _ = fs4::FileExt::unlock(file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_go_cache_is_told_from_other_directories() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        assert_eq!(check_go_cache(p).unwrap(), Recognised::OnlyGoNames);
        std::fs::create_dir(p.join(GOCACHE_DIR)).unwrap();
        std::fs::write(p.join("trim.txt"), "1").unwrap();
        std::fs::create_dir(p.join("3a")).unwrap();
        assert_eq!(check_go_cache(p).unwrap(), Recognised::OnlyGoNames);
        // A file under a subdirectory's name is odd.
        std::fs::write(p.join("3b"), "").unwrap();
        let e = check_go_cache(p).unwrap_err().to_string();
        assert!(
            e.contains("it holds 3b, no README from Go and 1 of the 256 subdirectories"),
            "{e}"
        );
        for i in 0..5 {
            std::fs::write(p.join(format!("f{i}")), "").unwrap();
        }
        let e = check_go_cache(p).unwrap_err().to_string();
        assert!(e.contains("it holds 3b, f0, f1 and 3 more,"), "{e}");
        // Go's README settles it, odd items or not.
        std::fs::write(p.join("README"), GO_README).unwrap();
        assert_eq!(check_go_cache(p).unwrap(), Recognised::Readme);
        // A symlink named README is not followed.
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("r"), GO_README).unwrap();
        std::fs::remove_file(p.join("README")).unwrap();
        std::os::unix::fs::symlink(other.path().join("r"), p.join("README")).unwrap();
        assert!(check_go_cache(p).is_err());
        // So do the 256 subdirectories.
        let c = fixtures::TinyCache::new();
        std::fs::write(c.join("stray"), "").unwrap();
        assert_eq!(check_go_cache(c.path()).unwrap(), Recognised::Subdirs);
        assert!(CacheDir::open(c.path()).is_ok());
        assert!(CacheDir::open(p).is_err(), "nothing is removed from it");
    }

    #[test]
    fn the_cache_path_is_checked_with_one_open() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("missing");
        assert!(matches!(check_cache(&missing), Err(Error::CacheMissing(_))));
        let file = d.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(
            check_cache(&file),
            Err(Error::CacheNotADirectory(_))
        ));
        let e = check_cache(&file.join("cache")).unwrap_err().to_string();
        assert!(e.contains("Not a directory (os error 20)"), "{e}");
        // A symlink at the cache path itself is followed: the user put the
        // cache there.
        let c = fixtures::TinyCache::new();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(c.path(), &link).unwrap();
        assert_eq!(check_cache(&link).unwrap(), Recognised::Subdirs);
        std::os::unix::fs::symlink(&missing, d.path().join("dangling")).unwrap();
        assert!(matches!(
            check_cache(&d.path().join("dangling")),
            Err(Error::CacheMissing(_))
        ));
    }

    #[test]
    fn setting_up_like_go_refuses_a_project_and_fills_an_empty_directory() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("a/b/cache");
        init_like_go(&cache).unwrap();
        assert_eq!(
            std::fs::read_to_string(cache.join("README")).unwrap(),
            GO_README
        );
        assert_eq!(check_go_cache(&cache).unwrap(), Recognised::Readme);
        assert!((0..=255u8).all(|s| cache.join(subdir_name(s)).is_dir()));
        let project = d.path().join("hello");
        std::fs::create_dir(&project).unwrap();
        std::fs::write(project.join("go.mod"), "module hello\n").unwrap();
        assert!(matches!(
            init_like_go(&project),
            Err(Error::NotAGoCache { .. })
        ));
        assert_eq!(std::fs::read_dir(&project).unwrap().count(), 1);
    }

    #[test]
    fn an_index_given_explicitly_needs_its_directory() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path();
        assert_eq!(index_path(c, None).unwrap(), c.join("gocache/index.sqlite"));
        let there = c.join("i.sqlite");
        assert_eq!(index_path(c, Some(&there)).unwrap(), there);
        assert_eq!(
            index_path(c, Some(Path::new("i.sqlite"))).unwrap(),
            Path::new("i.sqlite")
        );
        let e = index_path(c, Some(&c.join("no/such/i.sqlite"))).unwrap_err();
        assert!(matches!(e, Error::IndexDir { .. }), "{e}");
        assert!(!c.join("no").exists());
        std::fs::write(c.join("file"), "").unwrap();
        let e = index_path(c, Some(&c.join("file/i.sqlite"))).unwrap_err();
        assert!(e.to_string().contains("Not a directory"), "{e}");
    }
}

/// Tiny cache directories on disk, for unit tests: entries named as
/// [`crate::model::fixtures::entry`] names them (all 32 ID bytes `id`, so
/// in subdirectory `id`), with their mtimes set instead of waited for.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::fs::{File, FileTimes};
    use std::path::{Path, PathBuf};
    use std::time::{Duration, SystemTime};

    use crate::layout::{ActionEntry, EntryName, Id, subdir_name};
    use crate::model::UnixTime;

    /// A cache directory in a temporary directory, with Go's 256
    /// subdirectories.
    pub(crate) struct TinyCache {
        dir: tempfile::TempDir,
    }

    impl TinyCache {
        pub(crate) fn new() -> TinyCache {
            let dir = tempfile::tempdir().unwrap();
            for s in 0..=255u8 {
                std::fs::create_dir(dir.path().join(subdir_name(s))).unwrap();
            }
            TinyCache { dir }
        }

        /// The cache directory.
        pub(crate) fn path(&self) -> &Path {
            self.dir.path()
        }

        /// `rel` under the cache directory.
        pub(crate) fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
            self.dir.path().join(rel)
        }

        /// An action entry `id` naming output `output`, written at `at`.
        pub(crate) fn action(&self, id: u8, output: u8, at: UnixTime) -> EntryName {
            let name = EntryName::action(Id([id; 32]));
            let entry = ActionEntry {
                action: name.id,
                output: Id([output; 32]),
                size: 3,
                time_nanos: at * 1_000_000_000,
            };
            self.file(&name, entry.format().as_bytes(), at);
            name
        }

        /// An output `id` of `size` bytes, last used at `at`.
        pub(crate) fn output(&self, id: u8, size: usize, at: UnixTime) -> EntryName {
            let name = EntryName::data(Id([id; 32]));
            self.file(&name, &vec![b'x'; size], at);
            name
        }

        /// A cached executable `id` holding `program`, last used at `at`.
        pub(crate) fn exe(&self, id: u8, program: &str, at: UnixTime) -> EntryName {
            let name = EntryName::data(Id([id; 32]));
            let dir = name.path_in(self.path());
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join(program), b"\x7fELF").unwrap();
            set_mtime(&dir, at);
            name
        }

        fn file(&self, name: &EntryName, content: &[u8], at: UnixTime) {
            let path = name.path_in(self.path());
            std::fs::write(&path, content).unwrap();
            set_mtime(&path, at);
        }
    }

    /// Sets the mtime of `path` (a file or directory, not a symlink).
    pub(crate) fn set_mtime(path: &Path, at: UnixTime) {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(at as u64);
        File::open(path)
            .unwrap()
            .set_times(FileTimes::new().set_modified(t).set_accessed(t))
            .unwrap();
    }
}

#[cfg(test)]
mod time_tests {
    use super::fixtures::{TinyCache, set_mtime};
    use super::*;

    const T: UnixTime = 1_700_000_000;

    fn mtime(p: &Path) -> i64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(p).unwrap().mtime()
    }

    #[test]
    fn entry_mtimes_move_and_a_symlink_is_never_followed() {
        let c = TinyCache::new();
        let (o, x) = (c.output(8, 10, T), c.exe(9, "hello", T));
        let dir = CacheDir::open(c.path()).unwrap();
        set_entry_mtime(&dir, &o, T - 7200).unwrap();
        set_entry_mtime(&dir, &x, T - 7200).unwrap();
        assert_eq!(mtime(&o.path_in(c.path())), T - 7200);
        assert_eq!(mtime(&x.path_in(c.path())), T - 7200);
        // A link where an entry belongs: the link itself, never its target.
        let outside = tempfile::NamedTempFile::new().unwrap();
        set_mtime(outside.path(), T);
        let a = EntryName::action(crate::layout::Id([7; 32]));
        std::os::unix::fs::symlink(outside.path(), a.path_in(c.path())).unwrap();
        set_entry_mtime(&dir, &a, T - 7200).unwrap();
        assert_eq!(mtime(outside.path()), T);
    }

    #[test]
    fn a_subdirectory_is_sealed_only_when_unchanged() {
        let c = TinyCache::new();
        let dir = CacheDir::open(c.path()).unwrap();
        let was = subdir_mtime_ns(&dir, 5).unwrap();
        assert_eq!(seal_subdir(&dir, 5, was + 1, T).unwrap(), None);
        assert_eq!(
            seal_subdir(&dir, 5, was, T).unwrap(),
            Some(T * 1_000_000_000)
        );
        assert_eq!(subdir_mtime_ns(&dir, 5), Some(T * 1_000_000_000));
        std::fs::remove_dir(c.join("06")).unwrap();
        assert_eq!(subdir_mtime_ns(&CacheDir::open(c.path()).unwrap(), 6), None);
    }

    #[test]
    fn go_trim_time_is_read_and_written_as_go_does_and_never_through_a_link() {
        let c = TinyCache::new();
        let dir = CacheDir::open(c.path()).unwrap();
        assert_eq!(read_go_trim_time(&dir), None);
        write_go_trim_time(&dir, T).unwrap();
        assert_eq!(
            std::fs::read_to_string(c.join("trim.txt")).unwrap(),
            T.to_string()
        );
        std::fs::write(c.join("trim.txt"), "1234567890123\n").unwrap();
        write_go_trim_time(&dir, T + 1).unwrap();
        assert_eq!(read_go_trim_time(&dir), Some(T + 1));
        std::fs::remove_file(c.join("trim.txt")).unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::os::unix::fs::symlink(outside.path(), c.join("trim.txt")).unwrap();
        assert!(write_go_trim_time(&dir, T).is_err());
        assert_eq!(read_go_trim_time(&dir), None);
        assert_eq!(std::fs::read(outside.path()).unwrap(), b"");
    }
}
