//! `gocache simulate`: what each eviction policy would keep.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::common::{Global, Progress, human, print_json};
use gocache::limits::SizeSpec;
use gocache::sim::synth_trace::{GenSpec, generate};
use gocache::sim::{FixedBytes, PolicyName, Report, Workload, simulate_in};
use gocache::trace::schema::{self as trace, Trace};

/// Replay traces of go's cache lookups under budgets and eviction policies.
///
/// Reads traces (JSON Lines; the README documents the schema) and replays
/// them through each policy at each budget. For each: the object hit ratio,
/// the byte hit ratio, and the rebuild seconds saved, and lost against an
/// unbounded cache. Percent budgets are of the unbounded footprint (the
/// most an unbounded cache holds over the trace).
///
/// Policies, by the names `gocache trim --policy` takes for the same
/// behaviour: lru, gdsf and gd-cost (what trim ships, in its batch form:
/// planned once over budget, evicting groups, an output with the actions
/// naming it (an action used an hour before the group's newest is a
/// group of its own), to 90% of it; hits as `gocache prog` counts them),
/// gds (gdsf with every hit count at 0: what `--policy gdsf` does under
/// the hook after plain go commands, `ci end` or a cron trim, which count
/// no hits of build entries). For comparison, the textbook forms, one
/// victim at a time the moment the cache is over budget: lru-groups,
/// lru-actions (action entries leave on their own), gdsf-classic and
/// gd-cost-classic (GreedyDual weighted by rebuild seconds); go-age (Go's
/// own 5-day rule; no size limit), belady (offline: the farthest next use),
/// lower (offline: the better of belady and a greedy feasible schedule,
/// by rebuild seconds: the optimum saves at least this much) and bound
/// (the PFOO-L upper bound of Berger et al., SIGMETRICS 2018: no policy
/// beats it; belady can be beaten when sizes vary). The optimum lies
/// between lower and bound: a policy close to lower but far from bound
/// is held back by the bound's looseness, not by its choices.
///
/// Several trace files are merged by time into one workload; to compare
/// workloads, run once per file. --synthetic replays a generated Go-like
/// workload instead. Touches no cache.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Trace files (JSON Lines); `-` reads standard input.
    #[arg(value_name = "TRACE", required_unless_present = "synthetic",
          value_hint = clap::ValueHint::FilePath)]
    traces: Vec<PathBuf>,
    /// A budget to replay; repeat for more [default: 10% 20% 30% 50% 75%]
    ///
    /// 2GiB, 500MB, or 20% of the unbounded footprint.
    #[arg(long = "budget", value_name = "SIZE", value_parser = parse_budget,
          value_hint = clap::ValueHint::Other)]
    budgets: Vec<SizeSpec>,
    /// The cache directory's bytes besides its entries [default: 1028KiB]
    ///
    /// The real trim counts them against a budget. Go's 256 subdirectories
    /// and its README take a block each (4 KiB on ext4), and gocache's
    /// index grows with the entries (in a real cache, `gocache stats`'s
    /// size on disk less its entries' allocated bytes). A budget given as a
    /// size is replayed as that size less these, so that `simulate --budget
    /// 2GiB` keeps what `trim --budget 2GiB` would; a percentage is of the
    /// entries' footprint and left as it is. FIRST..LAST (1MiB..1.5MiB):
    /// the bytes when the trace began and when it ended, grown evenly with
    /// the trace's events in between, as the index grows while it records
    /// them.
    #[arg(long, value_name = "SIZE", value_parser = parse_fixed,
          value_hint = clap::ValueHint::Other)]
    fixed_bytes: Option<FixedBytes>,
    /// Policies to replay, repeated or comma-separated [default: all]
    #[arg(long = "policy", value_name = "POLICY", value_delimiter = ',',
          value_parser = super::common::Closed { parse: parse_policy, values: policy_values })]
    policies: Vec<PolicyName>,
    /// Print JSON instead of a table.
    #[arg(long, help_heading = super::common::heading::OUTPUT)]
    json: bool,
    /// Also draw rebuild seconds saved against budget into this SVG file
    ///
    /// One line per policy.
    #[arg(long, value_name = "FILE", help_heading = super::common::heading::OUTPUT,
          value_hint = clap::ValueHint::FilePath)]
    plot: Option<PathBuf>,
    /// Replay a synthetic Go-like workload (three modules, a developer's
    /// working days) instead of traces.
    #[arg(long, conflicts_with = "traces")]
    synthetic: bool,
    /// The synthetic workload's seed.
    #[arg(long, default_value_t = 1, requires = "synthetic")]
    seed: u64,
    /// The synthetic workload's length, in days.
    #[arg(long, default_value_t = 14, requires = "synthetic", value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// gd-cost decides with the rebuild seconds of this second recording
    ///
    /// A second trace of the same workload (the same go commands in the
    /// same source directory, so the same action IDs). The real gd-cost
    /// orders by what it measured when each entry was built and pays what
    /// the rebuild costs, another measurement of the same work; replayed
    /// with one trace's seconds for both, the model keeps exactly the
    /// entries that measured dear and is charged those same figures, which
    /// flatters it. With this, gd-cost and gd-cost-classic decide with
    /// these seconds and every policy's seconds saved and lost are still
    /// counted with the TRACE files' own.
    #[arg(long, value_name = "TRACE", conflicts_with = "synthetic",
          value_hint = clap::ValueHint::FilePath)]
    decide_costs: Option<PathBuf>,
    /// Also write the synthetic workload as a trace to this file.
    #[arg(long, value_name = "FILE", requires = "synthetic",
          value_hint = clap::ValueHint::FilePath)]
    save_trace: Option<PathBuf>,
}

