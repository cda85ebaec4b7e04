//! `gocache go ARGS...`: run the real go, then the hook.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};

use gocache::wrapper::{self, DEPTH_ENV, HANDOFF_ENV, Handoff, LOOPS_ENV, USES_ENV};

use super::common::Global;

/// Run the real go command, then the post-insert hook.
///
/// Runs the first `go` on PATH that is not gocache itself (or $GOCACHE_GO)
/// with the same arguments, environment and stdio, and exits with its
/// status. Then syncs the index and enforces the stored limits (see `gocache
/// hook`); a hook problem is a warning, never a failure of the go command.
/// `go run` is started through a small shim so the exact cached executable
/// used is counted. Install gocache as `go` (a symlink earlier on PATH, or
/// `alias go='gocache go'`) to wrap every go command.
///
/// Everything after `go` reaches the real go untouched, `-h`, `--help` and
/// `-q` included (`gocache help go` shows this text); gocache's own flags
/// go before it: `gocache -q go build`. A `go` on PATH that is gocache (a
/// copy, or a script that runs `gocache go`) is passed over; when nothing
/// else is there, gocache says so and exits 127.
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
/// starts; `args` are what follows `__exec-shim`): note the executable,
/// then become it. Internal plumbing, not part of the command line clap
/// knows, so no help, completion or man page shows it.
pub fn shim(args: &[OsString]) -> ExitCode {
    let Some((exe, rest)) = args.split_first() else {
        eprintln!(
            "gocache: {} needs the program to run (go run -exec starts it)",
            wrapper::SHIM_SUBCOMMAND
        );
        return ExitCode::from(2);
    };
    if let Some(file) = std::env::var_os(USES_ENV) {
        use std::io::Write;
        // Best effort: a use not recorded must not stop the program.
        let cache = std::env::var_os(wrapper::CACHE_ENV).map(std::path::PathBuf::from);
        if let Some(line) = wrapper::use_line(std::path::Path::new(exe), cache.as_deref())
            && let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&file)
        {
            let _ = f.write_all(&line);
        }
    }
    let err = Command::new(exe)
        .args(rest)
        .env_remove(USES_ENV)
        .env_remove(wrapper::CACHE_ENV)
        .env_remove(HANDOFF_ENV)
        .exec();
    eprintln!(
        "gocache: cannot run {}: {err}",
        std::path::Path::new(exe).display()
    );
    ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

