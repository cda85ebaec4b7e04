//! `gocache dir`: where the cache and the index are.

use std::io::Write;
use std::process::ExitCode;

use super::common::{Global, locate_cache, print_json};

/// Print where the Go build cache is (`gocache dir index`: its index).
///
/// The cache directory is found as `go env GOCACHE` finds it (--cache-dir,
/// $GOCACHE, the go env file, the default), whether or not it exists yet;
/// the index is --index or $GOCACHE_INDEX, else <cache>/gocache/index.sqlite.
/// One path, for scripts: `du -sh "$(gocache dir)"`. --json prints
/// both, where the cache setting came from, whether the cache exists, and
/// the config file limits are read from.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to print: the cache directory, or the index file.
    #[arg(value_enum, default_value_t = What::Cache)]
    what: What,
    /// Print JSON: both paths, where the cache setting came from, the config file.
    #[arg(long, help_heading = super::common::heading::OUTPUT)]
    json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum What {
    /// The Go build cache directory.
    Cache,
    /// The index file.
    Index,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let located = locate_cache(global)?;
    let index = global
        .index
        .clone()
        .unwrap_or_else(|| gocache::cachedir::default_index_path(&located.dir));
    if args.json {
        let env = |k: &str| std::env::var_os(k);
        print_json(&serde_json::json!({
            "cache_dir": located.dir,
            "index": index,
            "source": located.source.to_string(),
            "exists": located.dir.is_dir(),
            "config_file": gocache::limits::config_path(&env).map(|(p, _)| p),
        }))?;
    } else {
        let path = match args.what {
            What::Index => &index,
            What::Cache => &located.dir,
        };
        writeln!(std::io::stdout(), "{}", path.display())?;
    }
    Ok(ExitCode::SUCCESS)
}
