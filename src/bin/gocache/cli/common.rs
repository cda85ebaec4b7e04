//! What every subcommand shares: global flags, finding the cache and the
//! index, the clock, progress bars, and turning errors into exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

/// Flags every subcommand takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// The Go build cache directory [default: as `go env GOCACHE`].
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The index database [default: <cache>/gocache/index.sqlite].
    #[arg(long, global = true, value_name = "FILE", env = "GOCACHE_INDEX")]
    pub index: Option<PathBuf>,
    /// Print only errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// Maps an error to a message on stderr and an exit code.
pub fn report_error(err: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(err) {
        return ExitCode::SUCCESS;
    }
    let code = exit_code(err);
    eprintln!("gocache: error: {err:#}");
    ExitCode::from(code)
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|e| e.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

/// 2 for bad input (the user can fix the command line or environment), 1
/// for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    use gocache::Error;
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return match e {
                Error::Locate(_)
                | Error::CacheMissing(_)
                | Error::CacheNotADirectory(_)
                | Error::Invalid(_) => 2,
                _ => 1,
            };
        }
        if cause
            .downcast_ref::<gocache::layout::LocateError>()
            .is_some()
        {
            return 2;
        }
    }
    1
}

/// The current time, read once per command.
pub fn now() -> gocache::UnixTime {
    chrono::Utc::now().timestamp()
}

/// The cache and index a command works on.
#[derive(Debug)]
pub struct Ctx {
    /// The cache directory.
    pub cache_dir: PathBuf,
    /// Where the cache setting came from.
    pub source: gocache::layout::CacheSource,
    /// The index file.
    pub index_path: PathBuf,
    /// The clock, read once.
    pub now: gocache::UnixTime,
    /// Print only errors.
    pub quiet: bool,
    /// The cache directory was missing and has just been created.
    created: bool,
}

impl Ctx {
    /// Finds the cache as `go env GOCACHE` does and checks it is a readable
    /// directory.
    pub fn locate(global: &Global) -> anyhow::Result<Ctx> {
        Ctx::locate_with(global, false)
    }

    /// [`Ctx::locate`], creating the cache directory first when it is
    /// missing (as Go would at its first build): `gocache ci begin` in a
    /// job that restored nothing. Returns whether it was created.
    pub fn locate_creating(global: &Global) -> anyhow::Result<(Ctx, bool)> {
        let ctx = Ctx::locate_with(global, true)?;
        let created = ctx.created;
        Ok((ctx, created))
    }

    fn locate_with(global: &Global, create: bool) -> anyhow::Result<Ctx> {
        // A relative --cache-dir is taken from the current directory; the
        // absolute-path rule is Go's, for GOCACHE.
        let flag = match &global.cache_dir {
            Some(d) => Some(std::path::absolute(d).map_err(|e| {
                gocache::Error::Invalid(format!("--cache-dir {}: {e}", d.display()))
            })?),
            None => None,
        };
        let located = gocache::layout::locate_cache(flag.as_deref(), &|k| std::env::var_os(k))?;
        let cache_dir = located.dir;
        let created = create && std::fs::symlink_metadata(&cache_dir).is_err();
        if created {
            std::fs::create_dir_all(&cache_dir).map_err(|e| {
                anyhow::Error::new(gocache::Error::io("creating", &cache_dir, e))
                    .context(format!("cache directory from {}", located.source))
            })?;
        }
        gocache::cachedir::check_cache_dir(&cache_dir).map_err(|e| {
            anyhow::Error::new(e).context(format!("cache directory from {}", located.source))
        })?;
        let index_path = global
            .index
            .clone()
            .unwrap_or_else(|| gocache::index::default_path(&cache_dir));
        Ok(Ctx {
            cache_dir,
            source: located.source,
            index_path,
            now: now(),
            quiet: global.quiet,
            created,
        })
    }

    /// Opens the index for writing, or, when the index itself is to blame
    /// (read-only, corrupt, too new, locked), the fallback the library
    /// chooses, with why, to say once.
    pub fn open_index_or_fallback(
        &self,
    ) -> anyhow::Result<(gocache::index::Index, Option<String>)> {
        let (ix, fallback) = gocache::index::Index::open_or_fallback(&self.index_path, self.now)?;
        Ok((ix, fallback.map(|f| f.to_string())))
    }
}