fn parse_budget(s: &str) -> gocache::Result<SizeSpec> {
    SizeSpec::parse(s)
}

/// `SIZE`, or `FIRST..LAST` for fixed bytes that grow through the trace.
fn parse_fixed(s: &str) -> gocache::Result<FixedBytes> {
    let size = |part: &str| match SizeSpec::parse(part)? {
        SizeSpec::Bytes(b) => Ok(b),
        SizeSpec::Percent(_) => Err(gocache::Error::Invalid(format!(
            "invalid size {s:?}: the fixed bytes are a size, not a percentage"
        ))),
    };
    let Some((first, last)) = s.split_once("..") else {
        return Ok(FixedBytes::constant(size(s)?));
    };
    let (first, last) = (size(first)?, size(last)?);
    if last < first {
        return Err(gocache::Error::Invalid(format!(
            "invalid fixed bytes {s:?}: FIRST..LAST takes the bytes at the trace's start, \
             then at its end (gocache's index grows, it does not shrink); give one size \
             for bytes that stay"
        )));
    }
    Ok(FixedBytes { first, last })
}

/// Go's 256 subdirectories and its README, a 4 KiB block each.
const DEFAULT_FIXED: u64 = 257 * 4096;

fn policy_values() -> Vec<clap::builder::PossibleValue> {
    PolicyName::ALL
        .iter()
        .map(|p| clap::builder::PossibleValue::new(p.as_str()))
        .collect()
}

fn parse_policy(s: &str) -> gocache::Result<PolicyName> {
    PolicyName::parse(s).ok_or_else(|| {
        // The names before simulate took trim's: say what they are now.
        let renamed = match s {
            "trim-lru" => Some("lru"),
            "trim-gdsf" => Some("gdsf"),
            "trim-gds" => Some("gds"),
            "trim-gd-cost" => Some("gd-cost"),
            _ => None,
        };
        if let Some(now) = renamed {
            return gocache::Error::Invalid(format!(
                "unknown policy {s:?}: trim's policies go by trim's names now, {now:?}"
            ));
        }
        let names: Vec<&str> = PolicyName::ALL.iter().map(|p| p.as_str()).collect();
        gocache::Error::Invalid(format!(
            "unknown policy {s:?} (one of: {})",
            names.join(", ")
        ))
    })
}

fn bad(msg: String) -> anyhow::Error {
    gocache::Error::Invalid(msg).into()
}

