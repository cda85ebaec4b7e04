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
    /// Quiet: no progress, warnings or summaries of what was done; only
    /// errors, and what a command is asked to show (a report, a path,
    /// --json). For `gocache go`, only gocache's own messages.
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

/// The exit status of a trim (local or remote) that ran but left a limit
/// unmet (see `cli/mod.rs`).
pub const LIMITS_NOT_MET: u8 = 3;

/// 2 for bad input (the user can fix the command line or environment), 1
/// for everything else. (3, limits not met, is a trim's outcome, not an
/// error: `trim` returns it.)
pub fn exit_code(err: &anyhow::Error) -> u8 {
    use gocache::Error;
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return match e {
                Error::Locate(_)
                | Error::CacheMissing(_)
                | Error::CacheNotADirectory(_)
                | Error::NotAGoCache { .. }
                | Error::IndexDir { .. }
                | Error::Invalid(_) => 2,
                _ => 1,
            };
        }
        if cause
            .downcast_ref::<gocache::layout::LocateError>()
            .is_some()
            || cause
                .downcast_ref::<gocache::remote::s3::OpenError>()
                .is_some()
        {
            return 2;
        }
    }
    1
}

/// The current time, read once per command: the system clock, shifted
/// by `GOCACHE_TEST_NOW_OFFSET` seconds where that is set (a knob for
/// tests and `scripts/validate-sim.sh`, as cargo's
/// `__CARGO_TEST_LAST_USE_NOW`: it moves what gocache takes for now, so
/// that a replay of go commands can put hours between them; the times go
/// sees and sets do not move).
pub fn now() -> gocache::UnixTime {
    chrono::Utc::now().timestamp() + now_offset()
}

/// `GOCACHE_TEST_NOW_OFFSET`, in seconds (0 when unset or not a whole
/// number).
fn now_offset() -> i64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var("GOCACHE_TEST_NOW_OFFSET")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    })
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

/// Where the cache is, as `go env GOCACHE` finds it (`--cache-dir` first),
/// without looking at the directory: it may not exist yet.
pub fn locate_cache(global: &Global) -> anyhow::Result<gocache::layout::Located> {
    // A relative --cache-dir is taken from the current directory; the
    // absolute-path rule is Go's, for GOCACHE.
    let flag =
        match &global.cache_dir {
            Some(d) => Some(std::path::absolute(d).map_err(|e| {
                gocache::Error::Invalid(format!("--cache-dir {}: {e}", d.display()))
            })?),
            None => None,
        };
    Ok(gocache::layout::locate_cache(flag.as_deref(), &|k| {
        std::env::var_os(k)
    })?)
}

impl Ctx {
    /// Finds the cache as `go env GOCACHE` does and checks that it is a
    /// readable directory that looks like a Go build cache, and that an
    /// index given with --index has a directory to go in (nothing is
    /// created for it).
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
        let located = locate_cache(global)?;
        let cache_dir = located.dir;
        let created = create && std::fs::symlink_metadata(&cache_dir).is_err();
        if created {
            std::fs::create_dir_all(&cache_dir).map_err(|e| {
                anyhow::Error::new(gocache::Error::io("creating", &cache_dir, e))
                    .context(format!("cache directory from {}", located.source))
            })?;
        }
        gocache::cachedir::check_cache(&cache_dir).map_err(|e| {
            anyhow::Error::new(e).context(format!("cache directory from {}", located.source))
        })?;
        let index_path = gocache::cachedir::index_path(&cache_dir, global.index.as_deref())?;
        Ok(Ctx {
            cache_dir,
            source: located.source,
            index_path,
            now: now(),
            quiet: global.quiet,
            created,
        })
    }

    /// How this command wants its index: the file, with a short wait for
    /// another process holding it, and the library's recovery when the
    /// file is to blame (see `gocache::index::Access`).
    pub fn access(&self) -> gocache::index::Access {
        gocache::index::Access::new(&self.index_path)
    }
}

