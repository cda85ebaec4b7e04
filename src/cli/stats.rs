//! `gocache stats`: what the cache holds, against its limits.

use std::io::Write;
use std::process::ExitCode;

use super::common::{
    COLUMNS, Ctx, Global, Progress, ago, count, fit_tail, human, print_json, short_entry, tilde,
    wrap,
};
use gocache::Kind;
use gocache::index::{Index, LastTrim, ModuleTotals};
use gocache::limits::Limits;
use gocache::model::Bytes;
use gocache::policy::{Plan, Rule};
use gocache::report::Reporter;
use gocache::scan::{ScanOptions, scan};
use gocache::stats::{ExeStats, Stats, compute};

/// Report what the cache holds, against its limits.
///
/// First the cache against its limits, as `ccache -s` does: its size on
/// disk against the budget, the executables against their quota, free
/// space against its floor, the last trim, and whether the limits are met
/// now (what `gocache trim` would remove, and for which limit). Then per
/// tier (exe: cached executables; build: everything else) the count, apparent and allocated
/// bytes and share; entries by last use; which Go modules (projects) hold
/// the bytes, as `gocache go` and `gocache prog` recorded them; the largest
/// and most used executables; garbage (action entries whose output is
/// gone, outputs no action names, corrupt action entries); and what else
/// is in the directory. Syncs the index first (incrementally). When the
/// index cannot be used (damaged: it is rebuilt; held by another process
/// for over 2 s, read-only, on a full disk: left alone) it still answers,
/// from a direct walk of the cache, with a warning.
///
/// With no limits set, the defaults apply: there is no budget, and what a
/// trim would remove is build entries unused for 5 days (as Go does) and
/// executables unused for 2 days (Go keeps them 5).
///
/// --json prints one object; see the README for its fields. Fields are
/// only ever added, never renamed or removed.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Do not sync the index with the disk first.
    #[arg(long)]
    no_sync: bool,
    /// Forget every hit count (and say how many there were), then exit.
    #[arg(long)]
    zero: bool,
    /// Print JSON instead of a table.
    #[arg(long, help_heading = super::common::heading::OUTPUT)]
    json: bool,
    /// Report on a remote tier instead: s3://BUCKET/PREFIX
    ///
    /// The same as `gocache remote stats URL`.
    #[arg(long, value_name = "URL", help_heading = super::common::heading::REMOTE,
          value_hint = clap::ValueHint::Url)]
    remote: Option<String>,
    #[command(flatten)]
    endpoint: super::remote::EndpointArgs,
}

/// The cache against its limits (`against_limits` in JSON).
#[derive(serde::Serialize)]
struct Against {
    /// Allocated bytes the budget counts: every entry and the fixed bytes
    /// beside them (directories, Go's files, the index), as `du` does.
    cache_bytes: u64,
    /// `cache_bytes` over the budget, 0 to 1 (or more); null: no budget.
    budget_share: Option<f64>,
    /// Allocated bytes of the cached executables.
    exe_bytes: u64,
    /// `exe_bytes` over the exe quota; null: no quota.
    exe_quota_share: Option<f64>,
    /// Free bytes on the cache's filesystem, if it could be measured.
    free_bytes: Option<u64>,
    /// Every limit is met now: a trim would remove nothing but garbage
    /// (`unmet` is empty).
    met: bool,
    /// What `gocache trim` would remove now.
    trim_would_remove: Bytes,
    /// Each limit not met now, in the order a trim applies them.
    unmet: Vec<NotMet>,
}

/// A limit the cache does not meet now (`against_limits.unmet[]`).
#[derive(serde::Serialize)]
struct NotMet {
    /// `build_max_age`, `exe_max_age`, `exe_quota`, `budget` or
    /// `free_space`.
    limit: &'static str,
    /// Allocated bytes over it now: for an age, those of the entries
    /// unused for longer; for free space, the bytes missing.
    over_by: u64,
    /// Bytes still over once a trim has run (0: a trim meets it).
    after_trim: u64,
    /// For people: the limit, where it came from, and what a trim does
    /// about it (the report's line, less the name).
    reason: String,
    /// The name for people: `build max age`.
    #[serde(skip)]
    label: &'static str,
}

