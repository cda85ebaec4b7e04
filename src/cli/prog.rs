//! `gocache prog`: serve the go command as its GOCACHEPROG.

use std::process::ExitCode;

use super::common::{Ctx, Global, LimitArgs};
use gocache::enforce::effective_limits;

/// Serve the go command's cache (GOCACHEPROG="gocache prog").
///
/// Speaks Go's GOCACHEPROG protocol on stdin/stdout, storing entries in the
/// Go build cache directory in Go's own layout, so plain go, `stats` and
/// `trim` keep working on it. Every get and put is counted in the index;
/// the stored limits (`gocache limits`) are enforced in the background as
/// puts arrive. Use it as:
///
///     GOCACHEPROG="gocache prog" go build ./...
///
/// It serves the go command's own cache (GOCACHE, found as go finds it);
/// a --cache-dir naming another is refused: set GOCACHE for go instead.
///
/// With GOCACHEPROG set, `go run` and `go tool` cache no executables at
/// all (Go caches them only in its on-disk cache); the go command still
/// keeps fuzzing data and test expiry in the cache directory.
///
/// A put never fails the go command while its output has a place inside
/// the cache: one that cannot be put in place (a subdirectory that is a
/// symlink is never written through) is handed to go from a temporary file
/// in the cache, removed at the end, and not cached. On a nearly full disk
/// a put first has the limits enforced; an index that cannot be written
/// gives way to an in-memory copy and a walk of the cache, so eviction
/// goes on. Each fault costs one warning.
///
/// With --remote s3://BUCKET/PREFIX, a fleet shares entries through an
/// S3-compatible store: the local cache stays level one, the store is
/// level two. A local miss asks the store, and a verified hit is written
/// into the local cache and served from there; puts upload in the
/// background, zstd-compressed where it pays (a full queue drops, never
/// waits); `close` waits for the uploads up to --remote-drain; each
/// session logs what it used, for `gocache remote trim`. The endpoint,
/// region and credentials come from
/// the AWS variables, as for `gocache remote`. A store that is down,
/// slow, or refuses the credentials costs one warning, and the build goes
/// on from the local cache:
///
///     GOCACHEPROG="gocache prog --remote s3://go-cache/ci" go build ./...
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    limits: LimitArgs,
    /// Threads answering gets and finishing puts; 0: none besides the reader
    ///
    /// Threads answer gets while several requests wait, and finish puts; 0
    /// answers everything on the thread reading requests [default: 0 with
    /// up to two CPUs, else one fewer than the CPUs, at most 8].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Microseconds to poll for the next request before sleeping
    ///
    /// May shorten each get's round trip on machines with idle CPUs; costs
    /// a CPU while it polls.
    #[arg(long, value_name = "US", default_value_t = 0)]
    spin_us: u64,
    /// Write the server's timeline to FILE when it ends
    ///
    /// A line per event (each request read and answered, each write of
    /// responses, each step of starting and closing) in microseconds since
    /// the start.
    #[arg(long, value_name = "FILE", help_heading = super::common::heading::OUTPUT,
          value_hint = clap::ValueHint::FilePath)]
    trace: Option<std::path::PathBuf>,
    /// Share entries through a remote tier: s3://BUCKET or s3://BUCKET/PREFIX
    ///
    /// Level two behind the local cache.
    #[arg(long, value_name = "URL", help_heading = super::common::heading::REMOTE,
          value_hint = clap::ValueHint::Url)]
    remote: Option<String>,
    #[command(flatten)]
    endpoint: super::remote::EndpointArgs,
    /// Read from the remote tier, never write to it
    ///
    /// No uploads, no use logs: for untrusted builds, such as pull requests
    /// from forks.
    #[arg(long, requires = "remote", help_heading = super::common::heading::REMOTE)]
    remote_read_only: bool,
    /// Seconds `close` waits for this build's uploads before it answers
    ///
    /// What is left is abandoned and counted; the last use log gets as long
    /// again, after go has its answer.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, requires = "remote",
          value_parser = parse_drain, help_heading = super::common::heading::REMOTE)]
    remote_drain: f64,
    /// How uploads store outputs: a zstd level from 1 to 19, or off
    ///
    /// Compression is used where it pays: not for outputs under 1 KiB or
    /// data that does not compress. `off` stores every output as it is,
    /// readable by gocache versions before compression (for a fleet
    /// upgrading; see the README). Reads take either form whatever this
    /// says.
    #[arg(long, value_name = "LEVEL|off", default_value_t = Compression(Some(gocache::remote::codec::DEFAULT_LEVEL)), requires = "remote", value_parser = parse_compression,
          help_heading = super::common::heading::REMOTE)]
    remote_compression: Compression,
    /// MiB of outputs to fetch ahead of go from the session manifest; 0: none
    ///
    /// At close, a session writes what it used to the store (a manifest
    /// keyed by the main module of its working directory, GOOS and
    /// GOARCH); the next session with that key that misses one of those
    /// entries (a new or wiped machine) fetches the rest into the local
    /// cache, 16 at a time, while go goes on, so that go's gets find them
    /// there instead of waiting two round trips each. A warm machine
    /// neither reads nor writes the manifest. 0: never.
    #[arg(long, value_name = "MIB", default_value_t = 1024, requires = "remote",
          help_heading = super::common::heading::REMOTE)]
    remote_prefetch: u64,
}