/// Reads a trace file (`-`: stdin). A file that cannot be opened or is
/// not a trace is bad input (exit 2).
fn read_trace(path: &PathBuf) -> anyhow::Result<Trace> {
    let name = path.display().to_string();
    if name == "-" {
        return Ok(trace::read(std::io::stdin().lock(), "<stdin>")?);
    }
    if path.is_dir() {
        return Err(bad(format!(
            "{name} is a directory, not a trace: give the file `gocache trace export -o FILE` wrote"
        )));
    }
    let f = std::fs::File::open(path).map_err(|e| bad(format!("cannot open trace {name}: {e}")))?;
    Ok(trace::read(std::io::BufReader::new(f), &name)?)
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let (traces, what) = if args.synthetic {
        let spec = GenSpec {
            days: args.days,
            ..GenSpec::fortnight(args.seed)
        };
        let t = generate(&spec);
        if let Some(p) = &args.save_trace {
            let f = std::fs::File::create(p)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
            let mut w = std::io::BufWriter::new(f);
            trace::write(&mut w, &t.headers[0], &t.events)
                .and_then(|()| w.flush())
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
        }
        let days = if args.days == 1 { "day" } else { "days" };
        let what = format!(
            "synthetic workload (seed {}, {} {days})",
            args.seed, args.days
        );
        (vec![t], what)
    } else {
        let traces = args
            .traces
            .iter()
            .map(read_trace)
            .collect::<anyhow::Result<Vec<Trace>>>()?;
        let names: Vec<String> = args
            .traces
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        (traces, names.join(", "))
    };
    let mut w = Workload::from_traces(&traces);
    drop(traces);
    if w.summary.accesses == 0 {
        return Err(bad(format!(
            "{what} holds no lookups (get, or new or use of an action): nothing to replay"
        )));
    }
    if let Some(p) = &args.decide_costs {
        let other = Workload::from_traces(&[read_trace(p)?]);
        if w.decide_with(&other) == 0 {
            return Err(bad(format!(
                "{} measured the cost of no action in {what}: give --decide-costs a second \
                 recording of the same go commands, built in the same source directory",
                p.display()
            )));
        }
    }
    let fixed = args
        .fixed_bytes
        .unwrap_or(FixedBytes::constant(DEFAULT_FIXED));
    let budgets = if args.budgets.is_empty() {
        [10.0, 20.0, 30.0, 50.0, 75.0]
            .map(SizeSpec::Percent)
            .to_vec()
    } else {
        args.budgets.clone()
    };
    let policies = if args.policies.is_empty() {
        PolicyName::ALL.to_vec()
    } else {
        args.policies.clone()
    };
    let progress = Progress::new(global.quiet, args.json);
    let report = simulate_in(&w, &budgets, fixed, &policies, 0, &progress);
    if let Some(p) = &args.plot {
        let svg = gocache::sim::plot::svg(&report, &format!("What a budget keeps: {what}"));
        std::fs::write(p, svg).map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
    }
    if args.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            workload: &'a str,
            /// Taken off each budget given as a size (at the trace's
            /// start).
            fixed_bytes: u64,
            /// The same at the trace's end.
            fixed_bytes_last: u64,
            #[serde(flatten)]
            report: &'a Report,
        }
        print_json(&Out {
            workload: &what,
            fixed_bytes: fixed.first,
            fixed_bytes_last: fixed.last,
            report: &report,
        })?;
    } else if !global.quiet {
        print_table(&report, &what)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn pct(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.1}%", 100.0 * part / whole)
    } else {
        "-".into()
    }
}

