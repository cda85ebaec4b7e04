//! `gocache go`: the wrapper, against the real go.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

fn exe(stats: &Value, program: &str) -> Option<Value> {
    stats["most_used_exes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["program"] == program)
        .cloned()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn go_run_through_the_wrapper_counts_exact_hits_and_behaves_like_go() {
    let sb = Sandbox::with_template();
    let dir = sb.write_hello("greet", "hi there");
    for n in 1..=2 {
        let out = run_ok(sb.gocache(["go", "run", "."]).current_dir(&dir));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi there\n");
        let s = json(&run_ok(sb.gocache(["stats", "--json"])));
        let e = exe(&s, "greet").unwrap_or_else(|| panic!("no greet exe: {s:#}"));
        assert_eq!(e["hits"], n, "{e:#}");
        assert!(now() - e["last_use"].as_i64().unwrap() < 60);
    }
    // A failing program and stdin: the wrapper's output and status are
    // plain go run's.
    let fail = sb.write_main(
        "fail",
        "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() { fmt.Println(\"bye\"); os.Exit(3) }\n",
    );
    let echo = sb.write_main(
        "echo",
        "package main\n\nimport (\n\t\"io\"\n\t\"os\"\n)\n\nfunc main() { io.Copy(os.Stdout, os.Stdin) }\n",
    );
    for (dir, input) in [(&fail, ""), (&echo, "piped through\n")] {
        let run = |mut c: Command| {
            let mut child = c
                .current_dir(dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        };
        let plain = run(sb.go(["run", "."]));
        let wrapped = run(sb.gocache(["go", "run", "."]));
        assert_eq!(wrapped.status.code(), plain.status.code());
        assert_eq!(wrapped.stdout, plain.stdout);
        assert_eq!(
            String::from_utf8_lossy(&wrapped.stderr),
            String::from_utf8_lossy(&plain.stderr)
        );
    }
    // Only the wrapped run is seen: plain go leaves no trace but an mtime.
    assert_eq!(
        exe(&json(&run_ok(sb.gocache(["stats", "--json"]))), "fail").unwrap()["hits"],
        1
    );
}

#[test]
fn installed_as_go_it_runs_the_real_go_and_never_itself() {
    let sb = Sandbox::with_template();
    let bin = sb.root().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(gocache_bin(), bin.join("go")).unwrap();
    let real_dir = go_bin().parent().unwrap().to_path_buf();
    let path = std::env::join_paths([
        bin.clone(),
        real_dir.clone(),
        "/usr/bin".into(),
        "/bin".into(),
    ])
    .unwrap();
    let dir = sb.write_hello("viasymlink", "through the symlink");
    let started = Instant::now();
    let out = run_ok(
        sb.go(["run", "."])
            .current_dir(&dir)
            .env("PATH", &path)
            .arg0_go(&bin),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "through the symlink\n"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert_eq!(
        exe(&s, "viasymlink").unwrap()["hits"],
        1,
        "the symlinked go is the wrapper"
    );
    let out = run_ok(
        Command::new(bin.join("go"))
            .arg("version")
            .env("PATH", &path),
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("go version go1."));
    // GOCACHE_GO names the real go explicitly.
    let only_us = std::env::join_paths([bin.clone(), "/usr/bin".into(), "/bin".into()]).unwrap();
    let out = run_ok(
        Command::new(bin.join("go"))
            .arg("version")
            .env("PATH", &only_us)
            .env("GOCACHE_GO", go_bin()),
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("go version"));
    // No real go: exit 127 like a shell, with a message naming PATH.
    let out = Command::new(bin.join("go"))
        .arg("version")
        .env("PATH", &only_us)
        .env_remove("GOCACHE_GO")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PATH="),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command whose program is the `go` symlink in `bin`.
trait Arg0Go {
    fn arg0_go(&mut self, bin: &std::path::Path) -> Command;
}

impl Arg0Go for Command {
    fn arg0_go(&mut self, bin: &std::path::Path) -> Command {
        let mut c = Command::new(bin.join("go"));
        c.args(self.get_args());
        if let Some(d) = self.get_current_dir() {
            c.current_dir(d);
        }
        for (k, v) in self.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }
}

#[test]
fn sigterm_to_the_wrapper_reaches_the_program_and_nothing_hangs() {
    let sb = Sandbox::with_template();
    let dir = sb.write_main(
        "sleeper",
        "package main\n\nimport (\n\t\"fmt\"\n\t\"time\"\n)\n\nfunc main() { fmt.Println(\"sleeping\"); time.Sleep(60 * time.Second) }\n",
    );
    run_ok(sb.go(["build", "-o", "/dev/null", "."]).current_dir(&dir)); // warm
    let mut child = sb
        .gocache(["go", "run", "."])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 9];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    assert_eq!(&buf, b"sleeping\n");
    let started = Instant::now();
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn eight_wrapped_go_commands_at_once_keep_the_budget_and_the_index() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    let before = json(&run_ok(sb.gocache(["stats", "--json"])))["total"]["allocated_bytes"]
        .as_u64()
        .unwrap();
    let budget = before / 2;
    run_ok(sb.gocache(["limits", "--budget"]).arg(budget.to_string()));
    let dirs: Vec<_> = (0..8)
        .map(|i| sb.write_hello(&format!("w{i}"), &format!("wrapped {i}")))
        .collect();
    std::thread::scope(|s| {
        for (i, dir) in dirs.iter().enumerate() {
            let sb = &sb;
            s.spawn(move || {
                let out = run_ok(sb.gocache(["go", "run", "."]).current_dir(dir));
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout),
                    format!("wrapped {i}\n")
                );
            });
        }
    });
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert!(
        s["total"]["allocated_bytes"].as_u64().unwrap() <= budget,
        "{:#}",
        s["total"]
    );
    for i in 0..8 {
        assert_eq!(exe(&s, &format!("w{i}")).unwrap()["hits"], 1, "w{i}");
    }
    let scan = json(&run_ok(sb.gocache(["scan", "--full", "--json"])));
    assert_eq!(
        (scan["added"].as_u64(), scan["removed"].as_u64()),
        (Some(0), Some(0)),
        "{scan:#}"
    );
}

#[test]
fn with_an_exe_quota_of_one_executable_the_next_program_evicts_the_last() {
    let sb = Sandbox::with_template();
    let first = sb.write_hello("first", "first program");
    let second = sb.write_hello("second", "second program");
    run_ok(sb.gocache(["go", "run", "."]).current_dir(&first));
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    let size = exe(&s, "first").unwrap()["allocated_bytes"]
        .as_u64()
        .unwrap();
    // Age everything past the grace period (first was run "3 hours ago").
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    conn.execute("UPDATE entries SET last_use = last_use - 3 * 3600", [])
        .unwrap();
    drop(conn);
    run_ok(
        sb.gocache(["limits", "--exe-quota"])
            .arg((size * 3 / 2).to_string()),
    );
    let out = run_ok(sb.gocache(["go", "run", "."]).current_dir(&second));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "second program\n");
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    let programs: Vec<&str> = s["most_used_exes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["program"].as_str().unwrap())
        .collect();
    assert_eq!(
        programs,
        vec!["second"],
        "the template's and the first program's executables went"
    );
    let out = run_ok(sb.gocache(["go", "run", "."]).current_dir(&first));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first program\n");
}

/// Runs `cmd` to its end, failing the test if that takes over `secs`
/// seconds (a wrapper running itself in a loop never ends, so the limits
/// are generous: a loaded 2-core machine took 2 minutes for a cold
/// `go build net/http`).
fn output_within(cmd: &mut Command, secs: u64) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) of our own child's process group (it and
            // whatever it started).
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
            panic!("{cmd:?} still running after {secs} s: a loop?");
        }
    }
}