/// `--remote-compression`: a zstd level, or none.
#[derive(Clone, Copy, Debug)]
struct Compression(Option<i32>);

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(level) => write!(f, "{level}"),
            None => f.write_str("off"),
        }
    }
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    if s == "off" {
        return Ok(Compression(None));
    }
    match s.parse::<i32>() {
        Ok(l) if (1..=gocache::remote::codec::MAX_LEVEL).contains(&l) => Ok(Compression(Some(l))),
        _ => Err(format!(
            "{s:?} is not a zstd level from 1 to {} or `off`",
            gocache::remote::codec::MAX_LEVEL
        )),
    }
}

fn parse_drain(s: &str) -> gocache::Result<f64> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=3600.0).contains(&v) => Ok(v),
        _ => Err(gocache::Error::Invalid(format!(
            "{s:?} is not a number of seconds from 0 to 3600"
        ))),
    }
}

/// The remote tier for the server: `None` without --remote, or, with one
/// warning, when the store cannot be configured (the build goes on from
/// the local cache).
fn remote(args: &Args, quiet: bool) -> Option<gocache::prog::Remote> {
    use gocache::remote::ObjectStore;
    use gocache::remote::tier::{RemoteTier, Uploader, UploaderOptions, UseRecorder};
    use std::sync::Arc;
    let url = args.remote.as_deref()?;
    let store = match args.endpoint.open(url) {
        Ok(s) => s,
        Err(e) => {
            if !quiet {
                eprintln!(
                    "gocache prog: warning: --remote {url}: {e:#}; serving the local cache only"
                );
            }
            return None;
        }
    };
    let name = store.describe();
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let now = super::common::now();
    let (recorder, uploader) = if args.remote_read_only {
        (None, None)
    } else {
        let recorder = Arc::new(UseRecorder::new(now));
        // Each job waiting holds an open file: at most 256 of them.
        let opts = UploaderOptions {
            max_jobs: 256,
            compression: args.remote_compression.0,
            ..UploaderOptions::default()
        };
        let clock: gocache::remote::tier::Clock = Arc::new(super::common::now);
        let uploader = Uploader::start(store.clone(), recorder.clone(), opts, clock);
        (Some(recorder), Some(uploader))
    };
    Some(gocache::prog::Remote {
        name,
        tier: RemoteTier::new(store, recorder.clone()),
        uploader,
        recorder,
        drain: std::time::Duration::from_secs_f64(args.remote_drain),
        quiet,
        manifest: manifest(args),
    })
}

/// The session manifest's key and the prefetch's bounds, unless
/// `--remote-prefetch 0`.
fn manifest(
    args: &Args,
) -> Option<(
    gocache::remote::manifest::BuildKey,
    gocache::prog::PrefetchOptions,
)> {
    if args.remote_prefetch == 0 {
        return None;
    }
    // The go command starts us in its own working directory.
    let cwd = std::env::current_dir().ok()?;
    let key = gocache::remote::manifest::BuildKey::of_build(&cwd, |n| std::env::var(n).ok());
    let opts = gocache::prog::PrefetchOptions {
        max_bytes: args.remote_prefetch.saturating_mul(1 << 20),
        ..Default::default()
    };
    Some((key, opts))
}