fn wrap(global: &Global, args: Vec<OsString>) -> ExitCode {
    let me = std::env::current_exe().unwrap_or_else(|_| "gocache".into());
    // Inside a wrapped go already: how many wrappers deep (an older
    // gocache wrote "1").
    let depth: Option<u32> = std::env::var_os(DEPTH_ENV)
        .map(|v| v.to_str().and_then(|s| s.parse().ok()).unwrap_or(1).max(1));
    // Candidates seen to start gocache again, and whether the one just
    // handed over to did (see gocache::wrapper's "Never a loop").
    let mut loops: Vec<PathBuf> = std::env::var_os(LOOPS_ENV)
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| p.is_absolute())
                .collect()
        })
        .unwrap_or_default();
    let handoff = std::env::var_os(HANDOFF_ENV).and_then(|v| Handoff::parse(&v));
    if let Some(h) = &handoff
        && h.came_back(std::process::id(), std::os::unix::process::parent_id())
        && !loops.contains(&h.go)
    {
        loops.push(h.go.clone());
    }
    if let Some(d) = depth
        && d >= wrapper::MAX_NESTING
    {
        let through = handoff
            .map(|h| format!(", each through {}", h.go.display()))
            .unwrap_or_default();
        eprintln!(
            "gocache: {d} wrapped go commands nested inside each other{through}: a `go` on PATH \
             seems to run gocache again (a script without `exec`?); make it `exec gocache go \"$@\"`, \
             or set GOCACHE_GO to the real go"
        );
        return ExitCode::from(127);
    }
    let real = match wrapper::find_real_go(
        std::env::var_os(wrapper::GO_ENV).as_deref(),
        std::env::var_os("PATH").as_deref(),
        &me,
        &loops,
    ) {
        Ok(g) => g,
        Err(e) => {
            eprintln!(
                "gocache: {e} (PATH={})",
                std::env::var("PATH").unwrap_or_default()
            );
            return ExitCode::from(127);
        }
    };
    let handoff = |spawned| {
        Handoff {
            pid: std::process::id(),
            spawned,
            go: real.clone(),
        }
        .to_env()
    };
    // A path holding ':' cannot be listed; such a loop is found again by
    // its hand-over, one hop later.
    let loops = (!loops.is_empty())
        .then(|| std::env::join_paths(&loops).ok())
        .flatten();
    // Already inside a wrapped go (go generate, a program running go):
    // become the real go, no hook.
    if let Some(d) = depth {
        let mut cmd = Command::new(&real);
        cmd.args(&args)
            .env(DEPTH_ENV, (d + 1).to_string())
            .env(HANDOFF_ENV, handoff(false));
        if let Some(l) = &loops {
            cmd.env(LOOPS_ENV, l);
        }
        let err = cmd.exec();
        eprintln!("gocache: cannot run {}: {err}", real.display());
        return ExitCode::from(126);
    }
    let hook = wrapper::wants_hook(&args);
    // Where the cache is (go creates it if it is missing; the hook runs
    // after go, on what go set up).
    let cache = if hook {
        super::common::locate_cache(global).ok().map(|l| l.dir)
    } else {
        None
    };
    let uses = tempfile::NamedTempFile::new().ok();
    let go_args = match (&cache, &uses) {
        (Some(_), Some(_)) => wrapper::with_exec_shim(&args, &me).unwrap_or_else(|| args.clone()),
        _ => args.clone(),
    };
    let mut cmd = Command::new(&real);
    cmd.args(&go_args)
        .env(DEPTH_ENV, "1")
        .env(HANDOFF_ENV, handoff(true));
    if let Some(l) = &loops {
        cmd.env(LOOPS_ENV, l);
    }
    if let (Some(u), Some(cache)) = (&uses, &cache) {
        cmd.env(USES_ENV, u.path()).env(wrapper::CACHE_ENV, cache);
    }
    // Like a shell with a foreground job: Ctrl-C and Ctrl-\ go to the whole
    // process group (go included); we wait for go and still run the hook.
    // SIGTERM and SIGHUP sent to us alone are passed on to go: handlers
    // that exec resets for go. An ignored signal stays ignored across exec,
    // so SIGINT and SIGQUIT are ignored only once go has started; that way
    // std starts go with posix_spawn (no fork of this process, no code
    // between fork and exec). A Ctrl-C in the microseconds between reaches
    // go as well; only the hook after it is lost.
    // SAFETY: the handler only calls kill(2).
    unsafe {
        libc::signal(libc::SIGTERM, forward as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, forward as *const () as libc::sighandler_t);
    }
    // What the command writes or touches has a later mtime than this.
    let started_ns = gocache::wrapper::file_clock_ns();
    let status = match cmd.spawn() {
        Ok(mut child) => {
            CHILD.store(child.id() as i32, Ordering::SeqCst);
            // SAFETY: setting dispositions; no handler runs.
            unsafe {
                libc::signal(libc::SIGINT, libc::SIG_IGN);
                libc::signal(libc::SIGQUIT, libc::SIG_IGN);
            }
            let s = child.wait();
            CHILD.store(0, Ordering::SeqCst);
            s
        }
        Err(e) => {
            eprintln!("gocache: cannot run {}: {e}", real.display());
            return ExitCode::from(126);
        }
    };
    if let Some(cache) = &cache {
        let used = uses
            .as_ref()
            .map(|u| wrapper::read_uses(u.path(), cache))
            .unwrap_or_default();
        let module = std::env::current_dir().ok().and_then(|cwd| {
            gocache::gomod::Module::find(&gocache::gomod::go_command_dir(&args, &cwd))
        });
        let extra = super::hook::AfterGo {
            exe_uses: used,
            tool: wrapper::tool_name(&args),
            module,
            started_ns: Some(started_ns),
        };
        match super::hook::run_after_go(global, &super::hook::Args::default(), &extra) {
            Ok(()) => {}
            // A go command that did not open the cache (it failed first,
            // or needs none) leaves nothing to do.
            Err(e) if cache_not_there(&e) => {}
            Err(e) if global.quiet => drop(e),
            Err(e) => eprintln!("gocache: warning: the hook after go failed: {e:#}"),
        }
    }
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => ExitCode::from(c.clamp(0, 255) as u8),
            (None, Some(sig)) => {
                // Die the way go died, so a shell sees the same signal.
                // SAFETY: restoring the default action, then raising.
                unsafe {
                    libc::signal(sig, libc::SIG_DFL);
                    libc::raise(sig);
                }
                ExitCode::from((128 + sig).clamp(0, 255) as u8)
            }
            _ => ExitCode::FAILURE,
        },
        Err(e) => {
            eprintln!("gocache: waiting for go: {e}");
            ExitCode::FAILURE
        }
    }
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