fn write_script(path: &std::path::Path, body: &str) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Installed as `go`, gocache ran
/// itself without end (about 640 execve a second) when a `go` earlier on
/// PATH was a script running `exec gocache go "$@"`, or a copy of gocache.
#[test]
fn a_go_on_path_that_is_gocache_is_passed_over_and_never_runs_in_a_loop() {
    let sb = Sandbox::with_template();
    let root = sb.root();
    let (shim, copy, link, fork) = (
        root.join("shim"),
        root.join("copy"),
        root.join("link"),
        root.join("fork"),
    );
    for d in [&shim, &copy, &link, &fork] {
        std::fs::create_dir_all(d).unwrap();
    }
    let gc = gocache_bin();
    // What people write: a script that hands go commands to gocache.
    write_script(
        &shim.join("go"),
        &format!("#!/bin/sh\nexec '{}' go \"$@\"\n", gc.display()),
    );
    // ... the same without exec: a shell stays between.
    write_script(
        &fork.join("go"),
        &format!("#!/bin/sh\n'{}' go \"$@\"\n", gc.display()),
    );
    // A copy of the binary named go, beside the README's symlink.
    std::fs::copy(&gc, copy.join("go")).unwrap();
    std::os::unix::fs::symlink(&gc, link.join("go")).unwrap();
    let real = go_bin().parent().unwrap().to_path_buf();
    let path = |dirs: &[&std::path::PathBuf]| std::env::join_paths(dirs).unwrap();

    let version = |mut c: Command, p: &std::ffi::OsStr| {
        let out = output_within(c.arg("version").env("PATH", p), 120);
        assert!(
            out.status.success() && text(&out.stdout).starts_with("go version go1."),
            "{c:?}: {}\n{}",
            out.status,
            text(&out.stderr)
        );
    };
    // The script first on PATH: through gocache, through the script, as
    // the symlink, and with the copy in front too.
    let p = path(&[&shim, &real]);
    version(sb.gocache(["go"]), &p);
    version(Command::new(shim.join("go")), &p);
    version(Command::new(link.join("go")), &path(&[&link, &shim, &real]));
    version(
        Command::new(link.join("go")),
        &path(&[&link, &copy, &shim, &real]),
    );
    // The copy: beside the symlink, and run itself.
    version(Command::new(link.join("go")), &path(&[&link, &copy, &real]));
    version(Command::new(copy.join("go")), &path(&[&copy, &link, &real]));
    // The script without exec, in front of the others.
    version(sb.gocache(["go"]), &path(&[&fork, &real]));
    version(
        Command::new(link.join("go")),
        &path(&[&link, &fork, &shim, &real]),
    );

    // Through the script, go run is still counted and go generate, which
    // runs go again (through the script: PATH is inherited), still works.
    let p = path(&[&shim, &real]);
    let dir = sb.write_main(
        "generated",
        "package main\n\n//go:generate go version\n\nfunc main() { println(\"generated\") }\n",
    );
    let out = output_within(
        Command::new(shim.join("go"))
            .args(["run", "."])
            .current_dir(&dir)
            .envs(sb.env())
            .env("PATH", &p),
        300,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert_eq!(exe(&s, "generated").unwrap()["hits"], 1, "{s:#}");
    let out = output_within(
        Command::new(shim.join("go"))
            .arg("generate")
            .current_dir(&dir)
            .envs(sb.env())
            .env("PATH", &p),
        300,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("go version go1."), "{out:?}");

    // Nothing but gocache: exit 127 at once, saying what each one is.
    let only_us = path(&[&shim, &copy, &link]);
    for mut c in [
        sb.gocache(["go", "version"]),
        Command::new(link.join("go")),
        Command::new(copy.join("go")),
        Command::new(shim.join("go")),
    ] {
        let out = output_within(c.arg("version").env("PATH", &only_us), 120);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(127), "{c:?}: {err}");
        for needle in [
            format!("{} runs gocache again", shim.join("go").display()),
            format!("{} is a gocache binary", copy.join("go").display()),
            "set GOCACHE_GO".to_string(),
        ] {
            assert!(err.contains(&needle), "{c:?}: {needle:?} not in {err}");
        }
        assert_eq!(err.lines().count(), 1, "one message: {err}");
    }
    // GOCACHE_GO naming gocache is refused the same way.
    let out = output_within(
        sb.gocache(["go", "version"])
            .env("GOCACHE_GO", copy.join("go"))
            .env("PATH", &only_us),
        120,
    );
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("is a gocache binary"), "{out:?}");
    // Two shells between a script and gocache cannot be told from a
    // program running go by the processes (one shell can: see
    // a_go_script_without_exec_is_passed_over_for_the_real_go_further_on_path);
    // the nesting count stops it, naming the script.
    let deep = root.join("deep");
    std::fs::create_dir_all(&deep).unwrap();
    write_script(
        &deep.join("go"),
        &format!(
            "#!/bin/sh\n/bin/sh -c '\"$0\" go \"$@\"; exit $?' '{}' \"$@\"\n",
            gc.display()
        ),
    );
    let out = output_within(
        sb.gocache(["go", "version"])
            .env("PATH", path(&[&deep, &real])),
        120,
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{err}");
    assert!(
        err.contains(&format!("each through {}", deep.join("go").display())),
        "{err}"
    );
    assert!(err.contains("exec gocache go"), "{err}");
}

