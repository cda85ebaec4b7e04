//! What every subcommand shares: global flags, finding the cache and the
//! index, the clock, progress bars, and turning errors into exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

/// The help headings options are grouped under: what to keep, where, and
/// how to report (see `cli::command`, which puts them in this order).
pub mod heading {
    /// What to keep: the limits.
    pub const LIMITS: &str = "Limits";
    /// Where: the local cache and its index.
    pub const CACHE: &str = "Cache";
    /// Where: a remote tier.
    pub const REMOTE: &str = "Remote tier";
    /// How to report.
    pub const OUTPUT: &str = "Output";
}

/// Flags every subcommand takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// The Go build cache directory [default: as `go env GOCACHE`] [env:
    /// GOCACHE]
    ///
    /// Found as go finds it: this flag, else $GOCACHE, else GOCACHE in the
    /// go env file, else ~/.cache/go-build.
    #[arg(long, global = true, value_name = "DIR", help_heading = heading::CACHE,
          value_hint = clap::ValueHint::DirPath)]
    pub cache_dir: Option<PathBuf>,
    /// The index database [default: <cache>/gocache/index.sqlite]
    #[arg(long, global = true, value_name = "FILE", env = "GOCACHE_INDEX",
          hide_env_values = true, help_heading = heading::CACHE,
          value_hint = clap::ValueHint::FilePath)]
    pub index: Option<PathBuf>,
    /// Quiet: print only errors and what the command is asked to show
    ///
    /// No progress, warnings or summaries of what was done; only errors,
    /// and what a command is asked to show (a report, a path, --json). For
    /// `gocache go`, only gocache's own messages.
    #[arg(long, short, global = true, help_heading = heading::OUTPUT)]
    pub quiet: bool,
}

/// A value parser for a closed set of names: `parse` reads a value (its
/// errors as they are), `values` lists the names, so that help, man pages
/// and shell completions offer them.
#[derive(Clone)]
pub struct Closed<T> {
    pub parse: fn(&str) -> gocache::Result<T>,
    pub values: fn() -> Vec<clap::builder::PossibleValue>,
}

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for Closed<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        self.parse.parse_ref(cmd, arg, value)
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new((self.values)().into_iter()))
    }
}

