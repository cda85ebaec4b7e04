//! `gocache go ARGS...`: run the real go, then the hook.

use std::ffi::OsString;
use std::process::ExitCode;

use gocache::wrapper;

use super::common::Global;

/// Run the real go command, then the post-insert hook.
///
/// Runs the first `go` on PATH that is not gocache itself (or $GOCACHE_GO)
/// with the same arguments, environment and stdio, and exits with its
/// status. Then syncs the index and enforces the stored limits (see `gocache
/// hook`); a hook problem is a warning, never a failure of the go command.
/// `go run` is started through a small shim so the exact cached executable
/// used is counted (not when it has an -exec of its own, on the command
/// line or in GOFLAGS, or prints its commands with -n or -x: then it runs
/// as plain go runs it). Install gocache as `go` (a symlink earlier on
/// PATH, or `alias go='gocache go'`) to wrap every go command.
///
/// Everything after `go` reaches the real go untouched, `-h`, `--help` and
/// `-q` included (`gocache help go` shows this text); gocache's own flags
/// go before it: `gocache -q go build`. With `--cache-dir DIR`, go runs
/// with GOCACHE=DIR: the cache it builds into is the one gocache manages.
/// A `go` on PATH that is gocache (a copy, or a script that runs `gocache
/// go`, with or without exec) is passed over; when nothing else is there,
/// gocache says so and exits 127.
#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// The go command's arguments, as you would give them to go.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "GO ARGS"
    )]
    args: Vec<OsString>,
}

/// Splits `gocache [GLOBAL FLAGS] go ARGS...` at `go`: what clap parses
/// (up to and including `go`) and, when the subcommand is `go`, the
/// arguments that go to the real go untouched, so that clap never takes
/// `-h`, `--help` or `-q` meant for go. Anything else is left to clap.
pub fn split_argv(argv: Vec<OsString>) -> (Vec<OsString>, Option<Vec<OsString>>) {
    let mut i = 1;
    while let Some(a) = argv.get(i) {
        let b = a.as_encoded_bytes();
        if b == b"go" {
            let mut head = argv;
            let tail = head.split_off(i + 1);
            return (head, Some(tail));
        }
        i += match b {
            b"--cache-dir" | b"--index" => 2,
            b"-q" | b"--quiet" => 1,
            _ if b.starts_with(b"--cache-dir=") || b.starts_with(b"--index=") => 1,
            _ => break,
        };
    }
    (argv, None)
}

/// Runs the wrapper: `go_args` as [`split_argv`] cut them (clap's own
/// `args` when the command line did not pass through it).
pub fn run(
    global: &Global,
    args: Args,
    go_args: Option<Vec<OsString>>,
) -> anyhow::Result<ExitCode> {
    Ok(wrap(global, go_args.unwrap_or(args.args)))
}

/// When the binary was invoked as `go` (a symlink; `args[0]` says),
/// runs as the wrapper and returns its exit code; otherwise `None`.
pub fn run_if_invoked_as_go(args: &[OsString]) -> Option<ExitCode> {
    let name = std::path::Path::new(args.first()?).file_name()?;
    if name != "go" {
        return None;
    }
    let global = Global {
        cache_dir: None,
        index: std::env::var_os("GOCACHE_INDEX").map(Into::into),
        quiet: false,
    };
    Some(wrap(&global, args[1..].to_vec()))
}

/// The shim, `gocache __exec-shim EXE ARGS...` (what `go run -exec`
/// starts; `args` are what follows `__exec-shim`). Internal plumbing, not
/// part of the command line clap knows, so no help, completion or man page
/// shows it.
pub fn shim(args: &[OsString]) -> ExitCode {
    let err = wrapper::shim(args);
    eprintln!("gocache: {err}");
    ExitCode::from(err.exit_code())
}

/// Runs the wrapper (`gocache::wrapper::Wrap`) with the hook after go.
fn wrap(global: &Global, args: Vec<OsString>) -> ExitCode {
    // `--cache-dir` is go's cache too: the one it builds into is the one
    // gocache manages.
    let go_cache = match &global.cache_dir {
        None => None,
        Some(_) => match super::common::locate_cache(global) {
            Ok(l) => Some(l.dir),
            Err(e) => return super::common::report_error(&e),
        },
    };
    let locate = || super::common::locate_cache(global).ok().map(|l| l.dir);
    let hook = |seen: wrapper::AfterGo| {
        match super::hook::run_after_go(global, &super::hook::Args::default(), &seen) {
            Ok(()) => {}
            // A go command that did not open the cache (it failed first,
            // or needs none) leaves nothing to do.
            Err(e) if cache_not_there(&e) => {}
            Err(e) if global.quiet => drop(e),
            Err(e) => eprintln!("gocache: warning: the hook after go failed: {e:#}"),
        }
    };
    let wrap = wrapper::Wrap {
        me: std::env::current_exe().unwrap_or_else(|_| "gocache".into()),
        go_cache,
        locate: &locate,
        hook: &hook,
    };
    wrap.run(&args).unwrap_or_else(|err| {
        eprintln!("gocache: {err}");
        ExitCode::from(err.exit_code())
    })
}

/// True when `err` says the cache directory is not there (or is off):
/// after a go command that did not create it, the hook has nothing to do.
fn cache_not_there(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        matches!(
            c.downcast_ref::<gocache::Error>(),
            Some(gocache::Error::CacheMissing(_) | gocache::Error::Locate(_))
        ) || c.downcast_ref::<gocache::layout::LocateError>().is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_command_line_is_cut_at_go_after_gocaches_own_flags() {
        let cut = |v: &[&str]| split_argv(os(v));
        assert_eq!(
            cut(&["gocache", "go", "-h"]),
            (os(&["gocache", "go"]), Some(os(&["-h"])))
        );
        assert_eq!(
            cut(&["gocache", "-q", "--cache-dir", "go", "go", "-q", "version"]),
            (
                os(&["gocache", "-q", "--cache-dir", "go", "go"]),
                Some(os(&["-q", "version"]))
            )
        );
        assert_eq!(
            cut(&["gocache", "--index=/x", "go"]),
            (os(&["gocache", "--index=/x", "go"]), Some(vec![]))
        );
        // Not the go subcommand: all of it is clap's.
        for other in [
            &["gocache", "help", "go"][..],
            &["gocache", "trim", "go"],
            &["gocache", "--budget", "go"],
            &["gocache", "--index"],
            &["gocache"],
        ] {
            assert_eq!(cut(other), (os(other), None), "{other:?}");
        }
    }
}
