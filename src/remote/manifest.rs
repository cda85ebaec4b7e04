//! Session manifests: what the last session of a build used, so that the
//! next one can fetch it before go asks.
//!
//! Go asks for one cache entry at a time per build action, `-p` actions at
//! once (the CPUs), and a remote hit costs two round trips in sequence
//! (the action entry, then the output it names). Over a link of 20 ms
//! that is most of an empty machine's build: the bytes are not the limit,
//! the round trips are. A manifest turns them into parallel ones: at
//! close, `gocache prog` writes the entries its session used (local hits,
//! remote hits and uploads, in the order of first use) to
//! `m/<SHA-256 of the build key>`; at start, the next session with the
//! same key reads it (one GET) and fetches those entries into level one,
//! many at a time, while go starts (see `prog`'s prefetch).
//!
//! The build key is what `gocache prog` knows when go starts it: the main
//! module of its working directory (the `module` line of the nearest
//! `go.mod` above it; the directory itself where there is none), `GOOS`
//! and `GOARCH` (the environment's, else this machine's). Two builds with
//! the same key mostly use the same entries; where they do not (another
//! package, other flags, another Go version), a prefetch fetches entries
//! go does not ask for: wasted bytes, bounded, never a wrong one (each is
//! verified as a fetch is).
//!
//! A manifest is a hint, never trusted for content: it names actions, and
//! the prefetch fetches each action's entry from `a/` and its output as a
//! fetch does. The session's entries come first; entries of the previous
//! manifest the session did not use follow with their age (sessions since
//! one used them) plus one, and go after [`MAX_AGE`], so that a session
//! that used only a part of the build (`go vet`, one package) does not
//! throw away the rest, and what no session uses any more leaves.
//!
//! Format: zstd of text lines, the first `gocache-manifest 1 <key>`, then
//! `<action hex> <output hex> <size> <age>` per entry. A manifest of
//! another version, or that does not parse, is ignored (a newer writer's,
//! or damage): the session then fetches as it would without one.

use std::io::{Read, Write};

use sha2::Digest;

use super::keys;
use super::store::{ObjectStore, PutBody, StoreError};
use crate::layout::Id;

/// The format's version, in its first line.
pub const VERSION: u32 = 1;
/// Entries in a manifest, at most.
pub const MAX_ENTRIES: usize = 50_000;
/// Sessions an entry stays in a manifest without being used.
pub const MAX_AGE: u8 = 3;
/// The largest manifest object read (compressed).
pub const MAX_STORED: u64 = 16 << 20;
/// The most a manifest decompresses to: [`MAX_ENTRIES`] lines and a head.
const MAX_TEXT: u64 = MAX_ENTRIES as u64 * 160 + 4096;
const MAGIC: &str = "gocache-manifest";

/// What identifies a build across machines: see the module doc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildKey(String);

impl BuildKey {
    /// A key as it is.
    pub fn new(key: impl Into<String>) -> BuildKey {
        BuildKey(key.into().replace(['\n', '\r'], " "))
    }

    /// The key of a go command started in `cwd` with environment `getenv`.
    pub fn of_build(cwd: &std::path::Path, getenv: impl Fn(&str) -> Option<String>) -> BuildKey {
        let module = cwd
            .ancestors()
            .find_map(|d| module_of(&d.join("go.mod")))
            .map(|m| format!("module {m}"))
            .unwrap_or_else(|| format!("dir {}", cwd.display()));
        let var = |n: &str| getenv(n).filter(|v| !v.is_empty());
        let goos = var("GOOS").unwrap_or_else(|| go_os(std::env::consts::OS).to_owned());
        let goarch = var("GOARCH").unwrap_or_else(|| go_arch(std::env::consts::ARCH).to_owned());
        BuildKey::new(format!("{module} {goos}/{goarch}"))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The manifest's object key: `m/<SHA-256 of the key>`.
    pub fn object_key(&self) -> String {
        let digest: [u8; 32] = sha2::Sha256::digest(self.0.as_bytes()).into();
        keys::manifest_key(Id(digest))
    }
}

/// The module path a `go.mod` declares, if it is there and says.
fn module_of(go_mod: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(go_mod).ok()?;
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("module")?;
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        let m = rest.split("//").next()?.trim().trim_matches('"');
        (!m.is_empty()).then(|| m.to_owned())
    })
}

fn go_os(os: &str) -> &str {
    match os {
        "macos" => "darwin",
        o => o,
    }
}

fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        a => a,
    }
}

/// One entry a session used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The action ID.
    pub action: Id,
    /// The output it named.
    pub output: Id,
    /// The output's length.
    pub size: u64,
    /// Sessions since one used it (0: the session that wrote it).
    pub age: u8,
}

