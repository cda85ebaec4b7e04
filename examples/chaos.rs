//! The adversarial experiments, repeatable: run by
//! `scripts/chaos.sh`, which builds gocache, finds go and a template cache.
//!
//! ```sh
//! chaos WORKDIR TEMPLATE_CACHE [KILLS] [GO_COMMANDS] [FUZZ_REQUESTS] [SEED]
//! ```
//!
//! 1. SIGKILL at random moments of `trim`, the hook and `gocache prog`
//!    (KILLS trials, a third each, default 120): after each, go must still
//!    build, and `gocache scan` must leave an index that matches a walk of
//!    the cache independent of gocache (every name, its allocated bytes,
//!    and the running totals).
//! 2. Trims to a quarter of the go commands' working set (`--grace 0s`,
//!    every 200 ms) beside two loops of go build, test, vet and run, half
//!    of them through the wrapper (whose hook races the trims):
//!    GO_COMMANDS go commands (default 200), none may fail, and no trim
//!    may exit other than 0 or 3 (limits not met).
//! 3. Malformed GOCACHEPROG streams: FUZZ_REQUESTS mutated requests
//!    (default 3000), each after a few valid ones in its own `gocache
//!    prog`: no panic, no signal, no hang.
//! 4. Go's hour: a build looks up entries whose mtimes are
//!    just under an hour old (Go leaves them), waits at its link step
//!    until they are over an hour old, and a `--grace 0s` trim or hook to
//!    1 MiB runs then (`CHAOS_BOUNDARY_TRIALS`, default 20): the build must
//!    link, and none of its entries may go.
//! 5. gocache's place taken: `gocache/index.sqlite`, its
//!    `-wal`, or `gocache/` itself a symlink to another program's
//!    database or directory outside the cache, that database copied in,
//!    or `--index` naming a link (`CHAOS_LINK_TRIALS`, default 20): stats,
//!    trim, the hook, `ci begin`/`ci end`, `gocache go` and `gocache prog`
//!    must exit as documented, go must build, and nothing outside the
//!    cache may change.
//!
//! `CHAOS_ONLY` (a comma-separated list of `kills`, `beside`, `fuzz`,
//! `boundary`, `links`) runs only those.
//!
//! Prints a table of trials and failures; exits 1 when any failed.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::Digest;

struct World {
    gocache: PathBuf,
    go: PathBuf,
    work: PathBuf,
    template: PathBuf,
}