/// Progress on stderr when it is a terminal, and warnings; `--quiet`
/// silences both (errors are still printed).
///
/// A phase with a known amount of work draws a bar as wide as the terminal
/// is (read again at every draw, so a resized window is followed); one
/// without draws a spinner. Either is redrawn ten times a second whether
/// or not work advanced, so a slow step never looks frozen.
pub struct Progress {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
    bars: bool,
    warnings: bool,
    verbose: bool,
}

/// How often a bar or spinner is redrawn, work done or not.
const TICK: std::time::Duration = std::time::Duration::from_millis(100);

impl Progress {
    /// Progress for a command run with `quiet`; `json` output gets no bar
    /// (stdout may be the same terminal), warnings still.
    pub fn new(quiet: bool, json: bool) -> Progress {
        use std::io::IsTerminal;
        Progress {
            bar: std::sync::Mutex::new(None),
            bars: !quiet && !json && std::io::stderr().is_terminal(),
            warnings: !quiet,
            verbose: false,
        }
    }

    /// Also prints each detail a summary counts (`--verbose`).
    pub fn verbose(mut self, on: bool) -> Progress {
        self.verbose = on;
        self
    }

    fn style(total: u64) -> indicatif::ProgressStyle {
        let template = if total > 0 {
            "{spinner} {msg:<6} [{wide_bar}] {pos}/{len} {elapsed}"
        } else {
            "{spinner} {msg}... {elapsed}"
        };
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ")
            .tick_chars("-\\|/ ")
    }
}

impl gocache::report::Reporter for Progress {
    fn start(&self, phase: &str, total: u64) {
        if !self.bars {
            return;
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::stderr(),
        );
        bar.set_style(Progress::style(total));
        bar.set_message(phase.to_string());
        bar.enable_steady_tick(TICK);
        let mut slot = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = slot.replace(bar) {
            old.finish_and_clear();
        }
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
        if !self.warnings {
            return;
        }
        let guard = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        match &*guard {
            Some(bar) => bar.suspend(|| eprintln!("gocache: warning: {message}")),
            None => eprintln!("gocache: warning: {message}"),
        }
    }

    fn detail(&self, message: &str) {
        if !self.verbose {
            return;
        }
        let guard = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        match &*guard {
            Some(bar) => bar.suspend(|| eprintln!("gocache: {message}")),
            None => eprintln!("gocache: {message}"),
        }
    }
}

/// Bytes in binary units ("1.5 GiB").
pub fn human(bytes: u64) -> String {
    humansize::format_size(bytes, humansize::BINARY)
}

/// The width human output is laid out for: an 80-column terminal.
pub const COLUMNS: usize = 80;

/// A count with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An entry's path, `ab/<64 hex>-d`, shortened for people as git
/// shortens hashes: `ab/ab12cd34…-d` (`--json` has the whole name).
pub fn short_entry(rel: &str) -> String {
    match rel.split_once('/') {
        Some((sub, name)) if name.len() == gocache::layout::NAME_LEN && name.is_ascii() => {
            format!("{sub}/{}…{}", &name[..8], &name[name.len() - 2..])
        }
        _ => rel.to_string(),
    }
}

/// `s` in at most `width` columns: its end kept, `…` in front (the end of
/// an import path or a directory says most).
pub fn fit_tail(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    let keep = width.saturating_sub(1);
    let tail: String = s.chars().skip(n - keep).collect();
    format!("…{tail}")
}

/// `text` broken at spaces into lines of at most `width` columns (a word
/// longer than that gets a line of its own).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let need = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if !line.is_empty() && need > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// `path` with the home directory written `~`.
pub fn tilde(path: &str) -> String {
    match std::env::var("HOME") {
        Ok(home) if home.len() > 1 && path.starts_with(&home) => match &path[home.len()..] {
            "" => "~".to_string(),
            rest if rest.starts_with('/') => format!("~{rest}"),
            _ => path.to_string(),
        },
        _ => path.to_string(),
    }
}