/// A build key's entries, most recently used first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The build key it is for.
    pub key: BuildKey,
    /// The entries.
    pub entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// The manifest a session with `key` writes: `used` (action, output,
    /// size, in order of first use) at age 0, then what `previous` held
    /// that `used` does not, one session older, up to [`MAX_AGE`]; at
    /// most [`MAX_ENTRIES`] in all.
    pub fn merge(key: BuildKey, used: &[(Id, Id, u64)], previous: Option<&Manifest>) -> Manifest {
        let mut seen = std::collections::HashSet::with_capacity(used.len());
        let mut entries = Vec::with_capacity(used.len());
        for &(action, output, size) in used {
            if seen.insert(action) {
                entries.push(ManifestEntry {
                    action,
                    output,
                    size,
                    age: 0,
                });
            }
        }
        for e in previous.map_or(&[][..], |m| &m.entries[..]) {
            if e.age < MAX_AGE && seen.insert(e.action) {
                entries.push(ManifestEntry {
                    age: e.age + 1,
                    ..*e
                });
            }
        }
        entries.truncate(MAX_ENTRIES);
        Manifest { key, entries }
    }

    /// True when `other` holds the same entries at the same ages, in any
    /// order: go asks for a build's entries in a different order each
    /// time, and a manifest that differs only in order is not worth a
    /// write (a warm build would otherwise rewrite it every session).
    pub fn same_entries(&self, other: &Manifest) -> bool {
        let sorted = |m: &Manifest| {
            let mut v: Vec<_> = m
                .entries
                .iter()
                .map(|e| (e.action, e.output, e.size, e.age))
                .collect();
            v.sort_unstable();
            v
        };
        self.key == other.key
            && self.entries.len() == other.entries.len()
            && sorted(self) == sorted(other)
    }

    /// The object's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut text = String::with_capacity(self.entries.len() * 150 + 64);
        text.push_str(&format!("{MAGIC} {VERSION} {}\n", self.key.as_str()));
        for e in &self.entries {
            text.push_str(&format!("{} {} {} {}\n", e.action, e.output, e.size, e.age));
        }
        // Hex compresses to about half; level 3 costs nothing at this size.
        zstd::bulk::compress(text.as_bytes(), 3).unwrap_or_default()
    }

    /// Reads an object's bytes: `Err` says why it is not a manifest this
    /// version reads.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        let mut text = Vec::new();
        zstd::stream::read::Decoder::new(bytes)
            .map_err(|e| e.to_string())?
            .take(MAX_TEXT + 1)
            .read_to_end(&mut text)
            .map_err(|e| format!("not a zstd stream: {e}"))?;
        if text.len() as u64 > MAX_TEXT {
            return Err(format!("longer than {MAX_TEXT} bytes"));
        }
        let text = std::str::from_utf8(&text).map_err(|_| "not UTF-8".to_owned())?;
        let mut lines = text.lines();
        let head = lines.next().ok_or("empty")?;
        let rest = head
            .strip_prefix(MAGIC)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or("no manifest header")?;
        let (version, key) = rest.split_once(' ').unwrap_or((rest, ""));
        if version != VERSION.to_string() {
            return Err(format!("version {version}, not {VERSION}"));
        }
        let mut entries = Vec::new();
        for (n, line) in lines.enumerate() {
            if entries.len() == MAX_ENTRIES {
                return Err(format!("more than {MAX_ENTRIES} entries"));
            }
            let bad = || format!("line {}: {line:?}", n + 2);
            let mut f = line.split(' ');
            let mut id = || f.next().and_then(|h| Id::from_hex(h.as_bytes()));
            let (Some(action), Some(output)) = (id(), id()) else {
                return Err(bad());
            };
            let size = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let age = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            if f.next().is_some() {
                return Err(bad());
            }
            entries.push(ManifestEntry {
                action,
                output,
                size,
                age,
            });
        }
        Ok(Manifest {
            key: BuildKey::new(key),
            entries,
        })
    }
}

/// Why a manifest was not read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The object is not a manifest this version reads.
    #[error("{key} is not a session manifest this version reads ({why}); ignored")]
    Unreadable {
        /// Its key.
        key: String,
        /// Why.
        why: String,
    },
}

/// Reads the manifest of `key`: `None` when there is none.
pub fn read(store: &dyn ObjectStore, key: &BuildKey) -> Result<Option<Manifest>, ManifestError> {
    let okey = key.object_key();
    let mut bytes = Vec::new();
    let got = match store.get(&okey, MAX_STORED, &mut bytes) {
        Err(StoreError::TooLarge { size, .. }) => {
            return Err(ManifestError::Unreadable {
                key: okey,
                why: format!("{size} bytes or more"),
            });
        }
        r => r?,
    };
    if got.is_none() {
        return Ok(None);
    }
    let m = Manifest::decode(&bytes).map_err(|why| ManifestError::Unreadable {
        key: okey.clone(),
        why,
    })?;
    if m.key != *key {
        return Err(ManifestError::Unreadable {
            key: okey,
            why: format!("it is for {:?}", m.key.as_str()),
        });
    }
    Ok(Some(m))
}

/// Writes `m` over its key's manifest.
pub fn write(store: &dyn ObjectStore, m: &Manifest) -> Result<(), StoreError> {
    let bytes = m.encode();
    store.put(&m.key.object_key(), PutBody::Bytes(&bytes))
}

