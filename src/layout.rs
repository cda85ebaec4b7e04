//! Go's build cache layout: where the cache is, what its names mean, and the
//! action-entry format. No I/O here beyond reading the go env file.
//!
//! Facts checked against Go 1.27 (`src/cmd/go/internal/cache/cache.go`,
//! `default.go`, `src/cmd/go/internal/cfg/cfg.go`):
//!
//! - An entry lives in the subdirectory named by the first byte of its ID:
//!   `ab/ab<62 more hex>-a` (an action entry) or `ab/ab…-d` (an output file,
//!   or a directory holding one cached executable).
//! - An action entry is exactly [`ACTION_ENTRY_SIZE`] bytes:
//!   `v1 <action id> <output id> <size %20d> <unix nanos %20d>\n`.
//! - Go writes an action entry in place (no rename), so a reader may see a
//!   short or half-written file while a build is running; such a file is
//!   reported as corrupt and never trusted, and the grace period keeps it.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

/// Length of a cache ID (SHA-256) in bytes.
pub const ID_LEN: usize = 32;
/// Length of a cache ID in lowercase hex.
pub const HEX_LEN: usize = 2 * ID_LEN;
/// Size in bytes of a well-formed action entry file.
pub const ACTION_ENTRY_SIZE: usize = 175;
/// Length of an entry's file name: 64 hex digits, `-`, and `a` or `d`.
pub const NAME_LEN: usize = HEX_LEN + 2;
/// The directory inside the cache where gocache keeps its own files (index,
/// lock). Go's `clean -cache` and trim only touch `00`..`ff`, so this
/// directory travels with the cache and is never removed by Go.
pub const GOCACHE_DIR: &str = "gocache";

/// A 32-byte cache ID (an action ID or an output ID).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(pub [u8; ID_LEN]);

impl Id {
    /// Its first 64 bits, big-endian: the compact name traces give an
    /// entry (`trace::schema::TraceId`), and the key of measured costs.
    pub fn prefix64(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b)
    }

    /// Parses 64 lowercase hex digits. Go only ever writes lowercase, and
    /// accepting uppercase would let two names denote one ID.
    pub fn from_hex(hex: &[u8]) -> Option<Id> {
        if hex.len() != HEX_LEN {
            return None;
        }
        // Table lookups and no early exit: this runs for every name in a
        // listing (4,000 per subdirectory of a 1M-entry cache).
        let mut out = [0u8; ID_LEN];
        let mut bad = 0u8;
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let (hi, lo) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
            bad |= (hi | lo) & 0x80;
            out[i] = (hi << 4) | (lo & 0x0f);
        }
        (bad == 0).then_some(Id(out))
    }

    /// The ID as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        String::from_utf8_lossy(&self.hex_bytes()).into_owned()
    }

    /// The ID as 64 lowercase hex digits, without allocating.
    pub fn hex_bytes(&self) -> [u8; HEX_LEN] {
        let mut out = [0u8; HEX_LEN];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = HEX[(b >> 4) as usize];
            out[2 * i + 1] = HEX[(b & 15) as usize];
        }
        out
    }

    /// The subdirectory (first byte) this ID's entries live in.
    pub fn subdir(&self) -> u8 {
        self.0[0]
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The value of each lowercase hex digit; 0x80 for any other byte.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0x80u8; 256];
    let mut c = 0;
    while c < 256 {
        if let Some(v) = hex_digit(c as u8) {
            t[c] = v;
        }
        c += 1;
    }
    t
};

const fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// A `BuildHasher` for maps keyed by [`Id`] or [`EntryName`]. IDs are
/// SHA-256 hashes: eight of their bytes are already a good hash, so hashing
/// them again (SipHash) only costs time. Not for keys an attacker picks
/// freely: cache names are written by Go.
#[derive(Default, Clone, Copy, Debug)]
pub struct IdHash;

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// The hasher of [`IdHash`].
#[derive(Debug)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Id hashes as its [u8; 32] (a length prefix, then the bytes). Not
        // the first bytes: the first one is the subdirectory, the same for
        // every name of a subdirectory, and hash maps index by the low bits.
        let bytes = bytes.get(8..16).unwrap_or(bytes);
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        b[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(b);
    }
    fn write_usize(&mut self, _: usize) {}
}

/// The suffix of an entry name: `-a` (action) or `-d` (data: an output file
/// or an executable directory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Suffix {
    /// `-a`: an action entry.
    Action,
    /// `-d`: an output file, or a directory holding a cached executable.
    Data,
}

