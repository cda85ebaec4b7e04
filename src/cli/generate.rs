//! `gocache completions SHELL` and `gocache man`: shell completions and
//! man pages generated from the clap definitions, so they always match the
//! installed binary.
//!
//! Generated at run time, not in a build script: the clap definitions live
//! in this crate (which its build script cannot use), and `cargo install` installs only the binary, so
//! files a build script wrote would stay in `target/` anyway. The binary
//! prints them where the README says to put them.

use std::path::PathBuf;
use std::process::ExitCode;

/// Print a shell completion script.
///
/// Install for bash (the script completes gocache-trim too; bash loads it
/// by the command's name, hence the link):
///
///     gocache completions bash > ~/.local/share/bash-completion/completions/gocache
///     ln -s gocache ~/.local/share/bash-completion/completions/gocache-trim
///
/// zsh (a directory on $fpath, before compinit):
///
///     gocache completions zsh > ~/.zfunc/_gocache
///
/// fish:
///
///     gocache completions fish > ~/.config/fish/completions/gocache.fish
#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Print the man page (roff), or write one per command to a directory.
///
/// `gocache man | man -l -` shows it; install all pages with
///
///     gocache man --dir ~/.local/share/man/man1
#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write gocache.1 and gocache-SUBCOMMAND.1 into this directory
    /// (created if missing) instead of printing gocache.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Prints the completion script of `cmd`, gocache; for bash, followed by
/// `trim`'s, gocache-trim (a bash completion file may register several
/// commands; one for zsh or fish names one).
pub fn completions(
    mut cmd: clap::Command,
    mut trim: clap::Command,
    args: CompletionsArgs,
) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "gocache", &mut out);
    if args.shell == clap_complete::Shell::Bash {
        clap_complete::generate(args.shell, &mut trim, "gocache-trim", &mut out);
    }
    write_stdout(&out)
}

pub fn man(cmd: clap::Command, args: ManArgs) -> anyhow::Result<ExitCode> {
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| gocache::Error::io("creating", &dir, e))?;
            clap_mangen::generate_to(cmd, &dir)
                .map_err(|e| gocache::Error::io("writing man pages into", &dir, e))?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            write_stdout(&out)
        }
    }
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