struct Row {
    experiment: String,
    trials: u64,
    failures: u64,
    notes: String,
    /// One line per failure: what a user would have seen.
    details: Vec<String>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!(
            "usage: chaos WORKDIR TEMPLATE_CACHE [KILLS] [GO_COMMANDS] [FUZZ_REQUESTS] [SEED]"
        );
        std::process::exit(2);
    }
    let num = |i: usize, default: u64| -> u64 {
        args.get(i).map_or(default, |s| {
            s.parse().unwrap_or_else(|_| {
                eprintln!("chaos: {s:?} is not a whole number");
                std::process::exit(2)
            })
        })
    };
    let world = World {
        gocache: std::env::var_os("GOCACHE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("gocache")),
        go: std::env::var_os("GO_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("go")),
        work: PathBuf::from(&args[0]),
        template: PathBuf::from(&args[1]),
    };
    let (kills, go_commands, fuzz) = (num(2, 120), num(3, 200), num(4, 3000));
    let mut rng = fastrand::Rng::with_seed(num(5, 12));
    std::fs::create_dir_all(&world.work).unwrap();
    world.write_modules();

    let only = std::env::var("CHAOS_ONLY").unwrap_or_default();
    let runs = |name: &str| only.is_empty() || only.split(',').any(|o| o.trim() == name);
    let trials = |var: &str| -> u64 {
        std::env::var(var).ok().map_or(20, |s| {
            s.parse().unwrap_or_else(|_| {
                eprintln!("chaos: {var}={s:?} is not a whole number");
                std::process::exit(2)
            })
        })
    };
    let mut rows = Vec::new();
    if runs("kills") {
        for kind in [Victim::Trim, Victim::Hook, Victim::Prog] {
            let n = kills / 3 + u64::from(kind == Victim::Trim) * (kills % 3);
            rows.push(world.kills(kind, n, &mut rng));
        }
    }
    if runs("beside") {
        rows.extend(world.trims_beside_go(go_commands));
    }
    if runs("fuzz") {
        rows.push(world.fuzz_prog(fuzz, &mut rng));
    }
    if runs("boundary") {
        rows.push(world.at_gos_hour(trials("CHAOS_BOUNDARY_TRIALS"), &mut rng));
    }
    if runs("links") {
        rows.push(world.links_in_our_place(trials("CHAOS_LINK_TRIALS"), &mut rng));
    }

    println!();
    println!(
        "{:<44} {:>7} {:>8}  notes",
        "experiment", "trials", "failures"
    );
    for r in &rows {
        println!(
            "{:<44} {:>7} {:>8}  {}",
            r.experiment, r.trials, r.failures, r.notes
        );
    }
    for r in rows.iter().filter(|r| !r.details.is_empty()) {
        println!();
        println!("{}: the first failures", r.experiment);
        for d in r.details.iter().take(5) {
            println!("  {d}");
        }
    }
    if rows.iter().any(|r| r.failures > 0) {
        std::process::exit(1);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Victim {
    Trim,
    Hook,
    Prog,
}

impl World {
    fn cache(&self) -> PathBuf {
        self.work.join("cache")
    }

    fn env(&self, c: &mut Command) {
        let root = &self.work;
        let path = format!(
            "{}:{}",
            self.go.parent().unwrap_or(Path::new("")).display(),
            std::env::var("PATH").unwrap_or_default()
        );
        for (k, v) in [
            ("GOCACHE", self.cache().into_os_string()),
            ("GOPATH", root.join("gopath").into()),
            ("HOME", root.join("home").into()),
            ("GOENV", "off".into()),
            ("GOTOOLCHAIN", "local".into()),
            ("GOPROXY", "off".into()),
            ("GOFLAGS", "-mod=mod".into()),
            ("GOTELEMETRY", "off".into()),
            ("CGO_ENABLED", "0".into()),
            ("PATH", path.into()),
        ] {
            c.env(k, v);
        }
        c.env_remove("GOCACHEPROG").env_remove("GOCACHE_INDEX");
    }

    fn go(&self, args: &[&str], dir: &Path) -> Command {
        let mut c = Command::new(&self.go);
        c.args(args).current_dir(dir).stdin(Stdio::null());
        self.env(&mut c);
        c
    }

    fn gocache(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.gocache);
        c.args(args).current_dir(&self.work).stdin(Stdio::null());
        self.env(&mut c);
        c
    }

    /// `hello` (a program) and `mathx` (a package with a test).
    fn write_modules(&self) {
        for (name, file, src) in [
            (
                "hello",
                "main.go",
                "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n",
            ),
            (
                "mathx",
                "mathx.go",
                "package mathx\n\n// Add adds.\nfunc Add(a, b int) int { return a + b }\n",
            ),
        ] {
            let dir = self.work.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("go.mod"),
                format!("module example.com/{name}\n\ngo 1.24\n"),
            )
            .unwrap();
            std::fs::write(dir.join(file), src).unwrap();
        }
        std::fs::write(
            self.work.join("mathx/mathx_test.go"),
            "package mathx\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(2, 3) != 5 {\n\t\tt.Fatal(\"bad\")\n\t}\n}\n",
        )
        .unwrap();
        for d in ["gopath", "home"] {
            std::fs::create_dir_all(self.work.join(d)).unwrap();
        }
    }

    /// A copy of the template cache, as if unused for three hours, with
    /// an index written by `gocache scan` when `indexed`.
    fn fresh_cache(&self, indexed: bool) {
        let cache = self.cache();
        if cache.exists() {
            make_writable(&cache);
            std::fs::remove_dir_all(&cache).unwrap();
        }
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&self.template)
            .arg(&cache)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cp -a {} {}", self.template.display(), cache.display());
        backdate(&cache, Duration::from_secs(3 * 3600));
        if indexed {
            let out = self.gocache(&["scan", "-q"]).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Starts what `kind` kills, on a cache it has work in.
    fn start(&self, kind: Victim) -> Child {
        let budget = (du(&self.cache()) / 2).to_string();
        let quiet = |mut c: Command| {
            c.stdout(Stdio::null()).stderr(Stdio::null());
            c.spawn().unwrap()
        };
        match kind {
            Victim::Trim => quiet(self.gocache(&["trim", "-q", "--budget", &budget])),
            Victim::Hook => quiet(self.gocache(&["hook", "--budget", &budget])),
            Victim::Prog => {
                // A rebuild of everything hello needs: a stream of puts.
                let mut c = self.go(
                    &["build", "-a", "-o", "/dev/null", "."],
                    &self.work.join("hello"),
                );
                c.env(
                    "GOCACHEPROG",
                    format!("{} prog --budget {budget}", self.gocache.display()),
                );
                quiet(c)
            }
        }
    }

    /// How long `kind` runs unkilled here (the median of three; one run
    /// for prog, whose build takes long), so kills land while it runs.
    /// Kills of prog land in its first 5 s at most: the puts flow from the
    /// start, and a trial should not take a whole build.
    fn calibrate(&self, kind: Victim) -> Duration {
        if kind == Victim::Prog {
            self.fresh_cache(true);
            let started = Instant::now();
            self.start(kind).wait().unwrap();
            return started.elapsed().min(Duration::from_secs(5));
        }
        let mut took: Vec<Duration> = (0..3)
            .map(|i| {
                self.fresh_cache(i != 0);
                let started = Instant::now();
                self.start(kind).wait().unwrap();
                started.elapsed()
            })
            .collect();
        took.sort();
        took[1]
    }

    fn kills(&self, kind: Victim, trials: u64, rng: &mut fastrand::Rng) -> Row {
        eprintln!("chaos: SIGKILL {kind:?}: calibrating");
        let span = self.calibrate(kind);
        eprintln!("chaos: SIGKILL {kind:?}: {trials} trials, kills within {span:.2?}");
        let (mut landed, mut details) = (0, Vec::new());
        for t in 0..trials {
            if t > 0 && t % 10 == 0 {
                eprintln!(
                    "chaos: SIGKILL {kind:?}: {t} trials, {} failed",
                    details.len()
                );
            }
            // A third of the trials start without an index: the victim
            // creates it.
            self.fresh_cache(t % 3 != 0);
            let mut child = self.start(kind);
            let delay = span.mul_f64(rng.f64() * 1.1);
            std::thread::sleep(delay);
            let killed = match kind {
                Victim::Prog => kill_children_named(child.id(), "gocache"),
                _ => child.try_wait().unwrap().is_none() && child.kill().is_ok(),
            };
            landed += u64::from(killed);
            if !wait_for(&mut child, Duration::from_secs(120)) {
                details.push(format!(
                    "trial {t} (kill at {delay:.2?}): still running 120 s after the kill"
                ));
                continue;
            }
            if let Err(e) = self.check_after_kill() {
                details.push(format!("trial {t} (kill at {delay:.2?}): {e}"));
            }
        }
        Row {
            experiment: format!(
                "SIGKILL {}",
                match kind {
                    Victim::Trim => "gocache trim",
                    Victim::Hook => "gocache hook",
                    Victim::Prog => "gocache prog (go build -a)",
                }
            ),
            trials,
            failures: details.len() as u64,
            notes: format!(
                "{landed} kills landed mid-run (delays 0..{:.2?})",
                span.mul_f64(1.1)
            ),
            details,
        }
    }

    /// Go still builds and runs, and `gocache scan` leaves an index that
    /// matches an independent walk.
    fn check_after_kill(&self) -> Result<(), String> {
        let out = self
            .go(&["run", "."], &self.work.join("hello"))
            .output()
            .unwrap();
        if !out.status.success() || out.stdout != b"hello\n" {
            return Err(format!(
                "go run failed: {}: {}",
                out.status,
                all_lines(&out)
            ));
        }
        let out = self.gocache(&["scan", "-q"]).output().unwrap();
        if !out.status.success() {
            return Err(format!(
                "gocache scan failed: {}: {}",
                out.status,
                all_lines(&out)
            ));
        }
        let on_disk = walk(&self.cache());
        let (indexed, totals) = index_rows(&self.cache().join("gocache/index.sqlite"))
            .map_err(|e| format!("reading the index: {e}"))?;
        if on_disk != indexed {
            let missing = on_disk.keys().filter(|k| !indexed.contains_key(*k)).count();
            let stale = indexed.keys().filter(|k| !on_disk.contains_key(*k)).count();
            let sized = on_disk
                .iter()
                .filter(|(k, v)| indexed.get(*k).is_some_and(|i| i != *v))
                .count();
            return Err(format!(
                "index differs from the disk: {missing} missing, {stale} stale, {sized} sized wrong"
            ));
        }
        let rows: u64 = indexed.values().sum();
        if rows != totals {
            return Err(format!("running totals {totals} != rows {rows}"));
        }
        Ok(())
    }

    /// The four go commands of the loops; `i` picks one.
    fn go_command(i: u64) -> (&'static [&'static str], &'static str) {
        match i % 4 {
            0 => (
                &[
                    "build",
                    "-o",
                    "/dev/null",
                    "fmt",
                    "net/url",
                    "encoding/json",
                ],
                "hello",
            ),
            1 => (&["test", "-count=1", "."], "mathx"),
            2 => (&["vet", "."], "mathx"),
            _ => (&["run", "."], "hello"),
        }
    }

    /// Runs the four go commands once on the (backdated) cache and
    /// returns the bytes of the entries they used: what Go touched is
    /// newer than the three hours of the backdating.
    fn working_set(&self) -> u64 {
        let since = std::time::SystemTime::now() - Duration::from_secs(60);
        for i in 0..4 {
            let (args, dir) = Self::go_command(i);
            let out = self.go(args, &self.work.join(dir)).output().unwrap();
            assert!(
                out.status.success(),
                "go {args:?} failed before any trim: {}",
                all_lines(&out)
            );
        }
        walk_since(&self.cache(), since)
    }

    /// Two loops of go commands (half through `gocache go`) beside a loop
    /// of trims to a quarter of the commands' working set, with no grace:
    /// the trims remove entries go is about to read. Two rows: the go
    /// commands (a failure: a non-zero exit) and the trims (a failure:
    /// an exit other than 0, or 3 for "limits not met").
    fn trims_beside_go(&self, go_commands: u64) -> Vec<Row> {
        eprintln!("chaos: {go_commands} go commands beside trims: measuring the working set");
        self.fresh_cache(true);
        let working = self.working_set();
        let budget = (working / 4).max(1 << 20);
        eprintln!(
            "chaos: working set {:.1} MiB, trims to {:.1} MiB",
            mib(working),
            mib(budget)
        );
        let budget_arg = budget.to_string();
        let stop = AtomicBool::new(false);
        let (removed, removing, done) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
        let mut go_failures: Vec<String> = Vec::new();
        let (mut trims, mut trim_failures) = (0u64, Vec::new());
        let started = Instant::now();
        std::thread::scope(|s| {
            let loops: Vec<_> = (0..2u64)
                .map(|l| {
                    let n = go_commands / 2 + u64::from(l == 0) * (go_commands % 2);
                    let done = &done;
                    s.spawn(move || {
                        let mut failed = Vec::new();
                        for i in 0..n {
                            let (args, dir) = Self::go_command(i + l);
                            let dir = self.work.join(dir);
                            let via = if i % 2 == 0 { "go" } else { "gocache go" };
                            let out = if i % 2 == 0 {
                                self.go(args, &dir).output().unwrap()
                            } else {
                                let mut c = self.gocache(&["go"]);
                                c.args(args).current_dir(&dir);
                                c.output().unwrap()
                            };
                            if !out.status.success() {
                                failed.push(format!(
                                    "{via} {}: {}: {}",
                                    args.join(" "),
                                    out.status,
                                    all_lines(&out)
                                ));
                            }
                            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                            if d % 20 == 0 {
                                eprintln!("chaos: {d} go commands done");
                            }
                        }
                        failed
                    })
                })
                .collect();
            let trimmer = s.spawn(|| {
                let (mut n, mut failed) = (0u64, Vec::new());
                while !stop.load(Ordering::SeqCst) {
                    let out = self
                        .gocache(&["trim", "--json", "--budget", &budget_arg, "--grace", "0s"])
                        .output()
                        .unwrap();
                    n += 1;
                    // 3: the budget is not met (what go uses is protected).
                    match out.status.code() {
                        Some(0 | 3) => {
                            let v: serde_json::Value =
                                serde_json::from_slice(&out.stdout).unwrap_or_default();
                            let n = v["executed"]["removed"].as_u64().unwrap_or(0);
                            removed.fetch_add(n, Ordering::Relaxed);
                            removing.fetch_add(u64::from(n > 0), Ordering::Relaxed);
                        }
                        _ => failed.push(format!("trim {n}: {}: {}", out.status, all_lines(&out))),
                    }
                    // Paced, so the trims race the go commands rather
                    // than take a core from them.
                    std::thread::sleep(Duration::from_millis(200));
                }
                (n, failed)
            });
            for l in loops {
                go_failures.extend(l.join().unwrap());
            }
            stop.store(true, Ordering::SeqCst);
            (trims, trim_failures) = trimmer.join().unwrap();
        });
        let took = started.elapsed();
        vec![
            Row {
                experiment: "go build/test/vet/run beside trims".into(),
                trials: go_commands,
                failures: go_failures.len() as u64,
                notes: format!(
                    "half via `gocache go`; in {took:.0?}; working set {:.1} MiB",
                    mib(working)
                ),
                details: go_failures,
            },
            Row {
                experiment: format!("trim --budget {:.1}MiB --grace 0s beside go", mib(budget)),
                trials: trims,
                failures: trim_failures.len() as u64,
                // gocache never removes what was used within grace + Go's
                // 1 h mtime lag: once the first trim has taken the old
                // entries, the trims race go's writes and the index, not
                // the removal of what go is reading.
                notes: format!(
                    "{} trims removed {} entries in all (what go used in the last hour is protected)",
                    removing.load(Ordering::Relaxed),
                    removed.load(Ordering::Relaxed)
                ),
                details: trim_failures,
            },
        ]
    }

    /// Experiment 4 (see the module doc): a build held at its link step
    /// while the entries it looked up pass Go's hour, and a `--grace 0s`
    /// trim or hook (alternately) to 1 MiB then.
    fn at_gos_hour(&self, trials: u64, rng: &mut fastrand::Rng) -> Row {
        eprintln!("chaos: Go's hour: {trials} trials");
        let gate = self.work.join("gate");
        let script = self.work.join("gate.sh");
        std::fs::create_dir_all(&gate).unwrap();
        std::fs::write(
            &script,
            "#!/bin/sh\ncase \"$1\" in */link) case \"$*\" in *-V=full*) ;; *) : > \"$GATE/at-link\"; \
             i=0; while [ ! -e \"$GATE/go\" ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done ;; esac ;; esac\n\
             exec \"$@\"\n",
        )
        .unwrap();
        let _ = Command::new("chmod").arg("755").arg(&script).status();
        let hello = self.work.join("hello");
        let (mut details, mut bumped, mut removed_older) = (Vec::new(), 0u64, 0u64);
        let (mut via_trim, mut via_hook) = (0u64, 0u64);
        // A trial counts once go looked everything up before Go's hour;
        // one where go was slower (and moved the mtimes) is made again,
        // with a wider margin.
        let mut t = 0;
        while via_trim + via_hook < trials && bumped < 3 * trials {
            t += 1;
            if t > 1 && (via_trim + via_hook) % 5 == 0 {
                eprintln!(
                    "chaos: Go's hour: {} trials, {} failed",
                    via_trim + via_hook,
                    details.len()
                );
            }
            self.fresh_cache(true);
            // What the build uses, made fresh by a first build.
            let since = std::time::SystemTime::now() - Duration::from_secs(2);
            let out = self
                .go(&["build", "-o", "/dev/null", "."], &hello)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", all_lines(&out));
            let used: Vec<String> = walk_mtimes(&self.cache())
                .into_iter()
                .filter(|(_, m)| *m >= since)
                .map(|(n, _)| n)
                .collect();
            let margin = 10 + rng.u64(0..10) + 15 * bumped.min(4);
            let mtime = std::time::SystemTime::now() - Duration::from_secs(3600 - margin);
            set_mtimes(&self.cache(), &used, mtime);
            for f in ["at-link", "go"] {
                let _ = std::fs::remove_file(gate.join(f));
            }
            let mut c = self.go(
                &[
                    "build",
                    "-toolexec",
                    script.to_str().unwrap(),
                    "-o",
                    "/dev/null",
                    ".",
                ],
                &hello,
            );
            let mut build = c
                .env("GATE", &gate)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(300);
            while !gate.join("at-link").exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let now = walk_mtimes(&self.cache());
            if used.iter().any(|n| now.get(n) != Some(&mtime)) {
                // Go reached them past its hour and moved them: no trial.
                bumped += 1;
                std::fs::write(gate.join("go"), "").unwrap();
                let _ = build.wait();
                continue;
            }
            // Past Go's hour by 1 to 4 s.
            let past = mtime + Duration::from_secs(3601 + rng.u64(0..4));
            while std::time::SystemTime::now() < past {
                std::thread::sleep(Duration::from_millis(100));
            }
            let hook = (via_trim + via_hook) % 2 == 1;
            let args: &[&str] = if hook {
                &["hook", "--json", "--budget", "1MiB", "--grace", "0s"]
            } else {
                &["trim", "--json", "--budget", "1MiB", "--grace", "0s"]
            };
            let out = self.gocache(args).output().unwrap();
            if hook {
                via_hook += 1;
            } else {
                via_trim += 1;
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            removed_older += v["executed"]["removed"]
                .as_u64()
                .or(v["removed"].as_u64())
                .unwrap_or(0);
            if !matches!(out.status.code(), Some(0 | 3)) {
                details.push(format!("trial {t}: {}: {}", out.status, all_lines(&out)));
            }
            let left = walk_mtimes(&self.cache());
            let gone = used.iter().filter(|n| !left.contains_key(*n)).count();
            std::fs::write(gate.join("go"), "").unwrap();
            let out = build.wait_with_output().unwrap();
            if !out.status.success() || gone > 0 {
                details.push(format!(
                    "trial {t} ({}): {gone} of the build's {} entries removed; go build {}: {}",
                    if hook { "hook" } else { "trim" },
                    used.len(),
                    out.status,
                    all_lines(&out)
                ));
            }
        }
        Row {
            experiment: "--grace 0s trim/hook at Go's hour".into(),
            trials: via_trim + via_hook,
            failures: details.len() as u64,
            notes: format!(
                "{via_trim} trims, {via_hook} hooks while go waited to link; {} older entries removed a trial; {bumped} retried (Go moved the mtimes)",
                removed_older / (via_trim + via_hook).max(1)
            ),
            details,
        }
    }

    /// Experiment 5 (see the module doc).
    fn links_in_our_place(&self, trials: u64, rng: &mut fastrand::Rng) -> Row {
        eprintln!("chaos: gocache's place taken: {trials} trials");
        let outside = self.work.join("outside");
        let hello = self.work.join("hello");
        let setups = [
            "index link",
            "wal link",
            "directory link",
            "foreign file",
            "--index link",
        ];
        let mut counts = vec![0u64; setups.len()];
        let mut details = Vec::new();
        for t in 0..trials {
            let _ = std::fs::remove_dir_all(&outside);
            std::fs::create_dir_all(&outside).unwrap();
            let theirs = outside.join("app.db");
            let conn = rusqlite::Connection::open(&theirs).unwrap();
            conn.execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE notes (body TEXT); \
                 INSERT INTO notes VALUES ('theirs'); PRAGMA wal_checkpoint(TRUNCATE);",
            )
            .unwrap();
            drop(conn);
            let _ = std::fs::remove_file(outside.join("app.db-wal"));
            let _ = std::fs::remove_file(outside.join("app.db-shm"));
            self.fresh_cache(false);
            let own = self.cache().join("gocache");
            let k = rng.usize(0..setups.len());
            counts[k] += 1;
            let mut global: Vec<String> = Vec::new();
            match k {
                0 => {
                    std::fs::create_dir_all(&own).unwrap();
                    std::os::unix::fs::symlink(&theirs, own.join("index.sqlite")).unwrap();
                }
                1 => {
                    std::fs::create_dir_all(&own).unwrap();
                    std::os::unix::fs::symlink(&theirs, own.join("index.sqlite-wal")).unwrap();
                }
                2 => std::os::unix::fs::symlink(&outside, &own).unwrap(),
                3 => {
                    std::fs::create_dir_all(&own).unwrap();
                    std::fs::copy(&theirs, own.join("index.sqlite")).unwrap();
                }
                _ => {
                    let link = self.work.join("index-link.sqlite");
                    let _ = std::fs::remove_file(&link);
                    std::os::unix::fs::symlink(&theirs, &link).unwrap();
                    global = vec!["--index".into(), link.display().to_string()];
                }
            }
            let before = dir_state(&outside);
            let budget = (du(&self.cache()) / 2).to_string();
            let prog = format!("{} prog --budget {budget}", self.gocache.display());
            let mut steps: Vec<(String, Command, &[i32])> = Vec::new();
            let gc = |args: &[&str]| {
                let mut c = Command::new(&self.gocache);
                c.args(&global)
                    .args(args)
                    .current_dir(&hello)
                    .stdin(Stdio::null());
                self.env(&mut c);
                c
            };
            steps.push(("stats".into(), gc(&["stats"]), &[0]));
            steps.push(("trim".into(), gc(&["trim", "--budget", &budget]), &[0, 3]));
            steps.push(("hook".into(), gc(&["hook", "--budget", &budget]), &[0]));
            steps.push(("ci begin".into(), gc(&["ci", "begin"]), &[0]));
            steps.push((
                "gocache go build".into(),
                gc(&["go", "build", "-o", "/dev/null", "."]),
                &[0],
            ));
            let mut p = self.go(&["build", "-o", "/dev/null", "."], &hello);
            p.env("GOCACHEPROG", &prog);
            steps.push(("go build (prog)".into(), p, &[0]));
            steps.push((
                "ci end".into(),
                gc(&["ci", "end", "--budget", &budget]),
                &[0],
            ));
            steps.push(("go run".into(), self.go(&["run", "."], &hello), &[0]));
            for (name, mut c, ok) in steps {
                let out = c.output().unwrap();
                if !out.status.code().is_some_and(|code| ok.contains(&code))
                    || String::from_utf8_lossy(&out.stderr).contains("panicked")
                {
                    details.push(format!(
                        "trial {t} ({}): {name}: {}: {}",
                        setups[k],
                        out.status,
                        all_lines(&out)
                    ));
                }
            }
            if dir_state(&outside) != before {
                details.push(format!(
                    "trial {t} ({}): the directory outside the cache changed",
                    setups[k]
                ));
            }
        }
        Row {
            experiment: "gocache's place taken by a link or foreign db".into(),
            trials,
            failures: details.len() as u64,
            notes: setups
                .iter()
                .zip(&counts)
                .map(|(s, n)| format!("{s}: {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            details,
        }
    }

    fn fuzz_prog(&self, requests: u64, rng: &mut fastrand::Rng) -> Row {
        eprintln!("chaos: {requests} malformed GOCACHEPROG requests");
        self.fresh_cache(true);
        let mut exits: BTreeMap<String, u64> = BTreeMap::new();
        let mut failures = Vec::new();
        for n in 0..requests {
            if n > 0 && n % 500 == 0 {
                eprintln!("chaos: {n} streams, {} failed", failures.len());
            }
            let stream = fuzz_stream(rng);
            let mut c = self.gocache(&["prog"]);
            let mut child = c
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            // The server may stop reading at the bad request: a broken
            // pipe is its right.
            let writer = std::thread::spawn(move || {
                let _ = stdin.write_all(&stream);
            });
            // Read stderr as it comes: a server blocked writing to a full
            // pipe is not a hang of its own.
            let mut stderr = child.stderr.take().unwrap();
            let reader = std::thread::spawn(move || {
                let mut all = Vec::new();
                let _ = std::io::Read::read_to_end(&mut stderr, &mut all);
                String::from_utf8_lossy(&all).into_owned()
            });
            let deadline = Instant::now() + Duration::from_secs(20);
            let status = loop {
                if let Some(s) = child.try_wait().unwrap() {
                    break Some(s);
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    child.wait().unwrap();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            let _ = writer.join();
            let err = reader.join().unwrap_or_default();
            let what = match status {
                None => "hang".to_string(),
                Some(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
                    (Some(c), _) => format!("exit {c}"),
                    (_, Some(sig)) => format!("signal {sig}"),
                    _ => "?".into(),
                },
            };
            // A panic exits 101 and says "panicked"; a signal or a hang
            // is what go would see as a dead or stuck GOCACHEPROG.
            let bad = what == "hang"
                || what.starts_with("signal")
                || what == "exit 101"
                || err.contains("panicked");
            if bad {
                failures.push(format!(
                    "stream {n}: {what}: {}",
                    clip(&err.replace('\n', " | "))
                ));
            }
            *exits.entry(what).or_default() += 1;
        }
        Row {
            experiment: "malformed GOCACHEPROG requests".into(),
            trials: requests,
            failures: failures.len() as u64,
            notes: format!(
                "one per stream after valid ones; {}",
                exits
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            details: failures,
        }
    }
}

/// A GOCACHEPROG stream: one to three valid requests, one mutated, close.
fn fuzz_stream(rng: &mut fastrand::Rng) -> Vec<u8> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let id32 = |rng: &mut fastrand::Rng| -> Vec<u8> { (0..32).map(|_| rng.u8(..)).collect() };
    let mut out = Vec::new();
    let mut id = 1u64;
    let valid = |rng: &mut fastrand::Rng, id: u64| -> Vec<u8> {
        if rng.bool() {
            format!(
                "{{\"ID\":{id},\"Command\":\"get\",\"ActionID\":\"{}\"}}\n",
                b64(&id32(rng))
            )
            .into_bytes()
        } else {
            let body: Vec<u8> = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect();
            let out_id = sha2::Sha256::digest(&body);
            let mut s = format!(
                "{{\"ID\":{id},\"Command\":\"put\",\"ActionID\":\"{}\",\"OutputID\":\"{}\",\"BodySize\":{}}}\n",
                b64(&id32(rng)),
                b64(&out_id),
                body.len()
            );
            if !body.is_empty() {
                s.push_str(&format!("\"{}\"\n", b64(&body)));
            }
            s.into_bytes()
        }
    };
    for _ in 0..rng.usize(1..=3) {
        out.extend(valid(rng, id));
        id += 1;
    }
    let mut bad = valid(rng, id);
    match rng.u8(0..12) {
        // Flip a few bytes.
        0 => {
            for _ in 0..rng.usize(1..5) {
                let i = rng.usize(..bad.len());
                bad[i] = rng.u8(..);
            }
        }
        // Cut it short (a body may be left to read).
        1 => bad.truncate(rng.usize(..bad.len())),
        // Insert garbage.
        2 => {
            let i = rng.usize(..bad.len());
            let junk: Vec<u8> = (0..rng.usize(1..40)).map(|_| rng.u8(..)).collect();
            bad.splice(i..i, junk);
        }
        // Numbers out of range.
        3 => {
            let n = [
                "-1",
                "1e30",
                "18446744073709551616",
                "0",
                "1099511627776",
                "null",
                "\"7\"",
            ][rng.usize(..7)];
            bad = format!(
                "{{\"ID\":{n},\"Command\":\"get\",\"ActionID\":\"{}\"}}\n",
                b64(&id32(rng))
            )
            .into_bytes();
        }
        // A body size that lies.
        4 => {
            let size = ["-5", "1", "99999999", "1099511627776", "3.5"][rng.usize(..5)];
            bad = format!(
                "{{\"ID\":{id},\"Command\":\"put\",\"ActionID\":\"{}\",\"OutputID\":\"{}\",\"BodySize\":{size}}}\n\"{}\"\n",
                b64(&id32(rng)),
                b64(&id32(rng)),
                b64(b"abc")
            )
            .into_bytes();
        }
        // A body that is not base64, or not a string.
        5 => {
            bad = format!(
                "{{\"ID\":{id},\"Command\":\"put\",\"ActionID\":\"{}\",\"OutputID\":\"{}\",\"BodySize\":4}}\n{}\n",
                b64(&id32(rng)),
                b64(&id32(rng)),
                ["\"!!!!\"", "1234", "[\"QUJD\"]", "\"QUJD", ""][rng.usize(..5)]
            )
            .into_bytes();
        }
        // Wrong ID lengths and types.
        6 => {
            let action =
                [b64(&[1; 31]), b64(&[1; 33]), "".into(), "====".into()][rng.usize(..4)].clone();
            bad = format!("{{\"ID\":{id},\"Command\":\"get\",\"ActionID\":\"{action}\"}}\n")
                .into_bytes();
        }
        // Unknown or missing command, duplicate IDs.
        7 => {
            bad = [
                format!("{{\"ID\":{id},\"Command\":\"fly\"}}\n"),
                format!("{{\"ID\":{id}}}\n"),
                "{\"ID\":1,\"Command\":\"get\",\"ActionID\":\"AAAA\"}\n".into(),
                format!(
                    "{{\"ID\":{id},\"Command\":\"close\"}}\n{{\"ID\":{},\"Command\":\"get\"}}\n",
                    id + 1
                ),
            ][rng.usize(..4)]
            .clone()
            .into_bytes();
        }
        // Deep nesting, and not an object.
        8 => {
            let depth = rng.usize(100..20_000);
            bad = format!("{}{}\n", "[".repeat(depth), "]".repeat(depth)).into_bytes();
        }
        // Empty lines, NUL bytes, invalid UTF-8.
        9 => bad = [&b"\n\n"[..], b"\0\0\0\n", b"\xff\xfe{\"ID\":1}\n"][rng.usize(..3)].to_vec(),
        // A long line (well under any cap; no newline at the end).
        10 => bad = vec![b'a'; rng.usize(1 << 10..1 << 20)],
        // Extra fields and repeated keys.
        _ => {
            bad = format!(
                "{{\"ID\":{id},\"ID\":{},\"Command\":\"get\",\"Command\":\"put\",\"ActionID\":\"{}\",\"Extra\":{{\"a\":[1,2,3]}}}}\n",
                id + 1,
                b64(&id32(rng))
            )
            .into_bytes();
        }
    }
    out.extend(bad);
    out.extend(format!("{{\"ID\":{},\"Command\":\"close\"}}\n", id + 9).into_bytes());
    out
}

/// Waits up to `limit` for `child`; kills it and returns false past that.
fn wait_for(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// SIGKILLs every child of `parent` whose command is `name`; true if one
/// was running.
fn kill_children_named(parent: u32, name: &str) -> bool {
    let mut killed = false;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..."
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u32>().ok());
        if comm == name && ppid == Some(parent) {
            // SAFETY: kill(2) with a pid read from /proc; no memory involved.
            killed |= unsafe { libc::kill(pid, libc::SIGKILL) } == 0;
        }
    }
    killed
}

/// Every entry on disk, independent of gocache: name -> allocated bytes
/// (an executable directory: itself and the files in it).
fn walk(cache: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for sub in 0..256 {
        let Ok(rd) = std::fs::read_dir(cache.join(format!("{sub:02x}"))) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().into_string().unwrap_or_default();
            let entry = name.len() == 66
                && name[..64]
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                && (name.ends_with("-a") || name.ends_with("-d"));
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if !entry || !(md.is_file() || md.is_dir()) {
                continue;
            }
            let mut bytes = md.blocks() * 512;
            if md.is_dir() {
                let inner: Vec<_> = std::fs::read_dir(e.path()).unwrap().flatten().collect();
                if inner.len() != 1 {
                    continue; // not Go's layout: an odd item, not an entry
                }
                bytes += inner[0]
                    .path()
                    .symlink_metadata()
                    .map_or(0, |m| m.blocks() * 512);
            }
            out.insert(name, bytes);
        }
    }
    out
}

/// The index's entries (name -> allocated) and its running totals.
fn index_rows(index: &Path) -> rusqlite::Result<(BTreeMap<String, u64>, u64)> {
    let conn =
        rusqlite::Connection::open_with_flags(index, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = conn.prepare("SELECT name, allocated FROM entries")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?
        .collect::<rusqlite::Result<BTreeMap<_, _>>>()?;
    let totals: i64 = conn.query_row(
        "SELECT coalesce(sum(build_allocated + exe_allocated), 0) FROM subdirs",
        [],
        |r| r.get(0),
    )?;
    Ok((rows, totals as u64))
}

fn du(dir: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-s", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn backdate(cache: &Path, ago: Duration) {
    let when = std::time::SystemTime::now() - ago;
    let times = std::fs::FileTimes::new()
        .set_modified(when)
        .set_accessed(when);
    for sub in 0..256 {
        let Ok(rd) = std::fs::read_dir(cache.join(format!("{sub:02x}"))) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if let Ok(md) = p.symlink_metadata() {
                if md.is_dir() {
                    for inner in std::fs::read_dir(&p).unwrap().flatten() {
                        let _ = std::fs::File::open(inner.path()).map(|f| f.set_times(times));
                    }
                }
                if md.is_file() || md.is_dir() {
                    let _ = std::fs::File::open(&p).map(|f| f.set_times(times));
                }
            }
        }
    }
}

/// Every entry's name and mtime, by a walk independent of gocache.
fn walk_mtimes(cache: &Path) -> BTreeMap<String, std::time::SystemTime> {
    let mut out = BTreeMap::new();
    for sub in 0..256 {
        let Ok(rd) = std::fs::read_dir(cache.join(format!("{sub:02x}"))) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().into_string().unwrap_or_default();
            if name.len() == 66
                && (name.ends_with("-a") || name.ends_with("-d"))
                && let Ok(m) = e.path().symlink_metadata().and_then(|m| m.modified())
            {
                out.insert(format!("{sub:02x}/{name}"), m);
            }
        }
    }
    out
}

/// Sets the mtime of the entries `names` (and what an executable's
/// directory holds) to `when`.
fn set_mtimes(cache: &Path, names: &[String], when: std::time::SystemTime) {
    let times = std::fs::FileTimes::new()
        .set_modified(when)
        .set_accessed(when);
    for n in names {
        let p = cache.join(n);
        if p.is_dir() {
            for inner in std::fs::read_dir(&p).unwrap().flatten() {
                let _ = std::fs::File::open(inner.path()).map(|f| f.set_times(times));
            }
        }
        let _ = std::fs::File::open(&p).map(|f| f.set_times(times));
    }
}

/// Every file in `dir` with its bytes and mtime.
fn dir_state(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let Ok(m) = p.symlink_metadata() else {
            continue;
        };
        let bytes = if m.is_file() {
            std::fs::read(&p).unwrap_or_default()
        } else {
            Vec::new()
        };
        out.insert(p, (bytes, m.modified().unwrap()));
    }
    out
}

fn make_writable(dir: &Path) {
    let _ = Command::new("chmod")
        .args(["-R", "u+rwX"])
        .arg(dir)
        .status();
}

/// The command's stderr on one line (clipped), for a failure's details.
fn all_lines(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    clip(&err.lines().collect::<Vec<_>>().join(" | "))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// The allocated bytes of the entries modified since `since`.
fn walk_since(cache: &Path, since: std::time::SystemTime) -> u64 {
    let mut total = 0;
    for sub in 0..256 {
        let Ok(rd) = std::fs::read_dir(cache.join(format!("{sub:02x}"))) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.modified().is_ok_and(|m| m >= since) {
                total += md.blocks() * 512;
            }
        }
    }
    total
}

/// At most 400 characters of `s`, for a failure's details.
fn clip(s: &str) -> String {
    match s.char_indices().nth(400) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}