/// An entry's file name with a terminating NUL ([`EntryName::c_file_name`]).
#[derive(Clone, Copy)]
pub struct CFileName([u8; NAME_LEN + 1]);

impl CFileName {
    /// The name as a C string.
    pub fn as_c_str(&self) -> &std::ffi::CStr {
        // Hex digits, '-' and a letter: the only NUL is the last byte.
        std::ffi::CStr::from_bytes_with_nul(&self.0).expect("one NUL, at the end")
    }
}

/// A validated entry name: `<64 lowercase hex>-a` or `<64 lowercase hex>-d`.
///
/// This is the only kind of name gocache ever removes, and only from the
/// subdirectory [`EntryName::subdir`] names.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryName {
    /// The ID encoded in the name.
    pub id: Id,
    /// `-a` or `-d`.
    pub suffix: Suffix,
}

impl EntryName {
    /// Parses a file name (not a path). Anything but the strict pattern is
    /// `None`.
    pub fn parse(name: &[u8]) -> Option<EntryName> {
        if name.len() != NAME_LEN || name[HEX_LEN] != b'-' {
            return None;
        }
        let suffix = match name[HEX_LEN + 1] {
            b'a' => Suffix::Action,
            b'd' => Suffix::Data,
            _ => return None,
        };
        Some(EntryName {
            id: Id::from_hex(&name[..HEX_LEN])?,
            suffix,
        })
    }

    /// Parses an `OsStr` file name.
    pub fn parse_os(name: &OsStr) -> Option<EntryName> {
        use std::os::unix::ffi::OsStrExt;
        EntryName::parse(name.as_bytes())
    }

    /// The action entry name for an action ID.
    pub fn action(id: Id) -> EntryName {
        EntryName {
            id,
            suffix: Suffix::Action,
        }
    }

    /// The data entry name for an output ID.
    pub fn data(id: Id) -> EntryName {
        EntryName {
            id,
            suffix: Suffix::Data,
        }
    }

    /// The subdirectory this entry belongs in.
    pub fn subdir(&self) -> u8 {
        self.id.subdir()
    }

    /// The file name as bytes, without allocating.
    pub fn file_name_bytes(&self) -> [u8; NAME_LEN] {
        let mut out = [0u8; NAME_LEN];
        out[..HEX_LEN].copy_from_slice(&self.id.hex_bytes());
        out[HEX_LEN] = b'-';
        out[HEX_LEN + 1] = match self.suffix {
            Suffix::Action => b'a',
            Suffix::Data => b'd',
        };
        out
    }

    /// The file name, `<hex>-a` or `<hex>-d`.
    pub fn file_name(&self) -> String {
        String::from_utf8_lossy(&self.file_name_bytes()).into_owned()
    }

    /// The file name, NUL-terminated for system calls, without allocating.
    pub fn c_file_name(&self) -> CFileName {
        let mut out = [0u8; NAME_LEN + 1];
        out[..NAME_LEN].copy_from_slice(&self.file_name_bytes());
        CFileName(out)
    }

    /// The path relative to the cache directory: `ab/<hex>-a`.
    pub fn rel_path(&self) -> String {
        format!("{}/{}", subdir_name(self.subdir()), self.file_name())
    }

    /// The absolute path under `cache_dir`.
    pub fn path_in(&self, cache_dir: &Path) -> PathBuf {
        cache_dir
            .join(subdir_name(self.subdir()))
            .join(self.file_name())
    }
}

impl serde::Serialize for EntryName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.rel_path())
    }
}

impl fmt::Debug for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rel_path())
    }
}

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rel_path())
    }
}

/// The two-hex-digit name of subdirectory `n` (`00`..`ff`).
pub fn subdir_name(n: u8) -> String {
    let mut s = String::with_capacity(2);
    s.push(HEX[(n >> 4) as usize] as char);
    s.push(HEX[(n & 15) as usize] as char);
    s
}

/// Parses a subdirectory name (`00`..`ff`, lowercase only).
pub fn parse_subdir(name: &[u8]) -> Option<u8> {
    match name {
        [hi, lo] => Some((hex_digit(*hi)? << 4) | hex_digit(*lo)?),
        _ => None,
    }
}