#[derive(serde::Serialize)]
struct Out<'a> {
    cache_dir: &'a std::path::Path,
    index: &'a std::path::Path,
    /// "read-write"; "rebuilt" when the index was corrupt and was rebuilt;
    /// "in-memory" when the index file could not be used at all.
    index_mode: &'static str,
    /// Why the index file could not be used, if it could not.
    index_problem: Option<&'a str>,
    /// Subdirectories reread to sync the index before reporting.
    synced_subdirs: usize,
    /// The last go commands served by `gocache prog`, newest first.
    prog_sessions: &'a [gocache::model::ProgSession],
    /// The limits in force (as `gocache limits --json`'s `effective`);
    /// null when they could not be read.
    limits: Option<&'a Limits>,
    /// The cache against them.
    against_limits: Option<&'a Against>,
    /// What the last `gocache trim` did, if one ran.
    last_trim: Option<&'a LastTrim>,
    /// Per Go module, the entries it added or last used.
    modules: &'a [ModuleTotals],
    /// The entries no module is recorded for.
    modules_unrecorded: Bytes,
    #[serde(flatten)]
    stats: &'a Stats,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    if let Some(url) = args.remote {
        return super::remote::stats_as_remote(global, url, args.endpoint, args.json);
    }
    let ctx = Ctx::locate(global)?;
    if args.zero {
        return zero(&ctx, args.json);
    }
    // Checked before the index is opened: a bad value is refused (exit 2)
    // with nothing written, as `trim` refuses it.
    let given = super::common::given_limits(&Default::default())?;
    let progress = Progress::new(ctx.quiet, args.json);
    // A recovered index (rebuilt, or an in-memory copy) is synced even
    // with --no-sync: its rows may be few or none.
    let done = ctx.access().run(ctx.now, |index, recovered| {
        let mut synced = 0;
        if !args.no_sync || recovered {
            let opts = ScanOptions::default();
            synced = scan(&ctx.cache_dir, index, &opts, ctx.now, &progress)?
                .rescanned
                .len();
        }
        // Loading a large index takes a while, with nothing to count: spin.
        progress.start("load", 0);
        let loaded = load(&ctx, index, &given, &progress);
        progress.finish();
        Ok((synced, loaded?))
    })?;
    let (synced, loaded) = done.value;
    let index = done.index;
    let problem = done.fallback.as_ref().map(|f| f.to_string());
    if let Some(p) = &problem {
        progress.warn(p);
    }
    let Loaded {
        mut stats,
        limits,
        against,
        modules,
    } = loaded;
    fill_import_paths(&ctx, &mut stats);
    let sessions = index.sessions().recent(10).unwrap_or_default();
    let last_trim = index.last_trim().unwrap_or_default();
    let mut unrecorded = stats.total;
    for m in &modules {
        unrecorded.entries = unrecorded.entries.saturating_sub(m.bytes.entries);
        unrecorded.apparent_bytes = unrecorded
            .apparent_bytes
            .saturating_sub(m.bytes.apparent_bytes);
        unrecorded.allocated_bytes = unrecorded
            .allocated_bytes
            .saturating_sub(m.bytes.allocated_bytes);
    }
    if args.json {
        print_json(&Out {
            cache_dir: &ctx.cache_dir,
            index: &ctx.index_path,
            index_mode: match &done.fallback {
                _ if index.is_in_memory() => "in-memory",
                Some(gocache::index::Fallback::Rebuilt { .. }) => "rebuilt",
                _ => "read-write",
            },
            index_problem: problem.as_deref(),
            synced_subdirs: synced,
            prog_sessions: &sessions,
            limits: limits.as_ref(),
            against_limits: against.as_ref(),
            last_trim: last_trim.as_ref(),
            modules: &modules,
            modules_unrecorded: unrecorded,
            stats: &stats,
        })?;
    } else {
        let report = Report {
            ctx: &ctx,
            stats: &stats,
            sessions: &sessions,
            limits: limits.as_ref(),
            against: against.as_ref(),
            last_trim: last_trim.as_ref(),
            modules: &modules,
            unrecorded,
        };
        report.print(&mut std::io::stdout().lock())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `stats --zero`: forget the hit counts, and say how many.
fn zero(ctx: &Ctx, json: bool) -> anyhow::Result<ExitCode> {
    let mut index = Index::open(&ctx.index_path).map_err(|e| {
        anyhow::Error::new(e).context("hit counts live in the index, which cannot be written")
    })?;
    let (entries, hits) = index.forget_hits()?;
    if json {
        print_json(&serde_json::json!({ "zeroed_entries": entries, "zeroed_hits": hits }))?;
    } else if !ctx.quiet {
        writeln!(
            std::io::stdout(),
            "forgot {} hits of {} entries in {}",
            count(hits),
            count(entries),
            ctx.index_path.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What the report is made of, read from the index.
struct Loaded {
    stats: Stats,
    limits: Option<Limits>,
    against: Option<Against>,
    modules: Vec<ModuleTotals>,
}

fn load(
    ctx: &Ctx,
    index: &Index,
    given: &gocache::limits::Layers,
    progress: &Progress,
) -> gocache::Result<Loaded> {
    let entries = index.entries()?;
    let stats = compute(&entries, &index.others()?, ctx.now);
    let modules = index.module_totals().unwrap_or_default();
    // A report still comes when the stored limits cannot be read: without
    // the part about them, and with why.
    let resolved = match index.stored_limits() {
        Ok(s) => Some(gocache::enforce::resolve_limits(&ctx.cache_dir, s, given)),
        Err(e) => {
            progress.warn(&format!("{e}; the limits are left out"));
            None
        }
    };
    let against = match &resolved {
        Some(r) => Some(against_limits(ctx, index, &entries, &stats, r)?),
        None => None,
    };
    let limits = resolved.map(|r| r.limits);
    Ok(Loaded {
        stats,
        limits,
        against,
        modules,
    })
}

/// The cache against `limits`: sizes, shares, and what a trim would do.
fn against_limits(
    ctx: &Ctx,
    index: &Index,
    entries: &[gocache::Entry],
    stats: &Stats,
    resolved: &gocache::enforce::ResolvedLimits,
) -> gocache::Result<Against> {
    let limits = &resolved.limits;
    // This run's sync may have left a WAL that its close moves back into
    // the index file: measure the directory as it will be left, as trim
    // does, or a trim that just met the budget reads as over it here.
    let _ = index.checkpoint();
    let fixed = gocache::enforce::fixed_bytes(&ctx.cache_dir, index)?;
    let free = fs4::available_space(&ctx.cache_dir).ok();
    let env = gocache::policy::Environment {
        fixed_bytes: fixed,
        free_bytes: limits.min_free.and(free),
    };
    let plan: Plan = gocache::policy::plan(entries, limits, &env, ctx.now);
    let cache_bytes = stats.total.allocated_bytes.saturating_add(fixed);
    let exe_bytes = stats.kinds.exe.allocated_bytes;
    // A limit of 0 (`0B`) has no share to speak of.
    let share = |v: u64, of: Option<u64>| of.filter(|&o| o > 0).map(|o| v as f64 / o as f64);
    let mut would = Bytes::default();
    for v in &plan.victims {
        would.add(v.apparent, v.allocated);
    }
    let unmet = not_met(&plan, &env, resolved);
    Ok(Against {
        cache_bytes,
        budget_share: share(cache_bytes, limits.budget),
        exe_bytes,
        exe_quota_share: share(exe_bytes, limits.exe_quota),
        free_bytes: free,
        met: unmet.is_empty(),
        trim_would_remove: would,
        unmet,
    })
}

/// Each limit `plan` (made now) shows unmet: an age limit some entries
/// are past, a size limit the cache is over, each with where it came from
/// and what a trim does about it.
fn not_met(
    plan: &Plan,
    env: &gocache::policy::Environment,
    resolved: &gocache::enforce::ResolvedLimits,
) -> Vec<NotMet> {
    use gocache::limits::{Limit, Source, format_duration};
    // `5d (the default, as Go)`, `1 GiB (GOCACHE_BUDGET)`.
    let value = |limit: Limit, v: String| {
        let source = match (resolved.sourced.source(limit), limit) {
            (Source::Default, Limit::BuildMaxAge) => "the default, as Go".to_string(),
            (Source::Default, Limit::ExeMaxAge) => format!(
                "the default; Go keeps them {}",
                format_duration(gocache::limits::DEFAULT_BUILD_MAX_AGE)
            ),
            (Source::Default, _) => "the default".to_string(),
            (s, l) => s.describe(l),
        };
        format!("{v} ({source})")
    };
    let mut out = Vec::new();
    let limits = &resolved.limits;
    for (tier, limit, key, max_age) in [
        (
            gocache::Tier::Build,
            Limit::BuildMaxAge,
            "build_max_age",
            limits.build_max_age,
        ),
        (
            gocache::Tier::Exe,
            Limit::ExeMaxAge,
            "exe_max_age",
            limits.exe_max_age,
        ),
    ] {
        let mut past = Bytes::default();
        for v in plan
            .victims
            .iter()
            .filter(|v| v.rule == Rule::Age && v.tier == tier)
        {
            past.add(v.apparent, v.allocated);
        }
        if let (Some(age), true) = (max_age, past.entries > 0) {
            out.push(NotMet {
                limit: key,
                over_by: past.allocated_bytes,
                after_trim: 0,
                reason: format!(
                    "{}: {} entries ({}) unused for longer",
                    value(limit, format_duration(age)),
                    count(past.entries),
                    human(past.allocated_bytes)
                ),
                label: limit.label(),
            });
        }
    }
    for (rule, over) in gocache::policy::shortfalls(&plan.before, env, limits) {
        let (limit, size) = match rule {
            Rule::ExeQuota => (Limit::ExeQuota, limits.exe_quota),
            Rule::Budget => (Limit::Budget, limits.budget),
            _ => (Limit::MinFree, limits.min_free),
        };
        let removes = plan.bytes_for(rule);
        let over_text = if rule == Rule::FreeSpace {
            format!("{} short", human(over))
        } else {
            format!("{} over", human(over))
        };
        let (after_trim, then) = match plan.unmet.iter().find(|u| u.limit == rule) {
            Some(u) => (
                u.over_by,
                format!(
                    "a trim leaves it {} {}: {}",
                    human(u.over_by),
                    if rule == Rule::FreeSpace {
                        "short"
                    } else {
                        "over"
                    },
                    u.reason
                ),
            ),
            None if removes.entries == 0 => (
                0,
                "what a trim removes for the limits above meets it".to_string(),
            ),
            None => (
                0,
                format!(
                    "a trim removes {} entries ({}) for it",
                    count(removes.entries),
                    human(removes.allocated_bytes)
                ),
            ),
        };
        out.push(NotMet {
            limit: rule.as_str(),
            over_by: over,
            after_trim,
            reason: format!(
                "{}: {over_text}; {then}",
                value(limit, size.map_or_else(String::new, human))
            ),
            label: limit.label(),
        });
    }
    out
}

/// Fills in the import paths of the executables listed, from their build
/// information (read through the cache's descriptors, never a link).
fn fill_import_paths(ctx: &Ctx, stats: &mut Stats) {
    let Ok(dir) = gocache::cachedir::CacheDir::open(&ctx.cache_dir) else {
        return;
    };
    let mut known: std::collections::HashMap<String, Option<String>> = Default::default();
    for e in stats
        .largest_exes
        .iter_mut()
        .chain(stats.most_used_exes.iter_mut())
    {
        let path = known.entry(e.entry.clone()).or_insert_with(|| {
            let name = e
                .entry
                .split_once('/')
                .and_then(|(_, n)| gocache::layout::EntryName::parse(n.as_bytes()))?;
            let file = dir.open_exe(&name, &e.program)?;
            gocache::gomod::exe_main_path(&file)
        });
        e.import_path = path.clone();
    }
}

/// The human report, laid out for 80 columns.
struct Report<'a> {
    ctx: &'a Ctx,
    stats: &'a Stats,
    sessions: &'a [gocache::model::ProgSession],
    limits: Option<&'a Limits>,
    against: Option<&'a Against>,
    last_trim: Option<&'a LastTrim>,
    modules: &'a [ModuleTotals],
    unrecorded: Bytes,
}

/// The label column of the summary at the top.
const HEAD: usize = 13;

impl Report<'_> {
    fn print(&self, o: &mut dyn Write) -> std::io::Result<()> {
        let s = self.stats;
        let ctx = self.ctx;
        writeln!(
            o,
            "Go build cache {} ({})",
            tilde(&ctx.cache_dir.display().to_string()),
            ctx.source
        )?;
        writeln!(o)?;
        self.summary(o)?;
        if !s.hits_recorded && s.total.entries > 0 {
            writeln!(
                o,
                "Hint: no hits recorded yet; only `gocache go` and `gocache prog` count them."
            )?;
        }
        writeln!(o)?;
        table_header(o, "By tier:", true)?;
        for t in &s.tiers {
            row(o, t.tier.as_str(), &t.bytes, Some(t.share))?;
        }
        row(o, "total", &s.total, None)?;
        writeln!(o)?;
        table_header(o, "By kind:", false)?;
        for k in [Kind::Action, Kind::Output, Kind::Exe] {
            row(o, k.as_str(), s.kinds.get(k), None)?;
        }
        writeln!(o)?;
        table_header(o, "By last use:", false)?;
        for a in &s.age {
            row(o, a.bucket, &a.bytes, None)?;
        }
        self.modules(o)?;
        self.exes(o)?;
        self.sessions(o)?;
        writeln!(o)?;
        writeln!(
            o,
            "Garbage (removed by `gocache trim` once past the grace period):"
        )?;
        row(o, "dangling actions", &s.garbage.dangling_actions, None)?;
        row(o, "corrupt actions", &s.garbage.corrupt_actions, None)?;
        row(o, "orphan outputs", &s.garbage.orphan_outputs, None)?;
        writeln!(o)?;
        writeln!(o, "Not cache entries (never touched):")?;
        row(o, "Go's own files", &s.other.go, None)?;
        row(o, "gocache's index", &s.other.gocache, None)?;
        row(o, "odd items", &s.other.odd, None)?;
        for item in &s.other.odd_items {
            let line = format!("{}: {}", short_entry(&item.path), item.what);
            writeln!(o, "    {}", fit_tail(&line, COLUMNS - 4))?;
        }
        Ok(())
    }

    /// The cache against its limits, as `ccache -s` opens.
    fn summary(&self, o: &mut dyn Write) -> std::io::Result<()> {
        let line = |o: &mut dyn Write, label: &str, text: String| {
            writeln!(o, "{label:<HEAD$}{}", fit_tail(&text, COLUMNS - HEAD))
        };
        let (Some(l), Some(a)) = (self.limits, self.against) else {
            return line(
                o,
                "Size",
                format!("{} on disk", human(self.stats.total.allocated_bytes)),
            );
        };
        let pct =
            |share: Option<f64>| share.map_or(String::new(), |f| format!(" ({:.0}%)", f * 100.0));
        line(
            o,
            "Size",
            match l.budget {
                Some(b) => format!(
                    "{} of the {} budget{}, as du counts it",
                    human(a.cache_bytes),
                    human(b),
                    pct(a.budget_share)
                ),
                None => format!(
                    "{} on disk (no budget: `gocache limits --budget 10GiB`)",
                    human(a.cache_bytes)
                ),
            },
        )?;
        line(
            o,
            "Executables",
            match l.exe_quota {
                Some(q) => format!(
                    "{} of the {} quota{}",
                    human(a.exe_bytes),
                    human(q),
                    pct(a.exe_quota_share)
                ),
                None => format!("{} (no quota)", human(a.exe_bytes)),
            },
        )?;
        let free = a.free_bytes.map_or("unknown".to_string(), human);
        line(
            o,
            "Free space",
            match l.min_free {
                Some(f) => format!("{free} on the filesystem; floor {}", human(f)),
                None => format!("{free} on the filesystem (no floor)"),
            },
        )?;
        line(
            o,
            "Last trim",
            match self.last_trim {
                Some(t) => format!(
                    "{}: removed {} entries ({}), limits {}",
                    ago(self.ctx.now, t.at),
                    count(t.removed),
                    human(t.removed_allocated),
                    if t.limits_met { "met" } else { "not met" }
                ),
                None => "none recorded".to_string(),
            },
        )?;
        let w = &a.trim_would_remove;
        let status = match (a.met, w.entries) {
            (true, 0) => "met".to_string(),
            (true, n) => format!(
                "met; a trim would remove {} unreachable entries ({})",
                count(n),
                human(w.allocated_bytes)
            ),
            (false, n) => format!(
                "not met: `gocache trim` would remove {} entries ({})",
                count(n),
                human(w.allocated_bytes)
            ),
        };
        line(o, "Limits", status)?;
        for u in &a.unmet {
            let text = format!("{} {}", u.label, u.reason);
            for (i, l) in wrap(&text, COLUMNS - HEAD - 2).into_iter().enumerate() {
                line(o, "", format!("{}{l}", if i == 0 { "" } else { "  " }))?;
            }
        }
        Ok(())
    }

    /// Which modules hold the bytes.
    fn modules(&self, o: &mut dyn Write) -> std::io::Result<()> {
        if self.modules.is_empty() {
            return Ok(());
        }
        const SHOWN: usize = 10;
        const NAME: usize = 38;
        writeln!(o)?;
        writeln!(
            o,
            "By module (the go command that added or last used them):"
        )?;
        writeln!(
            o,
            "  {:<NAME$} {:>10} {:>11}  last go command",
            "module", "entries", "allocated"
        )?;
        for m in self.modules.iter().take(SHOWN) {
            let name = match &m.path {
                Some(p) => p.clone(),
                None => tilde(&m.root),
            };
            writeln!(
                o,
                "  {:<NAME$} {:>10} {:>11}  {}",
                fit_tail(&name, NAME),
                count(m.bytes.entries),
                human(m.bytes.allocated_bytes),
                ago(self.ctx.now, m.last_seen)
            )?;
        }
        if self.modules.len() > SHOWN {
            let rest = &self.modules[SHOWN..];
            let mut b = Bytes::default();
            rest.iter().for_each(|m| {
                b.entries += m.bytes.entries;
                b.allocated_bytes += m.bytes.allocated_bytes;
            });
            let label = format!("({} more modules)", rest.len());
            writeln!(
                o,
                "  {:<NAME$} {:>10} {:>11}",
                label,
                count(b.entries),
                human(b.allocated_bytes)
            )?;
        }
        writeln!(
            o,
            "  {:<NAME$} {:>10} {:>11}",
            "(none recorded)",
            count(self.unrecorded.entries),
            human(self.unrecorded.allocated_bytes)
        )
    }

    /// The largest and most used executables, once when they are the
    /// same list; "most used" only when hits were recorded.
    fn exes(&self, o: &mut dyn Write) -> std::io::Result<()> {
        let s = self.stats;
        let same = s
            .largest_exes
            .iter()
            .map(|e| &e.entry)
            .eq(s.most_used_exes.iter().map(|e| &e.entry));
        let any_hits = s.most_used_exes.iter().any(|e| e.hits > 0);
        if same && any_hits {
            self.exe_list(
                o,
                "Executables (the largest are the most used)",
                &s.largest_exes,
            )?;
        } else {
            self.exe_list(o, "Largest executables", &s.largest_exes)?;
            if any_hits {
                self.exe_list(o, "Most used executables", &s.most_used_exes)?;
            }
        }
        Ok(())
    }

    fn exe_list(&self, o: &mut dyn Write, title: &str, list: &[ExeStats]) -> std::io::Result<()> {
        if list.is_empty() {
            return Ok(());
        }
        const NAME: usize = 27;
        writeln!(o)?;
        writeln!(o, "{title}:")?;
        writeln!(
            o,
            "  {:<NAME$} {:>10} {:>6}  {:<9} entry",
            "program", "size", "hits", "last use"
        )?;
        for e in list {
            let name = e.import_path.as_deref().unwrap_or(&e.program);
            writeln!(
                o,
                "  {:<NAME$} {:>10} {:>6}  {:<9} {}",
                fit_tail(name, NAME),
                human(e.allocated_bytes),
                count(e.hits),
                ago(self.ctx.now, e.last_use),
                short_entry(&e.entry)
            )?;
        }
        Ok(())
    }

    fn sessions(&self, o: &mut dyn Write) -> std::io::Result<()> {
        if self.sessions.is_empty() {
            return Ok(());
        }
        writeln!(o)?;
        writeln!(o, "Recent go commands served by `gocache prog`:")?;
        writeln!(
            o,
            "  {:<10} {:>9} {:>9} {:>8} {:>9} {:>11} {:>9}",
            "ended", "gets", "hits", "hit rate", "puts", "stored", "remote"
        )?;
        for p in self.sessions {
            let rate = if p.gets == 0 {
                0.0
            } else {
                p.hits as f64 * 100.0 / p.gets as f64
            };
            writeln!(
                o,
                "  {:<10} {:>9} {:>9} {:>7.1}% {:>9} {:>11} {:>9}",
                ago(self.ctx.now, p.ended),
                count(p.gets),
                count(p.hits),
                rate,
                count(p.puts),
                human(p.put_bytes),
                // Local misses the remote tier served (`prog --remote`).
                p.remote.map_or("-".to_owned(), |r| count(r.hits)),
            )?;
        }
        Ok(())
    }
}

/// A table's title and column heads.
fn table_header(o: &mut dyn Write, title: &str, share: bool) -> std::io::Result<()> {
    write!(
        o,
        "{title:<20} {:>10} {:>11} {:>11}",
        "entries", "apparent", "allocated"
    )?;
    if share {
        writeln!(o, " {:>7}", "share")
    } else {
        writeln!(o)
    }
}

/// One row: a label, entries, apparent and allocated bytes, and a share.
fn row(o: &mut dyn Write, label: &str, b: &Bytes, share: Option<f64>) -> std::io::Result<()> {
    write!(
        o,
        "  {label:<18} {:>10} {:>11} {:>11}",
        count(b.entries),
        human(b.apparent_bytes),
        human(b.allocated_bytes)
    )?;
    match share {
        Some(f) => writeln!(o, " {:>6.1}%", f * 100.0),
        None => writeln!(o),
    }
}