/// With `alias go='gocache go'`,
/// `go -h` printed gocache's help and `-q` was taken by gocache.
#[test]
fn everything_after_go_reaches_the_real_go_untouched() {
    let sb = Sandbox::new();
    let bin = sb.root().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(gocache_bin(), bin.join("go")).unwrap();
    let gc = gocache_bin().display().to_string();
    for args in [
        &["-h"][..],
        &["--help"],
        &["-q", "version"],
        &["help", "build"],
        &["version", "-h"],
        &["env", "--help"],
    ] {
        let plain = sb.go(args).output().unwrap();
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        // The alias as a shell expands it, the wrapper, and the symlink.
        let alias = format!(
            "shopt -s expand_aliases\nalias go=\"'{gc}' go\"\ngo {}\n",
            quoted.join(" ")
        );
        let via_alias = Command::new("bash")
            .args(["-c", &alias])
            .envs(sb.env())
            .current_dir(sb.root())
            .output()
            .unwrap();
        let wrapped = sb.gocache(["go"]).args(args).output().unwrap();
        let linked = Command::new(bin.join("go"))
            .args(args)
            .envs(sb.env())
            .output()
            .unwrap();
        for (how, got) in [
            ("alias", &via_alias),
            ("gocache go", &wrapped),
            ("symlink", &linked),
        ] {
            assert_eq!(got.status.code(), plain.status.code(), "{how} {args:?}");
            assert_eq!(text(&got.stdout), text(&plain.stdout), "{how} {args:?}");
            assert_eq!(text(&got.stderr), text(&plain.stderr), "{how} {args:?}");
        }
    }
    // gocache's own flags still go before `go`.
    let out = run_ok(sb.gocache(["-q", "go", "version"]));
    assert!(text(&out.stdout).starts_with("go version go1."));
    let out = run_ok(sb.gocache(["--cache-dir", "/nonexistent", "go", "version"]));
    assert!(text(&out.stdout).starts_with("go version go1."));
    // And `gocache help go` is where gocache's help for it is.
    let out = run_ok(sb.gocache(["help", "go"]));
    assert!(text(&out.stdout).contains("reaches the real go untouched"));
}