/// How long before `now` `t` was: `just now`, `42m ago`, `5h ago`, `3d ago`.
pub fn ago(now: gocache::UnixTime, t: gocache::UnixTime) -> String {
    let d = now.saturating_sub(t);
    match d {
        d if d < 0 => "in the future".to_string(),
        d if d < 60 => "just now".to_string(),
        d if d < 3600 => format!("{}m ago", d / 60),
        d if d < 2 * 86_400 => format!("{}h ago", d / 3600),
        d => format!("{}d ago", d / 86_400),
    }
}

/// A command's `--json` report with where and how it ran (`trim`, `ci
/// end`): the cache, the index, why the index file was not used (if it
/// was not), the seconds it took, then the report's own fields.
#[derive(serde::Serialize)]
pub struct Located<'a, R: serde::Serialize> {
    pub cache_dir: &'a std::path::Path,
    pub index: &'a std::path::Path,
    /// Why the index file was not used, if it was not.
    pub fallback: Option<&'a str>,
    pub seconds: f64,
    #[serde(flatten)]
    pub report: &'a R,
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
    /// The order the budget, exe quota and free-space floor evict in: lru
    /// (least recently used first), gdsf (GreedyDual-Size-Frequency: the
    /// least L + (hits + 1) / MiB first, L a clock that ages what goes
    /// unused; best with gocache prog, which counts hits) or gd-cost (the
    /// same weighted by measured rebuild seconds); see README, "Eviction
    /// policies" [default: lru].
    #[arg(long, value_name = "POLICY", value_parser = parse_eviction)]
    pub policy: Option<gocache::limits::Eviction>,
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
            policy: self.policy,
        }
    }
}

fn parse_size(s: &str) -> Result<gocache::limits::SizeSpec, String> {
    gocache::limits::SizeSpec::parse(s).map_err(|e| e.to_string())
}

pub fn parse_eviction(s: &str) -> Result<gocache::limits::Eviction, String> {
    gocache::limits::Eviction::parse(s).map_err(|e| e.to_string())
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

/// Whether a command recording as `source` records trace events, and how
/// many the index keeps (`GOCACHE_TRACE`; see `gocache::trace`). A value
/// it cannot read is a warning, and the default.
pub fn tracing(
    source: gocache::trace::TraceSource,
    progress: &Progress,
) -> Option<gocache::trace::Tracing> {
    use gocache::report::Reporter;
    gocache::trace::Tracing::from_env(source).unwrap_or_else(|why| {
        progress.warn(&why);
        Some(gocache::trace::Tracing {
            source,
            keep: gocache::trace::DEFAULT_KEEP,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_and_names_are_laid_out_for_people() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        let name = format!("ab/{}-d", "ab".repeat(32));
        assert_eq!(short_entry(&name), "ab/abababab…-d");
        assert_eq!(short_entry("README"), "README");
        assert_eq!(fit_tail("example.com/hello", 20), "example.com/hello");
        assert_eq!(fit_tail("github.com/someone/tool", 12), "…omeone/tool");
        assert_eq!(fit_tail("github.com/someone/tool", 12).chars().count(), 12);
        assert_eq!(
            wrap(
                "the remaining entries were used within the grace period",
                20
            ),
            [
                "the remaining",
                "entries were used",
                "within the grace",
                "period"
            ]
        );
        assert_eq!(
            wrap("averyveryverylongword x", 5),
            ["averyveryverylongword", "x"]
        );
        assert_eq!(ago(10_000, 10_000), "just now");
        assert_eq!(ago(10_000, 10_000 - 125), "2m ago");
        assert_eq!(ago(200_000, 200_000 - 47 * 3600), "47h ago");
        assert_eq!(ago(1_000_000, 1_000_000 - 3 * 86_400), "3d ago");
        assert_eq!(ago(0, 5), "in the future");
    }
}