/// `--policy` of trim, hook, limits, prog and ci end: lru, gdsf, gd-cost.
pub fn eviction_parser() -> Closed<gocache::limits::Eviction> {
    use gocache::limits::Eviction;
    Closed {
        parse: parse_eviction,
        values: || {
            Eviction::ALL
                .iter()
                .map(|p| {
                    clap::builder::PossibleValue::new(p.as_str()).help(match p {
                        Eviction::Lru => "least recently used first",
                        Eviction::Gdsf => {
                            "GreedyDual-Size-Frequency: the fewest hits per MiB first, aged \
                             (best under gocache prog, which counts hits)"
                        }
                        Eviction::GdCost => "gdsf weighted by measured rebuild seconds",
                    })
                })
                .collect()
        },
    }
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
pub fn now_offset() -> i64 {
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

/// Numbers for people: one form everywhere (see [`gocache::report`]).
pub use gocache::report::{count, human};

/// The width human output is laid out for: an 80-column terminal.
pub const COLUMNS: usize = 80;

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
/// longer than that gets a line of its own). A size stays on one line
/// with its unit (`1.2 GiB`), as [`human`] writes it.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let unit = |w: &str| {
        let w = w.trim_end_matches([')', ',', ';', ':', '.']);
        matches!(w, "B" | "KiB" | "MiB" | "GiB" | "TiB" | "PiB" | "EiB")
    };
    let mut words: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match words.last_mut() {
            Some(last) if unit(word) && last.ends_with(|c: char| c.is_ascii_digit()) => {
                last.push(' ');
                last.push_str(word);
            }
            _ => words.push(word.to_string()),
        }
    }
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in &words {
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

impl Ctx {
    /// Prints a command's `--json` report where and how it ran (see
    /// [`Located`]).
    pub fn print_located<R: serde::Serialize>(
        &self,
        fallback: Option<&str>,
        seconds: f64,
        report: &R,
    ) -> anyhow::Result<()> {
        print_json(&Located {
            cache_dir: &self.cache_dir,
            index: &self.index_path,
            fallback,
            seconds,
            report,
        })
    }
}

/// Writes `value` as pretty JSON to stdout, followed by a newline.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Limit flags, shared by `trim`, `hook`, `limits` and `prog`. Each
/// overrides the environment, the config file and the stored value for
/// this run (or, for `limits`, stores it).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LimitArgs {
    /// The most the cache may take, as `du` counts it: 10GiB, 500MB, 10%, none [env:
    /// GOCACHE_BUDGET]
    ///
    /// In bytes on disk: 10GiB, 10G (binary), 500MB (decimal), 1.5GiB, or
    /// 10% of the filesystem; none for no budget (`gocache limits --budget
    /// none` forgets the stored one). 0B empties the cache (a bare 0 is
    /// refused as a likely typo).
    #[arg(long, help_heading = heading::LIMITS, value_name = "SIZE", value_parser = parse_budget, allow_hyphen_values = true,
          value_hint = clap::ValueHint::Other)]
    pub budget: Option<gocache::limits::SizeLimit>,
    /// The most cached executables (`go run`, `go tool`) may take [env:
    /// GOCACHE_EXE_QUOTA]
    ///
    /// A size as for --budget, or none.
    #[arg(long, help_heading = heading::LIMITS, value_name = "SIZE", value_parser = parse_exe_quota, allow_hyphen_values = true,
          value_hint = clap::ValueHint::Other)]
    pub exe_quota: Option<gocache::limits::SizeLimit>,
    /// Remove build entries unused this long [default: 5d, as Go] [env: GOCACHE_BUILD_MAX_AGE]
    ///
    /// 90m, 36h, 5d, 1w, or off.
    #[arg(long, help_heading = heading::LIMITS, value_name = "AGE", value_parser = parse_age, allow_hyphen_values = true,
          value_hint = clap::ValueHint::Other)]
    pub build_max_age: Option<gocache::limits::AgeSpec>,
    /// Remove executables unused this long [default: 2d; Go keeps them 5d] [env:
    /// GOCACHE_EXE_MAX_AGE]
    ///
    /// 90m, 36h, 2d, 1w, or off.
    #[arg(long, help_heading = heading::LIMITS, value_name = "AGE", value_parser = parse_age, allow_hyphen_values = true,
          value_hint = clap::ValueHint::Other)]
    pub exe_max_age: Option<gocache::limits::AgeSpec>,
    /// Never remove what a go command used this recently [default: 1h, the least] [env:
    /// GOCACHE_GRACE]
    ///
    /// How long a go command running beside a trim keeps every path it was
    /// handed: 90m, 2h; a shorter value takes effect as 1h. Go's 1h mtime
    /// lag is added to the window.
    #[arg(long, help_heading = heading::LIMITS, value_name = "DURATION", value_parser = parse_grace, allow_hyphen_values = true,
          value_hint = clap::ValueHint::Other)]
    pub grace: Option<i64>,
    /// Keep this much free on the cache's filesystem: 5GiB, 10%, or none [env: GOCACHE_MIN_FREE]
    ///
    /// Trims further, least recently used first, while the filesystem has
    /// less free.
    #[arg(long, help_heading = heading::LIMITS, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true,
          value_hint = clap::ValueHint::Other)]
    pub min_free: Option<gocache::limits::SizeLimit>,
    /// The order the size limits evict in [default: lru] [env: GOCACHE_POLICY]
    ///
    /// The budget, the exe quota and the free-space floor choose what goes
    /// in this order; see the README, "Eviction policies".
    #[arg(long, help_heading = heading::LIMITS, value_name = "POLICY", value_parser = eviction_parser())]
    pub policy: Option<gocache::limits::Eviction>,
}