/// A progress bar on stderr when it is a terminal (and not --quiet);
/// warnings always go to stderr.
pub struct Progress {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
    enabled: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        use std::io::IsTerminal;
        Progress {
            bar: std::sync::Mutex::new(None),
            enabled: !quiet && std::io::stderr().is_terminal(),
        }
    }
}

impl gocache::report::Reporter for Progress {
    fn start(&self, phase: &str, total: u64) {
        if !self.enabled {
            return;
        }
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg:>6} [{bar:40}] {pos}/{len} {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(phase.to_string());
        *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = &*self.bar.lock().unwrap_or_else(|p| p.into_inner()) {
            bar.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish_and_clear();
        }
    }

    fn warn(&self, message: &str) {
        let guard = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        match &*guard {
            Some(bar) => bar.suspend(|| eprintln!("gocache: warning: {message}")),
            None => eprintln!("gocache: warning: {message}"),
        }
    }
}

/// Bytes in binary units ("1.5 GiB").
pub fn human(bytes: u64) -> String {
    humansize::format_size(bytes, humansize::BINARY)
}

/// Writes `value` as pretty JSON to stdout, followed by a newline.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Limit flags, shared by `trim`, `hook` and `limits`. Each overrides the
/// stored value for this run (or, for `limits`, stores it).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LimitArgs {
    /// Total budget for the cache, in bytes on disk as `du` counts them:
    /// 10GiB, 10G (binary), 500MB (decimal), 1.5GiB, or 10% of the filesystem.
    /// 0B empties the cache (a bare 0 is refused as a likely typo).
    #[arg(long, value_name = "SIZE", value_parser = parse_budget, allow_hyphen_values = true)]
    pub budget: Option<gocache::limits::SizeSpec>,
    /// Quota for cached executables (`go run`, `go tool`), same units.
    #[arg(long, value_name = "SIZE", value_parser = parse_exe_quota, allow_hyphen_values = true)]
    pub exe_quota: Option<gocache::limits::SizeSpec>,
    /// Remove build entries unused for this long: 90m, 36h, 5d, 1w, or off
    /// [default: 5d, as Go].
    #[arg(long, value_name = "AGE", value_parser = parse_age, allow_hyphen_values = true)]
    pub build_max_age: Option<gocache::limits::AgeSpec>,
    /// Remove executables unused for this long [default: 2d].
    #[arg(long, value_name = "AGE", value_parser = parse_age, allow_hyphen_values = true)]
    pub exe_max_age: Option<gocache::limits::AgeSpec>,
    /// Never remove anything used this recently; Go's 1h mtime lag is
    /// always added [default: 1h].
    #[arg(long, value_name = "DURATION", value_parser = parse_grace, allow_hyphen_values = true)]
    pub grace: Option<i64>,
    /// Keep at least this much free on the cache's filesystem, trimming
    /// further when needed: 5GiB or 10%.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true)]
    pub min_free: Option<gocache::limits::SizeSpec>,
}

impl LimitArgs {
    pub fn specs(&self) -> gocache::limits::LimitSpecs {
        gocache::limits::LimitSpecs {
            budget: self.budget,
            exe_quota: self.exe_quota,
            build_max_age: self.build_max_age,
            exe_max_age: self.exe_max_age,
            grace: self.grace,
            min_free: self.min_free,
        }
    }
}

fn parse_size(s: &str) -> Result<gocache::limits::SizeSpec, String> {
    gocache::limits::SizeSpec::parse(s).map_err(|e| e.to_string())
}

fn parse_age(s: &str) -> Result<gocache::limits::AgeSpec, String> {
    gocache::limits::AgeSpec::parse(s).map_err(|e| e.to_string())
}

// Values may start with '-' (clap then hands them here instead of taking
// `-5G` for a flag), so that a negative size or duration is refused with
// its reason.

pub fn parse_budget(s: &str) -> Result<gocache::limits::SizeSpec, String> {
    gocache::limits::parse_cap(s, "every entry of the cache").map_err(|e| e.to_string())
}

pub fn parse_exe_quota(s: &str) -> Result<gocache::limits::SizeSpec, String> {
    gocache::limits::parse_cap(s, "every cached executable").map_err(|e| e.to_string())
}

fn parse_grace(s: &str) -> Result<i64, String> {
    gocache::limits::parse_grace(s).map_err(|e| e.to_string())
}
