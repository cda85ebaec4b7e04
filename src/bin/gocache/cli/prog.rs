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
    // Like go itself, set up a cache that is missing or empty (go has done
    // so already when it started us; not when we run on our own).
    let located = super::common::locate_cache(global)?;
    gocache::cachedir::init_like_go(&located.dir).map_err(|e| {
        anyhow::Error::new(e).context(format!("cache directory from {}", located.source))
    })?;
    let ctx = Ctx::locate(global)?;
    // The build must never fail because of the index: without one, serve
    // the cache and say so once.
    let index = match gocache::index::Index::open(&ctx.index_path) {
        Ok(mut ix) => {
            // Go starts us in its own working directory: what this go
            // command gets and puts is credited to its module.
            let cwd = std::env::current_dir().ok();
            ix.credit_module(cwd.and_then(|d| gocache::gomod::Module::find(&d)));
            Some(ix)
        }
        Err(e) => {
            if !ctx.quiet {
                eprintln!("gocache prog: warning: {e}; serving the cache without counting hits");
            }
            None
        }
    };
    let limits = match &index {
        Some(ix) => match effective_limits(&ctx.cache_dir, ix, &args.limits.specs()) {
            Ok(l) => {
                (l.budget.is_some() || l.exe_quota.is_some() || l.min_free.is_some()).then_some(l)
            }
            // The build goes on; the limits wait for a run that can read them.
            Err(e) => {
                if !ctx.quiet {
                    eprintln!("gocache prog: warning: {e}; serving the cache without limits");
                }
                None
            }
        },
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
