//! Level one: the cache directory as a store of entries, in Go's own
//! layout.
//!
//! [`LocalStore`] owns the disk I/O of `gocache prog`'s gets and puts, and
//! of the remote tier's fetches into the local cache: a get reads the
//! action entry `<xx>/<action id>-a` (Go's 175-byte format) and finds its
//! output `<xx>/<output id>-d`, marking both used as Go does; a put has its
//! output streamed into a temporary file ([`TmpFile`], named
//! [`super::tmp_name`], which Go ignores) in the output's subdirectory,
//! renamed into place, then the action entry written through a temporary
//! name the same way. Nobody ever sees half a file, and plain `go`, the
//! index, `stats` and `trim` read the entries as Go's own.
//!
//! Everything goes through [`CacheDir`]'s descriptors with the `*at` calls,
//! never following a symlink: nothing outside the cache is reached,
//! whatever is swapped in. A get is an `openat`, a `read`, an `fstat` and
//! an `fstatat` (and a `utimensat` for each file over an hour old).

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::{CacheDir, tmp_name};
use crate::error::{Error, Result};
use crate::layout::{ACTION_ENTRY_SIZE, ActionEntry, EntryName, Id, NAME_LEN, subdir_name};
use crate::limits::GO_MTIME_LAG;
use crate::model::UnixTime;

/// The cache directory as level one's store: gets, puts and temporary
/// files in Go's layout (see the module doc). `Sync`: one is shared by
/// every thread of a `gocache prog` session.
pub struct LocalStore {
    /// The cache, with each subdirectory opened `O_NOFOLLOW` on first use.
    /// (A subdirectory removed while we serve, by `go clean -cache`, then
    /// reads as misses until the next `LocalStore`.)
    dir: CacheDir,
    /// The cache directory with a trailing `/`, for [`LocalStore::disk_path`].
    prefix: String,
    /// The next temporary file's number in this process.
    tmp_seq: AtomicU64,
}

/// What [`LocalStore::put_or_keep`] did.
#[derive(Debug)]
pub enum Put {
    /// The output and its action entry are in place. `output_marked`: the
    /// output was there already and this put marked it used
    /// ([`mark_used`] moved its mtime).
    Stored {
        /// Whether the put moved the output's mtime to its `now`.
        output_marked: bool,
    },
    /// The output is in place, its action entry could not be written: a
    /// later get misses.
    OutputOnly(Error),
    /// The output could not be put in place: it is still in the temporary
    /// file, for the caller to discard when it is no longer read.
    Kept(TmpFile, Error),
}

/// An entry level one holds, as a get found it (and marked it used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Its action entry.
    pub entry: ActionEntry,
    /// What its output takes on disk (allocated blocks).
    pub allocated: u64,
    /// Whether the get moved the action entry's and the output's mtimes
    /// to its `now` ([`mark_used`]), in that order: the index records it,
    /// so that a trim does not take the mark for a use since its plan.
    pub marked: [bool; 2],
}

/// A temporary file in a cache subdirectory, named relative to its
/// descriptor: created, renamed and removed through the [`LocalStore`]
/// with `*at` calls, never by a path that a symlink swapped in later could
/// redirect. One that is neither put nor discarded (a killed server) is
/// swept by a full trim once it is an hour old.
#[derive(Debug)]
pub struct TmpFile {
    subdir: u8,
    name: CString,
}

impl TmpFile {
    /// The subdirectory it is in.
    pub fn subdir(&self) -> u8 {
        self.subdir
    }
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("dir", &self.dir)
            .finish()
    }
}