/// What a name at the top of the cache directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopLevel {
    /// One of the 256 entry subdirectories.
    Subdir(u8),
    /// `README`, written by Go.
    Readme,
    /// `trim.txt`: the unix time of Go's last trim.
    TrimTxt,
    /// `testexpire.txt`: written by `go clean -testcache`.
    TestExpire,
    /// `fuzz/`: fuzzing corpora; Go never trims it.
    Fuzz,
    /// gocache's own directory ([`GOCACHE_DIR`]).
    Gocache,
    /// Anything else: never touched, counted as "other".
    Other,
}

impl TopLevel {
    /// Classifies a name found at the top of the cache directory.
    pub fn classify(name: &[u8]) -> TopLevel {
        if let Some(n) = parse_subdir(name) {
            return TopLevel::Subdir(n);
        }
        match name {
            b"README" => TopLevel::Readme,
            b"trim.txt" => TopLevel::TrimTxt,
            b"testexpire.txt" => TopLevel::TestExpire,
            b"fuzz" => TopLevel::Fuzz,
            n if n == GOCACHE_DIR.as_bytes() => TopLevel::Gocache,
            _ => TopLevel::Other,
        }
    }

    /// True for the files and directories Go itself owns (never touched).
    pub fn is_go_owned(self) -> bool {
        matches!(
            self,
            TopLevel::Readme | TopLevel::TrimTxt | TopLevel::TestExpire | TopLevel::Fuzz
        )
    }
}

/// A parsed action entry: action ID -> output ID, with the output's size and
/// the time Go wrote the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActionEntry {
    /// The action ID (also in the file name).
    pub action: Id,
    /// The output ID: the output lives at `<output hex>-d`.
    pub output: Id,
    /// The output's size in bytes, as Go recorded it.
    pub size: u64,
    /// When Go wrote the entry, in Unix nanoseconds.
    pub time_nanos: i64,
}

/// Why an action entry file is not trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionParseError {
    /// Not exactly 175 bytes (a build may be writing it right now).
    #[error("action entry is {0} bytes, expected 175")]
    WrongSize(usize),
    /// The fixed `v1 ` header, separators or final newline are wrong.
    #[error("action entry has an invalid header or separators")]
    BadHeader,
    /// A hex field is not 64 lowercase hex digits.
    #[error("action entry has a malformed {0} ID")]
    BadId(&'static str),
    /// The action ID inside does not match the file name.
    #[error("action entry names action {0}, but its file name says another")]
    MismatchedId(Id),
    /// The size or time field is not a non-negative decimal number.
    #[error("action entry has a malformed {0} field")]
    BadNumber(&'static str),
}

impl ActionEntry {
    /// Parses an action entry exactly as Go's `cache.get` does. `expected`
    /// is the action ID from the file name, when known.
    pub fn parse(data: &[u8], expected: Option<Id>) -> Result<ActionEntry, ActionParseError> {
        if data.len() != ACTION_ENTRY_SIZE {
            return Err(ActionParseError::WrongSize(data.len()));
        }
        // Offsets: "v1 " (3) id (64) " " out (64) " " size (20) " " time (20) "\n".
        let id_at = 3;
        let out_at = id_at + HEX_LEN + 1;
        let size_at = out_at + HEX_LEN + 1;
        let time_at = size_at + 21;
        if &data[..3] != b"v1 "
            || data[out_at - 1] != b' '
            || data[size_at - 1] != b' '
            || data[time_at - 1] != b' '
            || data[ACTION_ENTRY_SIZE - 1] != b'\n'
        {
            return Err(ActionParseError::BadHeader);
        }
        let action =
            Id::from_hex(&data[id_at..id_at + HEX_LEN]).ok_or(ActionParseError::BadId("action"))?;
        if let Some(expected) = expected
            && expected != action
        {
            return Err(ActionParseError::MismatchedId(action));
        }
        let output = Id::from_hex(&data[out_at..out_at + HEX_LEN])
            .ok_or(ActionParseError::BadId("output"))?;
        let size = parse_padded(&data[size_at..size_at + 20])
            .ok_or(ActionParseError::BadNumber("size"))?;
        let time = parse_padded(&data[time_at..time_at + 20])
            .ok_or(ActionParseError::BadNumber("time"))?;
        Ok(ActionEntry {
            action,
            output,
            size,
            time_nanos: i64::try_from(time).map_err(|_| ActionParseError::BadNumber("time"))?,
        })
    }

    /// Formats the entry exactly as Go writes it (175 bytes).
    pub fn format(&self) -> String {
        let s = format!(
            "v1 {} {} {:>20} {:>20}\n",
            self.action, self.output, self.size, self.time_nanos
        );
        debug_assert_eq!(s.len(), ACTION_ENTRY_SIZE);
        s
    }
}

/// Parses a space-padded (on the left) non-negative decimal, as Go's
/// `%20d` writes and `strconv.ParseInt` after trimming reads it.
fn parse_padded(field: &[u8]) -> Option<u64> {
    let start = field.iter().position(|&c| c != b' ')?;
    let digits = &field[start..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    // Go parses as int64.
    (n <= i64::MAX as u64).then_some(n)
}

/// Where the cache directory came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheSource {
    /// `--cache-dir` on the command line.
    Flag,
    /// The `GOCACHE` environment variable.
    Env,
    /// A `GOCACHE=` line in the go env file at this path.
    EnvFile(PathBuf),
    /// The default, `<user cache dir>/go-build`.
    Default,
}

impl fmt::Display for CacheSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheSource::Flag => f.write_str("--cache-dir"),
            CacheSource::Env => f.write_str("$GOCACHE"),
            CacheSource::EnvFile(p) => write!(f, "GOCACHE in {}", p.display()),
            CacheSource::Default => f.write_str("the default location"),
        }
    }
}