/// Trace events (`GOCACHE_TRACE`): every get, miss and put, with the
/// rebuild cost of each put (the CPU of the tool go ran for the action
/// between its miss and its put, among the misses a put followed:
/// `trace::RebuildLog`). A bad setting records
/// with the default bound, as the hook does, and says so once, now, before
/// go's own output.
fn tracing_from_env(quiet: bool) -> Option<gocache::trace::Tracing> {
    gocache::trace::Tracing::from_env(gocache::trace::TraceSource::Prog).unwrap_or_else(|e| {
        if !quiet {
            eprintln!(
                "gocache prog: warning: {e}; recording with the default bound ({} events)",
                super::common::count(gocache::trace::DEFAULT_KEEP)
            );
        }
        Some(gocache::trace::Tracing {
            source: gocache::trace::TraceSource::Prog,
            keep: gocache::trace::DEFAULT_KEEP,
        })
    })
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    // First, while this is the only thread (the remote tier starts more).
    gocache::prog::reserve_descriptors();
    // A file size limit (`ulimit -f`) must fail the put that passes it
    // (EFBIG, answered as an error like a full disk), not kill the server
    // with SIGXFSZ and the go command's build with it.
    // SAFETY: setting a disposition; no handler runs.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // Like go itself, set up a cache that is missing or empty (go has done
    // so already when it started us; not when we run on our own).
    let located = super::common::locate_cache(global)?;
    if global.cache_dir.is_some() {
        check_go_uses(&located.dir)?;
    }
    gocache::cachedir::init_like_go(&located.dir).map_err(|e| {
        anyhow::Error::new(e).context(format!("cache directory from {}", located.source))
    })?;
    let ctx = Ctx::locate(global)?;
    let cache_dir = gocache::cachedir::CacheDir::open(&ctx.cache_dir)?;
    // Read now, enforced once the index is open; a bad value is a
    // warning there, never a failed build.
    let given = args.limits.given();
    let quiet = ctx.quiet;
    let tracing = tracing_from_env(quiet);
    let record_events = tracing.is_some();
    let remote = remote(&args, quiet);
    // Runs on the server's bookkeeping thread, after go has its first
    // answer. The build must never fail because of the index: a file that
    // cannot be opened for writing (a full disk) gives way to an in-memory
    // copy, as for trim and the hook, so the limits are still enforced;
    // without any, serve the cache. Either way, say so once.
    let open_index = Box::new(move || {
        let mut warned = false;
        let mut index = match gocache::index::Index::open(&ctx.index_path) {
            Ok(ix) => ix,
            Err(e) => match in_memory(&ctx.index_path, &e) {
                Some(copy) => {
                    if !quiet {
                        let why = gocache::index::Fallback::InMemory {
                            error: e,
                            waited: gocache::index::LOCK_WAIT,
                        };
                        eprintln!("gocache prog: warning: {why}");
                    }
                    warned = true;
                    copy
                }
                None => {
                    if !quiet {
                        eprintln!(
                            "gocache prog: warning: {e}; serving the cache without counting hits"
                        );
                    }
                    return gocache::prog::Bookkeeping::default();
                }
            },
        };
        // Go starts us in its own working directory: what this go command
        // gets and puts is credited to its module (and nothing else: what
        // a scan finds, this session did not necessarily use).
        let cwd = std::env::current_dir().ok();
        index.credit_module(cwd.and_then(|d| gocache::gomod::Module::find(&d)), None);
        index.set_trace(tracing);
        let limits = match given.and_then(|g| Ok(effective_limits(&ctx.cache_dir, &index, &g)?)) {
            Ok(l) => {
                (l.budget.is_some() || l.exe_quota.is_some() || l.min_free.is_some()).then_some(l)
            }
            // The build goes on; the limits wait for a run that can read them.
            Err(e) => {
                if !quiet && !std::mem::replace(&mut warned, true) {
                    eprintln!(
                        "gocache prog: warning: reading the limits: {e:#}; not enforcing them"
                    );
                }
                None
            }
        };
        gocache::prog::Bookkeeping {
            index: Some(index),
            limits,
            warned,
        }
    });
    let cfg = gocache::prog::ServerConfig {
        cache_dir,
        open_index,
        clock: super::common::now,
        clock_offset: super::common::now_offset(),
        workers: args.workers,
        spin: std::time::Duration::from_micros(args.spin_us),
        trace: args.trace,
        record_events,
        remote,
        quiet,
    };
    match gocache::prog::serve(cfg, std::io::stdin().lock(), Stdout) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("gocache prog: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Refuses a `--cache-dir` that is not the go command's own cache (its
/// GOCACHE, found as go finds it, which is how gocache finds it without
/// the flag): go keeps test expiry, fuzz data and what `go clean -cache`
/// removes there, whatever its GOCACHEPROG serves from, so `stats` and
/// `trim` would see one cache and go another. A GOCACHE go cannot use
/// (off, relative) is go's to refuse: nothing to compare.
fn check_go_uses(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(go) = gocache::layout::locate_cache(None, &|k| std::env::var_os(k)) else {
        return Ok(());
    };
    let same = |a: &std::path::Path, b: &std::path::Path| match (a.metadata(), b.metadata()) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    };
    if go.dir == dir || same(&go.dir, dir) {
        return Ok(());
    }
    Err(gocache::Error::Invalid(format!(
        "--cache-dir {} is not the go command's cache, {} (from {}): go keeps test expiry, fuzz \
         data and what `go clean -cache` removes in its own, whatever gocache prog serves; set \
         GOCACHE={} for the go command instead of --cache-dir",
        dir.display(),
        go.dir.display(),
        go.source,
        dir.display()
    ))
    .into())
}

/// An in-memory copy of the index at `path`, seeded from the file, when
/// opening it failed with `e` for a reason the file is to blame for (a full
/// disk, read-only, held by another process) and it is not damaged.
fn in_memory(path: &std::path::Path, e: &gocache::Error) -> Option<gocache::index::Index> {
    if !e.is_index_problem() || e.is_corrupt_index() {
        return None;
    }
    gocache::index::Index::open_in_memory(Some(path), gocache::index::LOCK_WAIT).ok()
}

/// Standard output, written directly: the server writes whole batches of
/// responses. Dropping it closes the pipe to the go command (standard
/// output becomes /dev/null), which then goes on while this process closes
/// its index and exits.
struct Stdout;

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(rustix::io::write(rustix::stdio::stdout(), buf)?)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Stdout {
    fn drop(&mut self) {
        use rustix::fs::{Mode, OFlags};
        if let Ok(null) =
            rustix::fs::open("/dev/null", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
        {
            let _ = rustix::stdio::dup2_stdout(&null);
        }
    }
}