fn print_table(r: &Report, what: &str) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    let s = &r.trace;
    let acc = s.accesses as f64;
    writeln!(o, "Workload: {what}")?;
    writeln!(
        o,
        "  {} lookups over {:.1} days; {} hit in the trace, {} of them warm",
        s.accesses,
        s.duration_s / 86_400.0,
        pct(s.trace_hits as f64, acc),
        s.warm_hits
    )?;
    let u = &r.unbounded;
    writeln!(
        o,
        "  Unbounded cache: at most {}, {:.0} rebuild seconds saved,\n    \
         {} object hits, {} byte hits",
        human(u.peak_bytes),
        u.saved_s,
        pct(u.hits as f64, acc),
        pct(u.byte_hits as f64, r.requested_bytes as f64),
    )?;
    let total = (s.measured_actions + s.estimated_actions) as f64;
    write!(
        o,
        "  Rebuild costs: measured for {} of actions",
        pct(s.measured_actions as f64, total)
    )?;
    match (&s.cost_model, s.estimated_actions) {
        (Some(m), n) if n > 0 => {
            writeln!(o, ", estimated for the rest:")?;
            for (kind, l) in [("outputs", m.output), ("executables", m.exe)] {
                let how = if l.samples > 0 {
                    format!("fitted to {} puts", l.samples)
                } else {
                    "default".into()
                };
                writeln!(
                    o,
                    "    {kind}: {:.3} s + {:.3} s/MiB ({how})",
                    l.seconds, l.per_mib
                )?;
            }
        }
        _ => writeln!(o)?,
    }
    if let Some(n) = s.decided_with_other {
        writeln!(
            o,
            "  gd-cost decides with a second recording's seconds for {} of actions",
            pct(n as f64, total)
        )?;
    }
    print_budgets(&mut o, r, acc)?;
    print_footnotes(&mut o, r)
}

/// A table per budget: each policy's hits, seconds saved and lost, and
/// peak; `acc` is the trace's lookups.
fn print_budgets(o: &mut dyn Write, r: &Report, acc: f64) -> std::io::Result<()> {
    for b in &r.budgets {
        writeln!(o)?;
        if b.given.ends_with('%') {
            writeln!(
                o,
                "Budget {} of the footprint ({}):",
                b.given,
                human(b.budget)
            )?;
        } else {
            writeln!(
                o,
                "Budget {} ({:.1}% of the footprint):",
                b.given,
                100.0 * b.share
            )?;
        }
        writeln!(
            o,
            "  {:<16} {:>9} {:>10} {:>12} {:>12} {:>11}",
            "policy", "obj hits", "byte hits", "saved s", "lost s", "peak"
        )?;
        for row in &b.rows {
            let name = match row.policy {
                PolicyName::Belady => "belady*",
                PolicyName::Lower => "lower*",
                PolicyName::Bound => "bound*",
                PolicyName::GoAge => "go-age**",
                p => p.as_str(),
            };
            writeln!(
                o,
                "  {:<16} {:>9} {:>10} {:>12.1} {:>12.1} {:>11}",
                name,
                pct(row.outcome.hits as f64, acc),
                pct(row.outcome.byte_hits as f64, r.requested_bytes as f64),
                row.outcome.saved_s,
                row.lost_s,
                human(row.outcome.peak_bytes)
            )?;
        }
    }
    Ok(())
}

/// The notes on the offline rows and Go's own trim, for those shown.
fn print_footnotes(o: &mut dyn Write, r: &Report) -> std::io::Result<()> {
    let shown = |p: PolicyName| {
        r.budgets
            .iter()
            .any(|b| b.rows.iter().any(|x| x.policy == p))
    };
    writeln!(o)?;
    if shown(PolicyName::Bound) {
        writeln!(
            o,
            "* bound: offline, the PFOO-L upper bound (Berger et al., SIGMETRICS 2018),\n  \
             each column on its own: no policy can beat it."
        )?;
    }
    if shown(PolicyName::Lower) {
        writeln!(
            o,
            "* lower: offline, the better of belady and a greedy feasible schedule by\n  \
             rebuild seconds: the optimum saves at least this much (and at most bound)."
        )?;
    }
    if shown(PolicyName::Belady) {
        writeln!(
            o,
            "* belady: offline, evicts the farthest next use; a reference that policies\n  \
             can beat when sizes vary, not a bound."
        )?;
    }
    if shown(PolicyName::GoAge) {
        writeln!(
            o,
            "** Go's own trim (5 days unused) has no size limit: the same at every\n   \
             budget; its peak is what it keeps."
        )?;
    }
    Ok(())
}