/// Why the cache directory could not be determined.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    /// `GOCACHE=off`: Go's cache is disabled.
    #[error("the Go build cache is disabled (GOCACHE=off, from {0}); there is nothing to manage")]
    Off(CacheSource),
    /// A relative path, which Go rejects too.
    #[error("GOCACHE must be an absolute path, but {origin} gives {path:?}")]
    Relative {
        /// Where the value came from.
        origin: CacheSource,
        /// The value.
        path: PathBuf,
    },
    /// Neither `$XDG_CACHE_HOME` nor `$HOME` is set, and no GOCACHE either.
    #[error(
        "GOCACHE is not set and there is no user cache directory ({0}); set GOCACHE or pass --cache-dir"
    )]
    NoUserCacheDir(&'static str),
}

/// The cache directory and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The cache directory (absolute; not checked for existence here).
    pub dir: PathBuf,
    /// Where the setting came from.
    pub source: CacheSource,
}

/// Finds the cache directory the way `go env GOCACHE` does, on Unix:
/// `flag`, else `$GOCACHE`, else a `GOCACHE=` line in the go env file
/// (`$GOENV`, else `$XDG_CONFIG_HOME/go/env` or `~/.config/go/env`; macOS:
/// `~/Library/Application Support/go/env`), else the user cache directory's
/// `go-build` (`$XDG_CACHE_HOME` or `~/.cache`; macOS: `~/Library/Caches`).
///
/// `getenv` is the environment to read (injected, for tests). An empty
/// variable counts as unset, as in Go.
pub fn locate_cache(
    flag: Option<&Path>,
    getenv: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Located, LocateError> {
    let get = |k: &str| getenv(k).filter(|v| !v.is_empty());
    let (value, source) = if let Some(flag) = flag {
        (flag.as_os_str().to_owned(), CacheSource::Flag)
    } else if let Some(v) = get("GOCACHE") {
        (v, CacheSource::Env)
    } else if let Some((v, file)) =
        env_file(&get).and_then(|f| read_env_file(&f, "GOCACHE").map(|v| (v, f)))
    {
        (v, CacheSource::EnvFile(file))
    } else {
        let base = user_cache_dir(&get)?;
        return Ok(Located {
            dir: base.join("go-build"),
            source: CacheSource::Default,
        });
    };
    if value == "off" {
        return Err(LocateError::Off(source));
    }
    let path = PathBuf::from(value);
    if !path.is_absolute() {
        return Err(LocateError::Relative {
            origin: source,
            path,
        });
    }
    Ok(Located { dir: path, source })
}

/// A go setting (`GOFLAGS`, …) as the go command reads it: the
/// environment, else the go env file (see [`locate_cache`]); `None` when
/// neither sets it. An empty variable counts as unset, as in Go.
pub fn go_setting(key: &str, getenv: &dyn Fn(&str) -> Option<OsString>) -> Option<OsString> {
    let get = |k: &str| getenv(k).filter(|v| !v.is_empty());
    get(key).or_else(|| env_file(&get).and_then(|f| read_env_file(&f, key)))
}

fn env_file(get: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    if let Some(f) = get("GOENV") {
        return (f != "off").then(|| PathBuf::from(f));
    }
    let config = if cfg!(target_os = "macos") {
        PathBuf::from(get("HOME")?).join("Library/Application Support")
    } else if let Some(x) = get("XDG_CONFIG_HOME") {
        PathBuf::from(x)
    } else {
        PathBuf::from(get("HOME")?).join(".config")
    };
    Some(config.join("go/env"))
}

/// Reads `key` from a go env file the way `cfg.readEnvFile` does: lines of
/// `KEY=VALUE`, the value taken verbatim; lines not starting with `A`-`Z`
/// are ignored; the last occurrence wins.
pub fn read_env_file(file: &Path, key: &str) -> Option<OsString> {
    use std::os::unix::ffi::OsStringExt;
    let data = std::fs::read(file).ok()?;
    let mut found = None;
    for line in data.split(|&c| c == b'\n') {
        let Some(eq) = line.iter().position(|&c| c == b'=') else {
            continue;
        };
        if !line[0].is_ascii_uppercase() {
            continue;
        }
        if &line[..eq] == key.as_bytes() {
            found = Some(line[eq + 1..].to_vec());
        }
    }
    found.filter(|v| !v.is_empty()).map(OsString::from_vec)
}

fn user_cache_dir(get: &dyn Fn(&str) -> Option<OsString>) -> Result<PathBuf, LocateError> {
    if cfg!(target_os = "macos") {
        let home = get("HOME").ok_or(LocateError::NoUserCacheDir("$HOME is not defined"))?;
        return Ok(PathBuf::from(home).join("Library/Caches"));
    }
    if let Some(x) = get("XDG_CACHE_HOME") {
        let p = PathBuf::from(x);
        if !p.is_absolute() {
            return Err(LocateError::NoUserCacheDir(
                "path in $XDG_CACHE_HOME is relative",
            ));
        }
        return Ok(p);
    }
    let home = get("HOME").ok_or(LocateError::NoUserCacheDir(
        "neither $XDG_CACHE_HOME nor $HOME are defined",
    ))?;
    Ok(PathBuf::from(home).join(".cache"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let m: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| m.get(k).cloned()
    }

    const A: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

    #[test]
    fn a_go_setting_comes_from_the_environment_else_the_go_env_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("env");
        std::fs::write(&file, "GOFLAGS=-mod=mod -n\n").unwrap();
        let f = file.to_str().unwrap();
        let got = |vars: &[(&str, &str)]| go_setting("GOFLAGS", &env(vars));
        assert_eq!(got(&[("GOFLAGS", "-x"), ("GOENV", f)]), Some("-x".into()));
        assert_eq!(
            got(&[("GOFLAGS", ""), ("GOENV", f)]),
            Some("-mod=mod -n".into())
        );
        assert_eq!(got(&[("GOENV", "off")]), None);
    }

    #[test]
    fn names_of_one_subdirectory_spread_over_a_hash_table() {
        use std::hash::BuildHasher;
        // 4,096 names in subdirectory 01, as an incremental scan holds them:
        // hash maps place keys by the hash's low bits, so those must vary.
        let buckets: std::collections::HashSet<u64> = (0..4096u32)
            .map(|i| {
                let mut id = [0u8; 32];
                id[0] = 1;
                id[1..].copy_from_slice(&blake3::hash(&i.to_le_bytes()).as_bytes()[..31]);
                IdHash.hash_one(EntryName::action(Id(id))) & 4095
            })
            .collect();
        // Random placement fills about 63% of 4,096 buckets.
        assert!(
            buckets.len() > 2400,
            "only {} of 4096 buckets used",
            buckets.len()
        );
    }

    #[test]
    fn names_round_trip_and_reject_near_misses() {
        let n = EntryName::parse(format!("{A}-a").as_bytes()).unwrap();
        assert_eq!(n.suffix, Suffix::Action);
        assert_eq!(n.subdir(), 0x0a);
        assert_eq!(n.rel_path(), format!("0a/{A}-a"));
        assert_eq!(
            EntryName::parse(format!("{A}-d").as_bytes())
                .unwrap()
                .suffix,
            Suffix::Data
        );
        for bad in [
            format!("{A}-x"),
            format!("{A}-a.tmp"),
            format!("{}-a", A.to_uppercase()),
            format!("{}-a", &A[1..]),
            format!("{A}a"),
            format!("../{}-a", &A[3..]),
            String::new(),
        ] {
            assert_eq!(EntryName::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn action_entries_parse_like_go() {
        let e = ActionEntry {
            action: Id::from_hex(A.as_bytes()).unwrap(),
            output: Id([0xff; 32]),
            size: 12345,
            time_nanos: 1_700_000_000_123_456_789,
        };
        let s = e.format();
        assert_eq!(s.len(), ACTION_ENTRY_SIZE);
        assert_eq!(ActionEntry::parse(s.as_bytes(), Some(e.action)), Ok(e));
        assert_eq!(
            ActionEntry::parse(s.as_bytes(), Some(Id([0; 32]))),
            Err(ActionParseError::MismatchedId(e.action))
        );
        assert_eq!(
            ActionEntry::parse(&s.as_bytes()[..100], None),
            Err(ActionParseError::WrongSize(100))
        );
        let mut bad = s.clone().into_bytes();
        bad[0] = b'v';
        bad[1] = b'2';
        assert_eq!(
            ActionEntry::parse(&bad, None),
            Err(ActionParseError::BadHeader)
        );
        let neg = s.replace("               12345", "              -12345");
        assert_eq!(
            ActionEntry::parse(neg.as_bytes(), None),
            Err(ActionParseError::BadNumber("size"))
        );
        let upper = s.replacen("ffff", "FFFF", 1);
        assert_eq!(
            ActionEntry::parse(upper.as_bytes(), None),
            Err(ActionParseError::BadId("output"))
        );
    }

    #[test]
    fn locate_follows_go_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let envfile = dir.path().join("env");
        std::fs::write(&envfile, "# comment\nGOCACHE=/from/file\nGOPROXY=off\n").unwrap();
        let f = envfile.to_str().unwrap();

        let l = locate_cache(Some(Path::new("/flag")), &env(&[("GOCACHE", "/env")])).unwrap();
        assert_eq!(
            (l.dir.as_path(), l.source),
            (Path::new("/flag"), CacheSource::Flag)
        );
        let l = locate_cache(None, &env(&[("GOCACHE", "/env"), ("GOENV", f)])).unwrap();
        assert_eq!(l.dir, Path::new("/env"));
        let l = locate_cache(None, &env(&[("GOCACHE", ""), ("GOENV", f)])).unwrap();
        assert_eq!(
            (l.dir.as_path(), l.source),
            (
                Path::new("/from/file"),
                CacheSource::EnvFile(envfile.clone())
            )
        );
        let l = locate_cache(None, &env(&[("GOENV", "off"), ("HOME", "/home/u")])).unwrap();
        assert_eq!(l.dir, Path::new("/home/u/.cache/go-build"));
        let l = locate_cache(
            None,
            &env(&[("XDG_CACHE_HOME", "/xdg"), ("HOME", "/home/u")]),
        )
        .unwrap();
        assert_eq!(l.dir, Path::new("/xdg/go-build"));
        let cfg = dir.path().join("cfg");
        std::fs::create_dir_all(cfg.join("go")).unwrap();
        std::fs::write(cfg.join("go/env"), "GOCACHE=off\n").unwrap();
        let cfg = cfg.to_str().unwrap();
        assert!(matches!(
            locate_cache(None, &env(&[("XDG_CONFIG_HOME", cfg)])),
            Err(LocateError::Off(CacheSource::EnvFile(_)))
        ));
        assert!(matches!(
            locate_cache(None, &env(&[("GOCACHE", "off")])),
            Err(LocateError::Off(CacheSource::Env))
        ));
        assert!(matches!(
            locate_cache(None, &env(&[("GOCACHE", "rel/dir")])),
            Err(LocateError::Relative { .. })
        ));
        assert!(matches!(
            locate_cache(None, &env(&[])),
            Err(LocateError::NoUserCacheDir(_))
        ));
        assert!(matches!(
            locate_cache(None, &env(&[("XDG_CACHE_HOME", "rel")])),
            Err(LocateError::NoUserCacheDir(_))
        ));
    }

    #[test]
    fn top_level_names() {
        assert_eq!(TopLevel::classify(b"ff"), TopLevel::Subdir(255));
        assert_eq!(TopLevel::classify(b"FF"), TopLevel::Other);
        assert_eq!(TopLevel::classify(b"trim.txt"), TopLevel::TrimTxt);
        assert_eq!(TopLevel::classify(b"gocache"), TopLevel::Gocache);
        assert!(TopLevel::classify(b"fuzz").is_go_owned());
    }
}