impl LocalStore {
    /// The store over `dir` (open, and recognised as a Go build cache).
    pub fn new(dir: CacheDir) -> LocalStore {
        LocalStore {
            prefix: dir.path().join("").display().to_string(),
            dir,
            tmp_seq: AtomicU64::new(0),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &CacheDir {
        &self.dir
    }

    /// The cache directory's path (for messages).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where an entry is, as the go command is told: the cache directory
    /// as given, then `xx/<name>`.
    pub fn disk_path(&self, name: &EntryName) -> String {
        let mut s = String::with_capacity(self.prefix.len() + 3 + NAME_LEN);
        s.push_str(&self.prefix);
        s.push_str(&subdir_name(name.subdir()));
        s.push('/');
        s.extend(name.file_name_bytes().iter().map(|&b| b as char));
        s
    }

    /// Looks `action` up: its action entry, well formed and naming this
    /// action, and its output, a regular file of the size the entry says.
    /// Both are marked used at `now` as Go marks them ([`mark_used`]).
    /// `None` is a miss, whatever the reason (missing, malformed, a
    /// symlink, a directory): Go then builds and puts it again.
    pub fn get(&self, action: Id, now: UnixTime) -> Option<Hit> {
        let aname = EntryName::action(action);
        let adir = self.dir.subdir(aname.subdir())?;
        let acname = aname.c_file_name();
        let fd = rustix::fs::openat(
            adir,
            acname.as_c_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let ast = rustix::fs::fstat(&fd).ok()?;
        let entry = read_action_entry(&fd, &ast, action)?;
        let oname = EntryName::data(entry.output);
        let odir = self.dir.subdir(oname.subdir())?;
        let ocname = oname.c_file_name();
        let ost = rustix::fs::statat(odir, ocname.as_c_str(), AtFlags::SYMLINK_NOFOLLOW).ok()?;
        if !is_file_of(&ost, entry.size) {
            return None;
        }
        let marked = [
            mark_used(adir, acname.as_c_str(), &ast, now),
            mark_used(odir, ocname.as_c_str(), &ost, now),
        ];
        Some(Hit {
            entry,
            allocated: ost.st_blocks as u64 * 512,
            marked,
        })
    }

    /// True when `action`'s entry is a regular file in level one: one
    /// `stat`, nothing read and nothing marked used (unlike
    /// [`LocalStore::get`]). For a caller that only asks whether fetching
    /// it would be worth it; a get still checks the entry and its output.
    pub fn has_action(&self, action: Id) -> bool {
        let aname = EntryName::action(action);
        let Some(adir) = self.dir.subdir(aname.subdir()) else {
            return false;
        };
        rustix::fs::statat(
            adir,
            aname.c_file_name().as_c_str(),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode as _) == FileType::RegularFile)
    }

    /// Creates a new temporary file (`O_EXCL`, never following a link) in
    /// subdirectory `s`, created first if missing (as Go creates it).
    pub fn create_tmp(&self, s: u8) -> Result<(TmpFile, File)> {
        self.open_tmp(s)
            .map_err(|e| Error::io("creating a temporary file in", self.subdir_path(s), e))
    }

    /// [`LocalStore::create_tmp`] in subdirectory `s`, or when that
    /// cannot hold one (a link, not a directory), in the next subdirectory
    /// that can: a body then still has a place inside the cache (see
    /// [`LocalStore::put_or_keep`]). The error is `s`'s when none can.
    pub fn create_tmp_near(&self, s: u8) -> Result<(TmpFile, File)> {
        let first = match self.create_tmp(s) {
            Ok(x) => return Ok(x),
            Err(e) => e,
        };
        (1..=255u8)
            .map(|k| s.wrapping_add(k))
            .find_map(|other| self.open_tmp(other).ok())
            .ok_or(first)
    }

    fn open_tmp(&self, s: u8) -> std::io::Result<(TmpFile, File)> {
        let dir = self.dir.ensure_subdir(s)?;
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let name = tmp_name(std::process::id(), n);
        let fd = rustix::fs::openat(
            dir,
            name.as_c_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )?;
        Ok((TmpFile { subdir: s, name }, File::from(fd)))
    }

    /// Bytes free for an unprivileged user on the cache's filesystem, if
    /// they can be measured (`fstatvfs` on the directory's descriptor).
    pub fn free_bytes(&self) -> Option<u64> {
        let st = rustix::fs::fstatvfs(self.dir.fd()).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Where `tmp` is (for messages, and for the go command: see
    /// [`LocalStore::put_or_keep`]).
    pub fn tmp_path(&self, tmp: &TmpFile) -> PathBuf {
        self.subdir_path(tmp.subdir)
            .join(tmp.name.to_string_lossy().as_ref())
    }

    /// Removes `tmp` (best effort: a full trim sweeps what is left).
    pub fn discard(&self, tmp: &TmpFile) {
        if let Some(dir) = self.dir.subdir(tmp.subdir) {
            let _ = rustix::fs::unlinkat(dir, tmp.name.as_c_str(), AtFlags::empty());
        }
    }

    /// Puts `entry` in place: its output from `tmp`, which holds it
    /// (checked by the caller: length and SHA-256), renamed into place,
    /// unless level one holds an output of that name and size already (its
    /// name is its hash; Go verified it when it wrote it), which is kept
    /// and marked used; then the action entry, through a temporary name.
    /// `tmp` is gone afterwards, whatever happened. A directory with the
    /// output's name (a cached executable) is never replaced.
    pub fn put(&self, tmp: TmpFile, entry: &ActionEntry, now: UnixTime) -> Result<()> {
        match self.put_or_keep(tmp, entry, now) {
            Put::Stored { .. } => Ok(()),
            Put::OutputOnly(e) => Err(e),
            Put::Kept(tmp, e) => {
                self.discard(&tmp);
                Err(e)
            }
        }
    }

    /// [`LocalStore::put`], but an output that cannot be put in place
    /// (its subdirectory is a link or not a directory, a directory has its
    /// name) stays in `tmp` and comes back ([`Put::Kept`]): `gocache prog`
    /// hands its path to the go command, which may need to read what it
    /// put, and discards it at close.
    pub fn put_or_keep(&self, tmp: TmpFile, entry: &ActionEntry, now: UnixTime) -> Put {
        let output_marked = match self.place_output(&tmp, entry, now) {
            Ok(marked) => marked,
            Err(e) => return Put::Kept(tmp, e),
        };
        match self.write_action_entry(entry) {
            Ok(()) => Put::Stored { output_marked },
            Err(e) => Put::OutputOnly(e),
        }
    }

    /// Puts `tmp` in place as `entry`'s output, or keeps the one there
    /// (marking it used): true when that mark moved its mtime.
    fn place_output(&self, tmp: &TmpFile, entry: &ActionEntry, now: UnixTime) -> Result<bool> {
        let oname = EntryName::data(entry.output);
        let opath = || oname.path_in(self.path());
        let odir = self
            .dir
            .ensure_subdir(oname.subdir())
            .map_err(|e| Error::io("storing", opath(), e))?;
        let ocname = oname.c_file_name();
        match rustix::fs::statat(odir, ocname.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if is_file_of(&st, entry.size) => {
                self.discard(tmp);
                Ok(mark_used(odir, ocname.as_c_str(), &st, now))
            }
            Ok(st) if FileType::from_raw_mode(st.st_mode as _) == FileType::Directory => {
                Err(Error::EntryIsDirectory(opath()))
            }
            _ => self
                .rename(tmp, odir, ocname.as_c_str())
                .map(|()| false)
                .map_err(|e| Error::io("storing", opath(), e)),
        }
    }

    /// Writes `entry` as Go's action file, through a temporary name.
    fn write_action_entry(&self, entry: &ActionEntry) -> Result<()> {
        let aname = EntryName::action(entry.action);
        let fail = |e| Error::io("storing", aname.path_in(self.path()), e);
        let (tmp, mut f) = self.open_tmp(aname.subdir()).map_err(fail)?;
        let dir = self.dir.ensure_subdir(aname.subdir()).map_err(fail)?;
        let written = f
            .write_all(entry.format().as_bytes())
            .and_then(|()| self.rename(&tmp, dir, aname.c_file_name().as_c_str()));
        if written.is_err() {
            self.discard(&tmp);
        }
        written.map_err(fail)
    }

    /// Renames `tmp` to `target` in `to` (a subdirectory: the same
    /// filesystem).
    fn rename(&self, tmp: &TmpFile, to: &OwnedFd, target: &std::ffi::CStr) -> std::io::Result<()> {
        let from = self
            .dir
            .subdir(tmp.subdir)
            .ok_or_else(|| std::io::Error::other("the cache subdirectory is gone"))?;
        Ok(rustix::fs::renameat(from, tmp.name.as_c_str(), to, target)?)
    }

    /// The output `output`, opened read-only without following a link
    /// (for an upload: an open file survives a trim removing it).
    pub fn open_output(&self, output: Id) -> Option<File> {
        let oname = EntryName::data(output);
        let dir = self.dir.subdir(oname.subdir())?;
        let fd = rustix::fs::openat(
            dir,
            oname.c_file_name().as_c_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        Some(File::from(fd))
    }

    fn subdir_path(&self, s: u8) -> PathBuf {
        self.path().join(subdir_name(s))
    }
}

/// Reads an action entry from `fd` (whose stat is `st`): `None` unless it
/// is well formed and names `action`. A well-formed one is exactly
/// [`ACTION_ENTRY_SIZE`] bytes: one read of one byte more gets all of it
/// and proves there is no more.
fn read_action_entry(fd: &OwnedFd, st: &rustix::fs::Stat, action: Id) -> Option<ActionEntry> {
    let mut buf = [0u8; ACTION_ENTRY_SIZE + 1];
    let mut n = 0;
    while n < buf.len() {
        match rustix::io::read(fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
        if n as u64 == st.st_size as u64 {
            break;
        }
    }
    ActionEntry::parse(&buf[..n], Some(action)).ok()
}

/// A regular file (never a link) of `size` bytes.
fn is_file_of(st: &rustix::fs::Stat, size: u64) -> bool {
    FileType::from_raw_mode(st.st_mode as _) == FileType::RegularFile && st.st_size as u64 == size
}

/// Go's `markUsed`: an mtime [`GO_MTIME_LAG`] or more old is set to `now`
/// (atime too, as Go's `os.Chtimes` does). `st` is what the caller already
/// knows of `name` in `dir` (never followed if a link). True when it set
/// the mtime.
pub fn mark_used(
    dir: &OwnedFd,
    name: &std::ffi::CStr,
    st: &rustix::fs::Stat,
    now: UnixTime,
) -> bool {
    #[allow(clippy::useless_conversion)]
    let mtime = i64::from(st.st_mtime);
    if now.saturating_sub(mtime) < GO_MTIME_LAG {
        return false;
    }
    let t = rustix::fs::Timespec {
        tv_sec: now.max(0),
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW).is_ok()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{TinyCache, set_mtime};
    use super::*;

    const T: UnixTime = 1_700_000_000;

    fn mtime(p: &Path) -> i64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(p).unwrap().mtime()
    }

    fn store(c: &TinyCache) -> LocalStore {
        LocalStore::new(CacheDir::open(c.path()).unwrap())
    }

    /// Puts `body` for action `[a; 32]` as `gocache prog` does.
    fn put(s: &LocalStore, a: u8, body: &[u8], now: UnixTime) -> Result<ActionEntry> {
        use sha2::Digest;
        let output = Id(sha2::Sha256::digest(body).into());
        let (tmp, mut f) = s.create_tmp(output.subdir())?;
        f.write_all(body).unwrap();
        let entry = ActionEntry {
            action: Id([a; 32]),
            output,
            size: body.len() as u64,
            time_nanos: now * 1_000_000_000,
        };
        s.put(tmp, &entry, now)?;
        Ok(entry)
    }

    fn names_in(c: &TinyCache, s: u8) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(c.join(subdir_name(s)))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_put_is_read_back_as_go_wrote_it_and_leaves_no_temporary_file() {
        let c = TinyCache::new();
        let s = store(&c);
        assert_eq!(s.get(Id([4; 32]), T), None);
        let e = put(&s, 4, b"hello, cache", T).unwrap();
        let oname = EntryName::data(e.output);
        assert_eq!(
            std::fs::read(oname.path_in(c.path())).unwrap(),
            b"hello, cache"
        );
        assert_eq!(
            std::fs::read_to_string(EntryName::action(e.action).path_in(c.path())).unwrap(),
            e.format()
        );
        let hit = s.get(e.action, T).unwrap();
        assert_eq!(hit.entry, e);
        assert_eq!(
            s.disk_path(&oname),
            oname.path_in(c.path()).display().to_string()
        );
        for sub in [4, e.output.subdir()] {
            assert!(
                names_in(&c, sub)
                    .iter()
                    .all(|n| !n.starts_with(".gocache-tmp-")),
                "{:?}",
                names_in(&c, sub)
            );
        }
    }

    #[test]
    fn a_get_marks_used_only_what_is_an_hour_old_as_go_does() {
        let c = TinyCache::new();
        let (a, o) = (c.action(7, 8, T), EntryName::data(Id([8; 32])));
        c.output(8, 3, T);
        let s = store(&c);
        let lag = GO_MTIME_LAG;
        assert!(s.get(Id([7; 32]), T + lag - 1).is_some());
        assert_eq!(mtime(&a.path_in(c.path())), T, "under an hour: left alone");
        assert!(s.get(Id([7; 32]), T + lag).is_some());
        assert_eq!(mtime(&a.path_in(c.path())), T + lag);
        assert_eq!(mtime(&o.path_in(c.path())), T + lag);
    }

    #[test]
    fn a_get_misses_on_anything_but_a_whole_entry_and_never_follows_a_link() {
        let c = TinyCache::new();
        c.action(7, 8, T);
        let s = store(&c);
        assert_eq!(s.get(Id([7; 32]), T), None, "no output");
        c.output(8, 4, T);
        assert_eq!(s.get(Id([7; 32]), T), None, "output of another size");
        std::fs::remove_file(EntryName::data(Id([8; 32])).path_in(c.path())).unwrap();
        // The output is a link to a file of the right size outside.
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(outside.path(), b"xxx").unwrap();
        set_mtime(outside.path(), T - 7200);
        let o = EntryName::data(Id([8; 32])).path_in(c.path());
        std::os::unix::fs::symlink(outside.path(), &o).unwrap();
        assert_eq!(s.get(Id([7; 32]), T), None, "a linked output");
        assert_eq!(mtime(outside.path()), T - 7200);
        // An action entry naming another action.
        std::fs::remove_file(&o).unwrap();
        c.output(8, 3, T);
        let a9 = EntryName::action(Id([9; 32])).path_in(c.path());
        std::fs::copy(EntryName::action(Id([7; 32])).path_in(c.path()), &a9).unwrap();
        assert_eq!(s.get(Id([9; 32]), T), None, "another action's entry");
        assert!(s.get(Id([7; 32]), T).is_some());
    }

    #[test]
    fn a_put_keeps_an_output_it_has_and_never_replaces_an_executable() {
        let c = TinyCache::new();
        let s = store(&c);
        let e = put(&s, 1, b"same body", T - 7200).unwrap();
        let opath = EntryName::data(e.output).path_in(c.path());
        set_mtime(&opath, T - 7200);
        let e2 = put(&s, 2, b"same body", T).unwrap();
        assert_eq!(e2.output, e.output);
        assert_eq!(mtime(&opath), T, "kept, and marked used");
        // A directory with the output's name: refused, nothing left.
        let body = b"a program's name";
        use sha2::Digest;
        let output = Id(sha2::Sha256::digest(body).into());
        let dir = EntryName::data(output).path_in(c.path());
        std::fs::create_dir(&dir).unwrap();
        let err = put(&s, 3, body, T).unwrap_err();
        assert!(
            matches!(err, Error::EntryIsDirectory(ref p) if *p == dir),
            "{err}"
        );
        assert!(dir.is_dir());
        assert_eq!(s.get(Id([3; 32]), T), None);
        assert!(
            names_in(&c, output.subdir())
                .iter()
                .all(|n| !n.starts_with(".gocache-tmp-"))
        );
    }

    #[test]
    fn a_subdirectory_that_is_a_link_is_never_written_through() {
        let c = TinyCache::new();
        let s = store(&c);
        let outside = tempfile::tempdir().unwrap();
        std::fs::remove_dir(c.join("05")).unwrap();
        std::os::unix::fs::symlink(outside.path(), c.join("05")).unwrap();
        let err = s.create_tmp(5).unwrap_err();
        assert!(err.to_string().contains("05"), "{err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_output_that_cannot_be_put_in_place_is_kept_in_a_real_subdirectory() {
        use sha2::Digest;
        let c = TinyCache::new();
        let s = store(&c);
        let outside = tempfile::tempdir().unwrap();
        let body = b"kept aside".as_slice();
        let output = Id(sha2::Sha256::digest(body).into());
        let sub = c.join(subdir_name(output.subdir()));
        std::fs::remove_dir_all(&sub).unwrap();
        std::os::unix::fs::symlink(outside.path(), &sub).unwrap();
        let (tmp, mut f) = s.create_tmp_near(output.subdir()).unwrap();
        assert_eq!(tmp.subdir(), output.subdir().wrapping_add(1));
        f.write_all(body).unwrap();
        let entry = ActionEntry {
            action: Id([9; 32]),
            output,
            size: body.len() as u64,
            time_nanos: T * 1_000_000_000,
        };
        let Put::Kept(tmp, e) = s.put_or_keep(tmp, &entry, T) else {
            panic!("stored through a symlink");
        };
        assert!(e.to_string().contains(&subdir_name(output.subdir())), "{e}");
        let path = s.tmp_path(&tmp);
        assert!(path.starts_with(c.path()));
        assert_eq!(std::fs::read(&path).unwrap(), body);
        s.discard(&tmp);
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert_eq!(s.get(Id([9; 32]), T), None);
    }
}