/// A sink that stops at once when `cancel` is set (a prefetch at close).
pub struct Cancellable<'a, W: Write> {
    /// Where the bytes go.
    pub inner: W,
    /// Set to stop.
    pub cancel: &'a std::sync::atomic::AtomicBool,
}

impl<W: Write> Write for Cancellable<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "prefetch cancelled",
            ));
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    #[test]
    fn round_trips_and_refuses_what_it_does_not_read() {
        let m = Manifest {
            key: BuildKey::new("module example.com/m linux/amd64"),
            entries: vec![
                ManifestEntry {
                    action: id(1),
                    output: id(2),
                    size: 12345,
                    age: 0,
                },
                ManifestEntry {
                    action: id(3),
                    output: id(4),
                    size: 0,
                    age: 2,
                },
            ],
        };
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        let z = |s: &str| zstd::bulk::compress(s.as_bytes(), 1).unwrap();
        assert!(Manifest::decode(b"not zstd").is_err());
        assert!(Manifest::decode(&z("gocache-manifest 2 k\n")).is_err());
        assert!(Manifest::decode(&z("other 1 k\n")).is_err());
        let line = format!("{} {} 5 0", id(1), id(2));
        assert!(Manifest::decode(&z(&format!("gocache-manifest 1 k\n{line}\n"))).is_ok());
        for bad in [
            format!("{line} x"),
            format!("{} 5 0", id(1)),
            format!("{} {} -5 0", id(1), id(2)),
            format!("{} {} 5 300", id(1), id(2)),
        ] {
            let text = format!("gocache-manifest 1 k\n{bad}\n");
            assert!(Manifest::decode(&z(&text)).is_err(), "{bad}");
        }
    }

    #[test]
    fn merge_puts_the_session_first_and_ages_the_rest_out() {
        let key = BuildKey::new("k");
        let prev = Manifest::merge(key.clone(), &[(id(1), id(11), 1), (id(2), id(12), 2)], None);
        // The session used 3 and 2 (2 twice).
        let used = [(id(3), id(13), 3), (id(2), id(12), 2), (id(2), id(12), 2)];
        let m = Manifest::merge(key.clone(), &used, Some(&prev));
        let got: Vec<_> = m.entries.iter().map(|e| (e.action, e.age)).collect();
        assert_eq!(got, [(id(3), 0), (id(2), 0), (id(1), 1)]);
        // Entry 2 was used by the session above: the next MAX_AGE sessions
        // that do not use it keep it; the one after drops it.
        let mut m = m;
        for _ in 0..MAX_AGE {
            m = Manifest::merge(key.clone(), &[(id(3), id(13), 3)], Some(&m));
        }
        let got: Vec<_> = m.entries.iter().map(|e| (e.action, e.age)).collect();
        assert_eq!(got, [(id(3), 0), (id(2), MAX_AGE)]);
        m = Manifest::merge(key.clone(), &[(id(3), id(13), 3)], Some(&m));
        let got: Vec<_> = m.entries.iter().map(|e| e.action).collect();
        assert_eq!(
            got,
            [id(3)],
            "unused entries leave after {MAX_AGE} sessions"
        );
    }

    #[test]
    fn a_session_that_used_the_same_entries_in_another_order_changes_nothing() {
        let key = BuildKey::new("k");
        let used = [(id(1), id(11), 1), (id(2), id(12), 2), (id(3), id(13), 3)];
        let prev = Manifest::merge(key.clone(), &used, None);
        let mut again = used;
        again.reverse();
        let m = Manifest::merge(key.clone(), &again, Some(&prev));
        assert_ne!(m, prev, "the order differs");
        assert!(m.same_entries(&prev));
        // One entry left unused is one session older: a change.
        let m = Manifest::merge(key.clone(), &again[..2], Some(&prev));
        assert!(!m.same_entries(&prev));
        // Another build key never matches.
        let other = Manifest::merge(BuildKey::new("j"), &used, None);
        assert!(!other.same_entries(&prev));
    }

    #[test]
    fn build_keys_name_the_module_and_platform() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        let env = |n: &str| (n == "GOOS").then(|| "windows".to_owned());
        let k = BuildKey::of_build(&sub, env);
        assert!(k.as_str().starts_with("dir "), "{k:?}");
        assert!(k.as_str().contains(" windows/"), "{k:?}");
        std::fs::write(
            dir.path().join("a/go.mod"),
            "// c\nmodule  \"example.com/x\" // y\n\ngo 1.24\n",
        )
        .unwrap();
        let k = BuildKey::of_build(&sub, env);
        assert!(
            k.as_str().starts_with("module example.com/x windows/"),
            "{k:?}"
        );
        assert_ne!(k.object_key(), BuildKey::new("other").object_key());
        assert!(matches!(
            keys::RemoteKey::parse(&k.object_key()),
            keys::RemoteKey::Manifest(_)
        ));
    }
}
