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
/// With GOCACHEPROG set, `go run` and `go tool` cache no executables at
/// all (Go caches them only in its on-disk cache); the go command still
/// keeps fuzzing data and test expiry in the cache directory.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    limits: LimitArgs,
    /// Threads answering gets and finishing puts.
    #[arg(long, default_value_t = 4)]
    workers: usize,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    // Like go itself, create a missing cache directory.
    if let Ok(l) =
        gocache::layout::locate_cache(global.cache_dir.as_deref(), &|k| std::env::var_os(k))
        && !l.dir.exists()
    {
        std::fs::create_dir_all(&l.dir)?;
    }
    let ctx = Ctx::locate(global)?;
    // The build must never fail because of the index: without one, serve
    // the cache and say so once.
    let index = match gocache::index::Index::open(&ctx.index_path) {
        Ok(ix) => Some(ix),
        Err(e) => {
            eprintln!("gocache prog: warning: {e}; serving the cache without counting hits");
            None
        }
    };
    let limits = match &index {
        Some(ix) => {
            let l = effective_limits(&ctx.cache_dir, ix, &args.limits.specs())?;
            (l.budget.is_some() || l.exe_quota.is_some() || l.min_free.is_some()).then_some(l)
        }
        None => None,
    };
    let cfg = gocache::prog::ServerConfig {
        cache_dir: gocache::cachedir::CacheDir::open(&ctx.cache_dir)?,
        index,
        limits,
        clock: super::common::now,
        workers: args.workers,
    };
    match gocache::prog::serve(cfg, std::io::stdin().lock(), std::io::stdout()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(msg) => {
            eprintln!("gocache prog: {msg}");
            Ok(ExitCode::FAILURE)
        }
    }
}
