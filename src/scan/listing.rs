//! What is on disk: the cache's top level and each subdirectory's names,
//! read through descriptors (`getdents` and `fstatat`, never following a
//! symlink).
//!
//! Each listing opens its subdirectory afresh rather than through a
//! [`CacheDir`](crate::cachedir::CacheDir)'s table: it stats the
//! subdirectory by name before opening it and `fstat`s the descriptor after
//! reading (see [`reconcile`](super::reconcile)), which must be the
//! directory that is there now, not one opened earlier and since replaced
//! (`go clean -cache`).

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, FileType};

use super::MISSING;
use crate::cachedir::{open_dir_at, tree_size};
use crate::error::{Error, Result};
use crate::layout::{EntryName, TopLevel, subdir_name};
use crate::model::{Other, OtherClass};

/// A subdirectory's listing, or why there is none.
pub(super) type Listed = std::result::Result<Listing, NoListing>;
/// The top level's odd items, and each subdirectory's mtime.
pub(super) type TopLevelRead = Result<(Vec<Other>, Vec<Option<i64>>)>;

/// The mtime in whole seconds. (`st_mtime`'s type varies by target; it is
/// an `i64` on the 64-bit Linux targets we build for.)
#[allow(clippy::useless_conversion)]
pub(super) fn secs(st: &rustix::fs::Stat) -> i64 {
    i64::from(st.st_mtime)
}

pub(super) fn mtime_ns(st: &rustix::fs::Stat) -> i64 {
    secs(st)
        .saturating_mul(1_000_000_000)
        .saturating_add(st.st_mtime_nsec as i64)
}

/// A subdirectory's listing, read before the index's rows are at hand.
pub(super) struct Listing {
    pub(super) dir_fd: OwnedFd,
    /// The subdirectory's mtime (ns) before it was read.
    pub(super) mtime_before: i64,
    pub(super) dir_allocated: u64,
    /// Names of the strict entry pattern.
    pub(super) entries: Vec<EntryName>,
    /// Every other name but `.` and `..`.
    pub(super) others: Vec<std::ffi::CString>,
}

/// Why a subdirectory has no listing.
pub(super) enum NoListing {
    /// It does not exist (`go clean -cache`).
    Missing,
    /// Its name is a file or symlink, reported at the top level; its
    /// "entries" are not ours to look into.
    NotADirectory,
    /// It exists but could not be read.
    Unreadable(String),
}

pub(super) fn list_subdir(
    cache_fd: &OwnedFd,
    subdir: u8,
) -> std::result::Result<Listing, NoListing> {
    let name = subdir_name(subdir);
    let before = match rustix::fs::statat(cache_fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => return Err(NoListing::Missing),
        Err(e) => return Err(NoListing::Unreadable(format!("{name}: {e}"))),
        Ok(st) => st,
    };
    if FileType::from_raw_mode(before.st_mode as _) != FileType::Directory {
        return Err(NoListing::NotADirectory);
    }
    let dir_fd = open_dir_at(cache_fd, name.as_str())
        .map_err(|e| NoListing::Unreadable(format!("{name}: cannot open: {e}")))?;
    // One getdents per 64 KiB (about 900 names), read straight from the
    // descriptor: a 4,000-entry subdirectory in 5 calls.
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 64 << 10];
    let mut dir = rustix::fs::RawDir::new(&dir_fd, &mut buf);
    // About what the directory holds (ext4: 72-byte records for 66-byte
    // names), within reason whatever the file system reports.
    let guess = usize::try_from(before.st_size / 80)
        .unwrap_or(0)
        .min(1 << 16);
    let mut entries = Vec::with_capacity(guess);
    let mut others = Vec::new();
    while let Some(item) = dir.next() {
        let item =
            item.map_err(|e| NoListing::Unreadable(format!("{name}: reading entries: {e}")))?;
        let fname = item.file_name();
        let bytes = fname.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        match EntryName::parse(bytes).filter(|n| n.subdir() == subdir) {
            Some(n) => entries.push(n),
            None => others.push(fname.to_owned()),
        }
    }
    Ok(Listing {
        dir_fd,
        mtime_before: mtime_ns(&before),
        dir_allocated: alloc_of(&before),
        entries,
        others,
    })
}

/// Lists the top of the cache directory: Go's own files, gocache's
/// directory, and anything odd (sizes walked without following links).
/// Also returns each subdirectory's mtime in nanoseconds ([`MISSING`] when
/// it does not exist, `None` when it is not a plain directory), from the
/// same `fstatat`, so the top is statted once.
pub(super) fn scan_top_level(
    cache_fd: &OwnedFd,
    cache_dir: &Path,
) -> Result<(Vec<Other>, Vec<Option<i64>>)> {
    // 256 subdirectories and a few files: one getdents.
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 16 << 10];
    let mut dir = rustix::fs::RawDir::new(cache_fd, &mut buf);
    let mut out = Vec::new();
    let mut mtimes = vec![Some(MISSING); 256];
    while let Some(item) = dir.next() {
        let item = item.map_err(|e| Error::io("reading", cache_dir, e.into()))?;
        let fname = item.file_name();
        let b = fname.to_bytes();
        if b == b"." || b == b".." {
            continue;
        }
        let Ok(st) = rustix::fs::statat(cache_fd, fname, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let t = FileType::from_raw_mode(st.st_mode as _);
        let path = String::from_utf8_lossy(b).into_owned();
        let (class, what) = match (TopLevel::classify(b), t) {
            (TopLevel::Subdir(s), FileType::Directory) => {
                mtimes[s as usize] = Some(mtime_ns(&st));
                continue;
            }
            (TopLevel::Subdir(s), t) => {
                mtimes[s as usize] = None;
                (
                    OtherClass::Odd,
                    format!(
                        "{} where a cache subdirectory belongs; not followed",
                        type_name(t)
                    ),
                )
            }
            (TopLevel::Readme, FileType::RegularFile) => (OtherClass::Go, "Go's README".into()),
            (TopLevel::TrimTxt, FileType::RegularFile) => {
                (OtherClass::Go, "Go's last trim time".into())
            }
            (TopLevel::TestExpire, FileType::RegularFile) => {
                (OtherClass::Go, "Go's test cache expiry".into())
            }
            (TopLevel::Fuzz, FileType::Directory) => (
                OtherClass::Go,
                "Go's fuzz cache (never trimmed by Go)".into(),
            ),
            (TopLevel::Gocache, FileType::Directory) => {
                (OtherClass::Gocache, "gocache's index and lock".into())
            }
            (_, t) => (OtherClass::Odd, format!("stray {}", type_name(t))),
        };
        let (apparent, allocated) = if t == FileType::Directory {
            tree_size(cache_fd, fname)
        } else {
            (size_of(&st), alloc_of(&st))
        };
        out.push(Other {
            path,
            class,
            what,
            apparent,
            allocated,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((out, mtimes))
}

pub(super) fn size_of(st: &rustix::fs::Stat) -> u64 {
    u64::try_from(st.st_size).unwrap_or(0)
}

pub(super) fn alloc_of(st: &rustix::fs::Stat) -> u64 {
    u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512)
}

pub(super) fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "unknown file type",
    }
}