/// The limits given outside the index: `flags` (a command's), the
/// environment and the config file, every value checked. Commands read
/// them before they open or create anything, so that a bad value is
/// refused (exit 2) with nothing written.
pub fn given_limits(
    flags: &gocache::limits::LimitSpecs,
) -> anyhow::Result<gocache::limits::Layers> {
    Ok(gocache::enforce::read_given(flags, &|k| {
        std::env::var_os(k)
    })?)
}

impl LimitArgs {
    /// These flags over the environment and the config file (see
    /// [`given_limits`]).
    pub fn given(&self) -> anyhow::Result<gocache::limits::Layers> {
        given_limits(&self.specs())
    }

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

// The value parsers return the library's error: clap shows its message
// after "invalid value 'X' for '--FLAG'" and exits 2.

fn parse_size(s: &str) -> gocache::Result<gocache::limits::SizeLimit> {
    gocache::limits::SizeLimit::parse(s)
}

pub fn parse_eviction(s: &str) -> gocache::Result<gocache::limits::Eviction> {
    gocache::limits::Eviction::parse(s)
}

fn parse_age(s: &str) -> gocache::Result<gocache::limits::AgeSpec> {
    gocache::limits::AgeSpec::parse(s)
}

// Values may start with '-' (clap then hands them here instead of taking
// `-5G` for a flag), so that a negative size or duration is refused with
// its reason.

pub fn parse_budget(s: &str) -> gocache::Result<gocache::limits::SizeLimit> {
    gocache::limits::SizeLimit::parse_cap(s, "every entry of the cache")
}

pub fn parse_exe_quota(s: &str) -> gocache::Result<gocache::limits::SizeLimit> {
    gocache::limits::SizeLimit::parse_cap(s, "every cached executable")
}

fn parse_grace(s: &str) -> gocache::Result<i64> {
    gocache::limits::parse_grace(s)
}

/// Whether a command recording as `source` records trace events, and how
/// many the index keeps (`GOCACHE_TRACE`; see `gocache::trace`). A value
/// it cannot read is a warning, and the default: for the wrapper's hook,
/// which must never fail a build (commands run on their own refuse it:
/// [`tracing_checked`]).
pub fn tracing(
    source: gocache::trace::TraceSource,
    progress: &Progress,
) -> Option<gocache::trace::Tracing> {
    use gocache::report::Reporter;
    gocache::trace::Tracing::from_env(source).unwrap_or_else(|why| {
        progress.warn(&format!(
            "{why}; recording with the default bound ({} events)",
            gocache::trace::DEFAULT_KEEP
        ));
        Some(gocache::trace::Tracing {
            source,
            keep: gocache::trace::DEFAULT_KEEP,
        })
    })
}

/// [`tracing`] for a command run on its own (`gocache hook`, `ci end`):
/// a value it cannot read is refused (exit 2), before anything is opened,
/// as a bad GOCACHE_BUDGET is.
pub fn tracing_checked(
    source: gocache::trace::TraceSource,
) -> anyhow::Result<Option<gocache::trace::Tracing>> {
    use gocache::trace::{ENV, Tracing};
    let value = std::env::var_os(ENV);
    let text = match &value {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok_or_else(|| gocache::Error::Invalid(format!("{ENV} is not valid UTF-8")))?,
        ),
    };
    Tracing::parse(source, text).map_err(|_| {
        gocache::Error::Invalid(format!(
            "{ENV}={:?}: not off, on or a number of events to keep (such as 100000); \
             unset it for the default ({} events)",
            text.unwrap_or_default(),
            count(gocache::trace::DEFAULT_KEEP)
        ))
        .into()
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
        assert_eq!(
            wrap("2 entries (2.90 MiB) unused", 17),
            ["2 entries", "(2.90 MiB) unused"]
        );
        assert_eq!(ago(10_000, 10_000), "just now");
        assert_eq!(ago(10_000, 10_000 - 125), "2m ago");
        assert_eq!(ago(200_000, 200_000 - 47 * 3600), "47h ago");
        assert_eq!(ago(1_000_000, 1_000_000 - 3 * 86_400), "3d ago");
        assert_eq!(ago(0, 5), "in the future");
    }
}