/// `-exec` set in GOFLAGS (the environment or the go env file) is the
/// user's, as on the command line: the program runs through it, and the
/// wrapper does not replace it with its shim. And `go run -n` and `-x`
/// print the command plain go prints, not the shim's.
#[test]
fn go_run_keeps_an_exec_from_goflags_and_prints_the_command_plain_go_prints() {
    let sb = Sandbox::with_template();
    let dir = sb.write_hello("execd", "run through exec");
    let log = sb.root().join("exec.log");
    let exec = sb.root().join("bin/myexec");
    std::fs::create_dir_all(exec.parent().unwrap()).unwrap();
    write_script(
        &exec,
        &format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\nexec \"$@\"\n",
            log.display()
        ),
    );
    let logged = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let goflags = format!("-mod=mod -exec={}", exec.display());
    let env_file = sb.root().join("go.env");
    std::fs::write(&env_file, format!("GOFLAGS={goflags}\n")).unwrap();
    for how in ["environment", "go env file"] {
        for wrapped in [false, true] {
            let mut cmd = if wrapped {
                sb.gocache(["go", "run", "."])
            } else {
                sb.go(["run", "."])
            };
            cmd.current_dir(&dir);
            if how == "environment" {
                cmd.env("GOFLAGS", &goflags);
            } else {
                cmd.env("GOENV", &env_file).env_remove("GOFLAGS");
            }
            let before = logged().len();
            let out = run_ok(&mut cmd);
            assert_eq!(text(&out.stdout), "run through exec\n", "{how} {wrapped}");
            let after = logged();
            assert_eq!(
                after.len(),
                before + 1,
                "{how}, wrapped {wrapped}: {after:?}"
            );
            assert!(after[before].ends_with("/execd"), "{after:?}");
        }
    }
    // The program is cached now: -n and -x print only the command that
    // runs it (-x after its own temporary directory, which differs).
    let work = |o: &std::process::Output| {
        text(&o.stderr)
            .lines()
            .filter(|l| !l.starts_with("WORK="))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    for flags in [&["-n"][..], &["-x"]] {
        let plain = sb
            .go(["run"])
            .args(flags)
            .arg(".")
            .current_dir(&dir)
            .output()
            .unwrap();
        let wrapped = sb
            .gocache(["go", "run"])
            .args(flags)
            .arg(".")
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(wrapped.status.code(), plain.status.code(), "{flags:?}");
        assert_eq!(text(&wrapped.stdout), text(&plain.stdout), "{flags:?}");
        assert_eq!(work(&wrapped), work(&plain), "{flags:?}");
        assert!(!text(&wrapped.stderr).contains("__exec-shim"), "{flags:?}");
    }
    // -n from GOFLAGS too.
    let plain = sb
        .go(["run", "."])
        .current_dir(&dir)
        .env("GOFLAGS", "-mod=mod -n")
        .output()
        .unwrap();
    let wrapped = sb
        .gocache(["go", "run", "."])
        .current_dir(&dir)
        .env("GOFLAGS", "-mod=mod -n")
        .output()
        .unwrap();
    assert_eq!(text(&wrapped.stderr), text(&plain.stderr));
}

