//! `gocache go ARGS...`: run the real go, then the hook.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};

use gocache::wrapper::{self, DEPTH_ENV, USES_ENV};

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
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The go command's arguments, as you would give them to go.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "GO ARGS"
    )]
    args: Vec<OsString>,
}

/// `gocache __exec-shim EXE ARGS...`: what `go run -exec` starts.
#[derive(clap::Args, Debug)]
pub struct ShimArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    args: Vec<OsString>,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    Ok(wrap(global, args.args))
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

/// The shim: note the executable, then become it.
pub fn shim(args: ShimArgs) -> anyhow::Result<ExitCode> {
    let (exe, rest) = args.args.split_first().expect("clap requires one argument");
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
        .exec();
    eprintln!(
        "gocache: cannot run {}: {err}",
        std::path::Path::new(exe).display()
    );
    Ok(ExitCode::from(
        if err.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        },
    ))
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
    let real = match wrapper::find_real_go(
        std::env::var_os(wrapper::GO_ENV).as_deref(),
        std::env::var_os("PATH").as_deref(),
        &me,
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
    // Already inside a wrapped go (go generate, a program running go):
    // become the real go, no hook.
    if std::env::var_os(DEPTH_ENV).is_some() {
        let err = Command::new(&real).args(&args).exec();
        eprintln!("gocache: cannot run {}: {err}", real.display());
        return ExitCode::from(126);
    }
    let hook = wrapper::wants_hook(&args);
    let ctx = if hook {
        super::common::Ctx::locate(global).ok()
    } else {
        None
    };
    let uses = tempfile::NamedTempFile::new().ok();
    let go_args = match (&ctx, &uses) {
        (Some(_), Some(_)) => wrapper::with_exec_shim(&args, &me).unwrap_or_else(|| args.clone()),
        _ => args.clone(),
    };
    let mut cmd = Command::new(&real);
    cmd.args(&go_args).env(DEPTH_ENV, "1");
    if let (Some(u), Some(ctx)) = (&uses, &ctx) {
        cmd.env(USES_ENV, u.path())
            .env(wrapper::CACHE_ENV, &ctx.cache_dir);
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
    if let Some(ctx) = &ctx {
        let used = uses
            .as_ref()
            .map(|u| wrapper::read_uses(u.path(), &ctx.cache_dir))
            .unwrap_or_default();
        let extra = super::hook::AfterGo {
            exe_uses: used,
            tool: wrapper::tool_name(&args),
        };
        if let Err(e) = super::hook::run_after_go(global, &super::hook::Args::default(), &extra) {
            eprintln!("gocache: warning: the hook after go failed: {e:#}");
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
