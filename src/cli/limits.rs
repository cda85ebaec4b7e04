//! `gocache limits`: show or store the limits that trim and the hook use.

use std::io::Write;
use std::process::ExitCode;

use super::common::{Ctx, Global, print_json};
use gocache::enforce::resolve_limits;
use gocache::limits::{Limit, LimitSpecs, Limits, Source, format_duration};

/// Show or store the limits `trim` and `hook` enforce.
///
/// With no flags, shows the limits in force, resolved on this cache's
/// filesystem, and where each comes from. With flags, stores them in the
/// index (merged over what is stored), so cron, the hook and people share
/// one set. A size limit given as none (or off, unlimited: `--budget
/// none`) is forgotten; --reset forgets them all.
///
/// Each limit comes from the first of: a command's flag (`trim`, `hook`,
/// `prog`, `ci end`: for that run only), the environment (GOCACHE_BUDGET,
/// GOCACHE_EXE_QUOTA, GOCACHE_BUILD_MAX_AGE, GOCACHE_EXE_MAX_AGE,
/// GOCACHE_GRACE, GOCACHE_MIN_FREE, GOCACHE_POLICY), the config file
/// ($GOCACHE_CONFIG, else $XDG_CONFIG_HOME/gocache/config: `key = value`
/// lines such as `budget = 10GiB`), the limits stored here, the defaults.
/// Shown even when the index cannot be written (a read-only cache).
///
/// With no limits set, the defaults keep what Go's own trim keeps, less
/// older executables: build entries unused for 5 days (as Go does) and
/// executables unused for 2 days (Go keeps them 5) go; no budget, no exe
/// quota, no free-space floor; a grace period of 1h; the lru policy.
///
/// The eviction policy (--policy lru|gdsf|gd-cost) is stored and resolved the
/// same way: the order in which the budget, the exe quota and the
/// free-space floor choose what goes (see `gocache help trim`).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    limits: super::common::LimitArgs,
    /// Forget every stored limit (the defaults apply again).
    #[arg(long, help_heading = super::common::heading::LIMITS)]
    reset: bool,
    /// Print JSON: the stored and effective limits, and where each came from.
    #[arg(long, help_heading = super::common::heading::OUTPUT)]
    json: bool,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::locate(global)?;
    let flags = args.limits.specs();
    // The environment and the config file, checked before the index is
    // opened; the flags are stored, not layered over the rest here.
    let given = super::common::given_limits(&Default::default())?;
    let storing = args.reset || !flags.is_empty();
    // The limits live in the index file: a damaged one is rebuilt (the
    // limits it still yields are kept). Storing needs the file itself;
    // showing needs only to read it, so an in-memory copy seeded from it
    // (a read-only or locked index) will do.
    let access = gocache::index::Access {
        in_memory_ok: !storing,
        wait: if storing {
            gocache::index::BUSY_TIMEOUT
        } else {
            gocache::index::LOCK_WAIT
        },
        ..ctx.access()
    };
    let done = access
        .run(ctx.now, |index, _| {
            if args.reset {
                index.store_limits(&Default::default())?;
            }
            if !flags.is_empty() {
                // A size limit of none forgets the stored one.
                let merged = index.stored_limits()?.merge(&flags).to_store();
                index.store_limits(&merged)?;
            }
            index.stored_limits()
        })
        .map_err(|e| {
            anyhow::Error::new(e).context(
                "limits are stored in the index, which cannot be opened; pass --index FILE, \
                 or set them in the environment or the config file (see `gocache help limits`)",
            )
        })?;
    if let Some(why) = &done.fallback
        && !ctx.quiet
        && !args.json
    {
        eprintln!("gocache: warning: {why}; showing the limits it stores");
    }
    let stored = done.value;
    let resolved = resolve_limits(&ctx.cache_dir, stored.clone(), &given);
    let sources: serde_json::Map<String, serde_json::Value> = resolved
        .sourced
        .sources
        .iter()
        .map(|(l, s)| (l.key().to_string(), s.kind().into()))
        .collect();
    if args.json {
        print_json(&serde_json::json!({
            "stored": stored,
            "effective": resolved.limits,
            "sources": sources,
            "config_file": resolved.config_file,
        }))?;
    } else if !(ctx.quiet && storing) {
        // Shown unless storing quietly: showing is what the command is for.
        let mut o = std::io::stdout().lock();
        writeln!(o, "Limits for {}:", ctx.cache_dir.display())?;
        for line in table(&resolved.limits, &resolved.sourced, &stored) {
            writeln!(o, "{line}")?;
        }
        writeln!(o, "Go's 1h mtime lag is added to the grace period.")?;
        if resolved
            .sourced
            .sources
            .iter()
            .all(|(_, s)| *s == Source::Default)
        {
            writeln!(o, "None set: these are the defaults. Set some with e.g.")?;
            writeln!(o, "  gocache limits --budget 10GiB --exe-quota 2GiB")?;
            writeln!(
                o,
                "or in the environment (GOCACHE_BUDGET=10GiB) or the config file."
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line a limit: its name, value and source; a stored value something
/// else overrides is said.
fn table(limits: &Limits, sourced: &gocache::limits::Sourced, stored: &LimitSpecs) -> Vec<String> {
    let size = |v: Option<u64>| v.map_or("none".to_string(), super::common::human);
    let age = |v: Option<i64>| v.map_or("off".to_string(), format_duration);
    Limit::ALL
        .iter()
        .map(|&l| {
            let value = match l {
                Limit::Budget => size(limits.budget),
                Limit::ExeQuota => size(limits.exe_quota),
                Limit::BuildMaxAge => age(limits.build_max_age),
                Limit::ExeMaxAge => age(limits.exe_max_age),
                Limit::Grace => format_duration(limits.grace),
                Limit::MinFree => size(limits.min_free),
                Limit::Policy => limits.policy.to_string(),
            };
            let source = sourced.source(l);
            let mut line = format!("{:<16}{:<14}{}", l.label(), value, source.describe(l));
            if stored.has(l) && !matches!(source, Source::Stored) {
                line.push_str(" (over the stored value)");
            }
            if let (Limit::Grace, Some(set)) = (l, sourced.specs.grace)
                && set < gocache::limits::MIN_GRACE
            {
                line.push_str(&format!(
                    " ({} set: the shortest is {})",
                    format_duration(set),
                    format_duration(gocache::limits::MIN_GRACE)
                ));
            }
            line
        })
        .collect()
}