/// A `go` script that runs gocache without `exec` keeps a shell between
/// them; the wrapper finds that out too and goes on to the real go further
/// on PATH, where it used to stop after ten nested calls. Only when
/// nothing else is there does it stop, naming the script.
#[test]
fn a_go_script_without_exec_is_passed_over_for_the_real_go_further_on_path() {
    let sb = Sandbox::with_template();
    let fork = sb.root().join("fork");
    std::fs::create_dir_all(&fork).unwrap();
    write_script(
        &fork.join("go"),
        &format!("#!/bin/sh\n'{}' go \"$@\"\n", gocache_bin().display()),
    );
    let real = go_bin().parent().unwrap().to_path_buf();
    let path = std::env::join_paths([&fork, &real]).unwrap();
    for mut c in [Command::new(fork.join("go")), sb.gocache(["go"])] {
        let started = Instant::now();
        let out = output_within(c.arg("version").env("PATH", &path), 120);
        assert!(
            out.status.success() && text(&out.stdout).starts_with("go version go1."),
            "{c:?}: {}\n{}",
            out.status,
            text(&out.stderr)
        );
        assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    // go run through the script: the program's output and exit status,
    // and its run counted once.
    let dir = sb.write_hello("forked", "through a script");
    let out = output_within(
        Command::new(fork.join("go"))
            .args(["run", "."])
            .current_dir(&dir)
            .envs(sb.env())
            .env("PATH", &path),
        300,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "through a script\n");
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert_eq!(exe(&s, "forked").unwrap()["hits"], 1, "{s:#}");
    // Nothing but the script: exit 127 at once, saying what it is.
    let only = std::env::join_paths([&fork]).unwrap();
    let out = output_within(sb.gocache(["go", "version"]).env("PATH", &only), 120);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{err}");
    assert!(
        err.contains(&format!("{} runs gocache again", fork.join("go").display())),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one message: {err}");
}
