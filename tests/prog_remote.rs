//! `gocache prog --remote`: the go command over a local cache (level one)
//! and a real three-node Garage cluster (level two), as a fleet uses it.
//!
//! Each test builds a small module of a few packages, never std: a machine
//! whose cache starts empty then builds the runtime once (about 15 s
//! here), and the others start from the template cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use gocache::remote::RemoteUrl;
use gocache::remote::store::{ObjectStore, PutBody, list_all};
use serde_json::Value;

use crate::support::garage::{GarageCluster, Key, REGION, clear_aws_env};
use crate::support::*;

/// A module of three packages: `main` imports `greet`, which imports
/// `calc`. Only builtins: on an empty cache the build compiles the
/// runtime and nothing else of std. `salt` changes what `calc` returns.
fn write_module(root: &Path, salt: u32) -> PathBuf {
    let dir = root.join("work/fleet");
    for (file, src) in [
        ("go.mod", "module example.com/fleet\n\ngo 1.24\n".to_owned()),
        (
            "calc/calc.go",
            format!("package calc\n\nfunc Add(a, b int) int {{ return a + b + {salt} }}\n"),
        ),
        (
            "greet/greet.go",
            "package greet\n\nimport \"example.com/fleet/calc\"\n\nfunc Sum() int { return calc.Add(2, 3) }\n"
                .to_owned(),
        ),
        (
            "main.go",
            "package main\n\nimport \"example.com/fleet/greet\"\n\nfunc main() { println(\"sum\", greet.Sum()) }\n"
                .to_owned(),
        ),
    ] {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, src).unwrap();
        // Dated back, so that go caches everything on the first build.
        let past = std::time::SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(past)
            .unwrap();
    }
    dir
}

/// Where a machine builds the module: one source directory for the whole
/// fleet (as a CI checkout at a fixed path), since Go's action IDs name
/// the package directory.
struct Fleet {
    src: tempfile::TempDir,
}

impl Fleet {
    fn new(salt: u32) -> Fleet {
        let src = tempfile::Builder::new()
            .prefix("gocache-fleet-")
            .tempdir()
            .unwrap();
        write_module(src.path(), salt);
        Fleet { src }
    }

    fn module(&self) -> PathBuf {
        self.src.path().join("work/fleet")
    }

    fn set_salt(&self, salt: u32) {
        write_module(self.src.path(), salt);
    }
}

/// `go build -o OUT .` of the fleet's module on machine `sb`, through
/// `gocache prog` with `prog_args`, the store's endpoint and region, and
/// `key` in the AWS variables.
fn build(
    sb: &Sandbox,
    fleet: &Fleet,
    out: &Path,
    prog_args: &[&str],
    env: &[(&str, String)],
) -> Command {
    let mut cmd = sb.go(["build", "-o"]);
    cmd.arg(out).arg(".").current_dir(fleet.module());
    let mut prog = format!("{} prog", gocache_bin().display());
    for a in prog_args {
        prog.push(' ');
        prog.push_str(a);
    }
    cmd.env("GOCACHEPROG", prog);
    clear_aws_env(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn remote_args(g: &GarageCluster, url: &RemoteUrl) -> Vec<String> {
    store_args(url, g.endpoint())
}

/// prog's arguments for the store `url` reached at `endpoint` (a node, or
/// a shaped link in front of one).
fn store_args(url: &RemoteUrl, endpoint: String) -> Vec<String> {
    vec![
        "--remote".into(),
        url.to_string(),
        "--endpoint".into(),
        endpoint,
        "--region".into(),
        REGION.into(),
    ]
}

fn creds(key: &Key) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", key.id.clone()),
        ("AWS_SECRET_ACCESS_KEY", key.secret.clone()),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The newest session `gocache stats --json` reports for `sb`.
fn last_session(sb: &Sandbox) -> Value {
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    s["prog_sessions"][0].clone()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn run_binary(path: &Path) -> String {
    let out = run_ok(Command::new(path));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The cache objects (`a/`, `o/`) and use logs under the prefix.
fn keys(store: &dyn ObjectStore) -> Vec<String> {
    list_all(store, "")
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect()
}

/// The listing once `n` use logs are there (each session writes its last
/// one right after go has its answer).
fn wait_for_logs(store: &dyn ObjectStore, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let listed = keys(store);
        if count_prefix(&listed, "uses/log-") >= n || start.elapsed() > Duration::from_secs(20) {
            assert_eq!(count_prefix(&listed, "uses/log-"), n, "{listed:?}");
            return listed;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count_prefix(keys: &[String], p: &str) -> usize {
    keys.iter().filter(|k| k.starts_with(p)).count()
}

#[test]
fn machine_b_builds_from_what_machine_a_uploaded_and_read_only_uploads_nothing() {
    let g = GarageCluster::shared();
    let (url, store) = g.fresh_prefix(&g.rw);
    let args = remote_args(g, &url);
    let fleet = Fleet::new(1);

    // Machine A: an empty cache; everything it builds goes up.
    let a = Sandbox::new();
    let a_bin = a.root().join("fleet-a");
    let out = run_ok(build(&a, &fleet, &a_bin, &strs(&args), &creds(&g.rw)));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("gocache prog: remote {url}")),
        "one summary line: {err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let sa = last_session(&a);
    assert_eq!(sa["remote"]["hits"], 0, "{sa}");
    let puts = sa["puts"].as_u64().unwrap();
    assert!(puts > 10, "{sa}");
    assert_eq!(sa["remote"]["uploaded"].as_u64().unwrap(), puts, "{sa}");
    assert_eq!(sa["remote"]["dropped"], 0, "{sa}");
    // The session's use log is written just after go has its answer.
    let listed = wait_for_logs(&store, 1);
    assert_eq!(count_prefix(&listed, "a/") as u64, puts, "{listed:?}");

    // Machine B: another empty cache; every get it makes is a remote hit
    // (no prefetch from A's manifest here: the get's own fetch is what
    // this checks; the prefetch has a test of its own).
    let b = Sandbox::new();
    let b_bin = b.root().join("fleet-b");
    let t = Instant::now();
    let mut b_args = args.clone();
    b_args.extend(["--remote-prefetch".to_owned(), "0".to_owned()]);
    run_ok(build(&b, &fleet, &b_bin, &strs(&b_args), &creds(&g.rw)));
    let b_took = t.elapsed();
    let sb_ = last_session(&b);
    assert_eq!(sb_["hits"], 0, "level one was empty: {sb_}");
    // Every compile is a remote hit; the link step's one entry is keyed by
    // the machine's own paths too (-o), so B may make it itself.
    let (remote_hits, b_puts) = (
        sb_["remote"]["hits"].as_u64().unwrap(),
        sb_["puts"].as_u64().unwrap(),
    );
    assert!(b_puts <= 1, "nothing but the link rebuilt: {sb_}");
    assert_eq!(
        remote_hits + b_puts,
        sb_["misses"].as_u64().unwrap(),
        "every other local miss served by the store: {sb_}"
    );
    assert!(
        remote_hits + 1 >= sa["misses"].as_u64().unwrap(),
        "{sa} {sb_}"
    );
    assert_eq!(sb_["remote"]["refused"], 0, "{sb_}");
    assert_eq!(
        std::fs::read(&a_bin).unwrap(),
        std::fs::read(&b_bin).unwrap(),
        "the same binary"
    );
    assert_eq!(run_binary(&b_bin), "sum 6\n");
    eprintln!("machine B built from the store in {b_took:?}");
    // What B fetched is in its level one, in Go's layout: plain go (no
    // GOCACHEPROG) rebuilds nothing from it.
    let mut plain = b.go(["build", "-v", "-o"]);
    plain
        .arg(b.root().join("fleet-plain"))
        .arg(".")
        .current_dir(fleet.module());
    let out = run_ok(plain);
    assert_eq!(stderr(&out), "", "plain go rebuilt something");

    // Machine C, read-only, with a changed package: it fetches what is
    // there, builds the rest locally, and writes nothing to the store.
    fleet.set_salt(2);
    wait_for_logs(&store, 2);
    let before = list_all(&store, "").unwrap();
    let c = Sandbox::new();
    let c_bin = c.root().join("fleet-c");
    let mut ro_args = args.clone();
    ro_args.push("--remote-read-only".into());
    run_ok(build(&c, &fleet, &c_bin, &strs(&ro_args), &creds(&g.ro)));
    assert_eq!(run_binary(&c_bin), "sum 7\n");
    let sc = last_session(&c);
    // From the store: fetched by its gets, or prefetched (A's manifest)
    // and then local hits.
    assert!(
        sc["remote"]["hits"].as_u64().unwrap() + sc["hits"].as_u64().unwrap() > 10,
        "{sc}"
    );
    assert!(sc["puts"].as_u64().unwrap() >= 2, "calc and greet: {sc}");
    assert_eq!(sc["remote"]["uploaded"], 0, "{sc}");
    assert_eq!(sc["remote"]["errors"], 0, "{sc}");
    assert_eq!(
        list_all(&store, "").unwrap(),
        before,
        "read-only mode wrote to the store"
    );
}

#[test]
fn a_corrupt_object_is_refused_reported_once_and_rebuilt_correctly() {
    let g = GarageCluster::shared();
    let (url, store) = g.fresh_prefix(&g.rw);
    let args = remote_args(g, &url);
    let fleet = Fleet::new(3);
    let a = Sandbox::with_template();
    let a_bin = a.root().join("fleet-a");
    run_ok(build(&a, &fleet, &a_bin, &strs(&args), &creds(&g.rw)));
    // Every output A uploaded (the module's packages), in either form
    // (as it is, or compressed), overwritten with other bytes: a bucket
    // someone wrote into.
    let outputs: Vec<String> = keys(&store)
        .into_iter()
        .filter(|k| k.starts_with("o/") || k.starts_with("z/"))
        .collect();
    assert!(outputs.len() >= 3, "{outputs:?}");
    for k in &outputs {
        store
            .put(k, PutBody::Bytes(b"package evil; not what the name says"))
            .unwrap();
    }
    let b = Sandbox::with_template();
    let b_bin = b.root().join("fleet-b");
    let out = run_ok(build(&b, &fleet, &b_bin, &strs(&args), &creds(&g.rw)));
    let err = stderr(&out);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "one warning: {err}");
    assert!(warnings[0].contains("is corrupt"), "{err}");
    assert!(
        outputs.iter().any(|k| warnings[0].contains(k.as_str())),
        "names the object: {err}"
    );
    assert!(warnings[0].contains("refused"), "{err}");
    let s = last_session(&b);
    assert_eq!(s["remote"]["hits"], 0, "{s}");
    // Every local miss found its action entry and a bad output (but the
    // link's, which is keyed by the machine's own paths).
    assert_eq!(
        s["remote"]["refused"].as_u64().unwrap() + s["remote"]["misses"].as_u64().unwrap(),
        s["misses"].as_u64().unwrap(),
        "{s}"
    );
    assert!(s["remote"]["refused"].as_u64().unwrap() >= 3, "{s}");
    assert!(s["puts"].as_u64().unwrap() >= 3, "rebuilt locally: {s}");
    assert_eq!(run_binary(&b_bin), "sum 8\n");
    assert_eq!(
        std::fs::read(&a_bin).unwrap(),
        std::fs::read(&b_bin).unwrap()
    );
    // Nothing unverified reached level one: every output there has the
    // SHA-256 its name says.
    for (name, path) in level_one(&b.cache()) {
        // (Directories are cached executables, from the template.)
        if let Some(hex) = name.strip_suffix("-d")
            && std::fs::symlink_metadata(&path).unwrap().is_file()
        {
            use sha2::Digest;
            let sum = sha2::Sha256::digest(std::fs::read(&path).unwrap());
            let got: String = sum.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(got, hex, "{name}");
        }
    }
}

#[test]
fn wrong_credentials_or_a_down_store_give_one_warning_and_a_local_build() {
    let g = GarageCluster::shared();
    let url = g.fresh_url();
    let args = remote_args(g, &url);
    let fleet = Fleet::new(4);
    let wrong = Key {
        id: g.rw.id.clone(),
        secret: "0".repeat(64),
    };
    let sb = Sandbox::with_template();
    let bin = sb.root().join("fleet");
    let out = run_ok(build(&sb, &fleet, &bin, &strs(&args), &creds(&wrong)));
    let err = stderr(&out);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("check the credentials"), "{err}");
    assert!(warnings[0].contains("local cache only"), "{err}");
    assert_eq!(run_binary(&bin), "sum 9\n");
    let s = last_session(&sb);
    assert_eq!(s["remote"]["uploaded"], 0, "{s}");
    assert!(s["puts"].as_u64().unwrap() >= 3, "{s}");

    // Nothing listening: one warning, a local build, no wait beyond the
    // store's timeouts.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    fleet.set_salt(5);
    let down = [
        "--remote",
        &url.to_string(),
        "--endpoint",
        &endpoint,
        "--region",
        REGION,
    ]
    .map(str::to_owned);
    let sb = Sandbox::with_template();
    let t = Instant::now();
    let out = run_ok(build(&sb, &fleet, &bin, &strs(&down), &creds(&g.rw)));
    let took = t.elapsed();
    let err = stderr(&out);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("is the store up"), "{err}");
    assert_eq!(
        warnings[0].matches("Connection refused").count(),
        1,
        "the cause once: {err}"
    );
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert_eq!(run_binary(&bin), "sum 10\n");
}

#[test]
fn builds_succeed_while_a_store_node_dies_and_a_trim_runs_beside_them() {
    // A cluster of its own: this test kills its nodes.
    let g = GarageCluster::start();
    let (url, store) = g.fresh_prefix(&g.rw);
    let args = remote_args(&g, &url);
    let fleet = Fleet::new(11);

    // A trim with a tiny budget and no grace period, over and over, while
    // two machines build (uploading and fetching) at once.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trims = {
        let (stop, url) = (stop.clone(), url.to_string());
        let env = g.env(&g.rw);
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut cmd = Command::new(gocache_bin());
                cmd.args(["remote", "trim", &url, "--budget", "1KiB", "--grace", "0s"]);
                for (k, v) in &env {
                    cmd.env(k, v);
                }
                let out = cmd.output().unwrap();
                // 0, or 3 when a log written meanwhile is over the budget.
                assert!(
                    matches!(out.status.code(), Some(0 | 3)),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                n += 1;
            }
            n
        })
    };
    let machines: Vec<Sandbox> = (0..2).map(|_| Sandbox::with_template()).collect();
    for round in 0..2u32 {
        fleet.set_salt(11 + round);
        let builds: Vec<_> = machines
            .iter()
            .enumerate()
            .map(|(i, sb)| {
                build(
                    sb,
                    &fleet,
                    &sb.root().join(format!("fleet-{round}-{i}")),
                    &strs(&args),
                    &creds(&g.rw),
                )
                .spawn()
                .unwrap()
            })
            .collect();
        for b in builds {
            let out = b.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        }
        for (i, sb) in machines.iter().enumerate() {
            let bin = sb.root().join(format!("fleet-{round}-{i}"));
            assert_eq!(run_binary(&bin), format!("sum {}\n", 16 + round));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(trims.join().unwrap() >= 1);

    // Kill a node (not the one prog talks to) while a machine builds.
    fleet.set_salt(20);
    let a = Sandbox::with_template();
    let a_bin = a.root().join("fleet-a");
    let child = build(&a, &fleet, &a_bin, &strs(&args), &creds(&g.rw))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    g.kill(2);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_binary(&a_bin), "sum 25\n");
    // Two of three nodes hold a quorum: machine B gets remote hits.
    let b = Sandbox::with_template();
    let b_bin = b.root().join("fleet-b");
    let out = run_ok(build(&b, &fleet, &b_bin, &strs(&args), &creds(&g.rw)));
    assert_eq!(run_binary(&b_bin), "sum 25\n");
    let s = last_session(&b);
    // Fetched by its gets, or prefetched from A's manifest and then used.
    let prefetched_used = prefetched(&stderr(&out)).map_or(0, |p| p.2);
    assert!(
        s["remote"]["hits"].as_u64().unwrap() + prefetched_used >= 3,
        "{s} {}",
        stderr(&out)
    );
    // A second node gone: no quorum. The build still succeeds, locally.
    g.kill(1);
    fleet.set_salt(21);
    let c = Sandbox::with_template();
    let c_bin = c.root().join("fleet-c");
    let t = Instant::now();
    let out = run_ok(build(&c, &fleet, &c_bin, &strs(&args), &creds(&g.rw)));
    eprintln!(
        "without a quorum: {:?}, stderr: {}",
        t.elapsed(),
        stderr(&out)
    );
    assert_eq!(run_binary(&c_bin), "sum 26\n");
    drop(store);
}

#[test]
fn over_a_slow_link_machine_b_builds_from_compressed_objects_and_a_reset_costs_one_warning() {
    use crate::support::shaped::{Fault, Shape, ShapedLink};
    let g = GarageCluster::shared();
    let (url, store) = g.fresh_prefix(&g.rw);
    let fleet = Fleet::new(20);
    // Machine A uploads compressed objects (the default).
    let a = Sandbox::with_template();
    let a_bin = a.root().join("fleet-a");
    run_ok(build(
        &a,
        &fleet,
        &a_bin,
        &strs(&remote_args(g, &url)),
        &creds(&g.rw),
    ));
    let listed = wait_for_logs(&store, 1);
    assert!(count_prefix(&listed, "z/") >= 3, "compressed: {listed:?}");

    // Machine B reaches the store over 20 ms and 100 Mbit/s. Each get
    // fetches for itself here (no prefetch of A's session manifest, which
    // would race the gets for the same entries): this is the get path
    // over a slow link; the prefetch's is
    // `over_a_slow_link_the_session_manifest_is_prefetched_...`.
    let node0 = g.endpoint().trim_start_matches("http://").parse().unwrap();
    let link = ShapedLink::start(node0, Shape::new(20, 100)).unwrap();
    let mut via_link = store_args(&url, link.endpoint());
    via_link.extend(["--remote-prefetch".into(), "0".into()]);
    let b = Sandbox::with_template();
    let b_bin = b.root().join("fleet-b");
    let out = run_ok(build(&b, &fleet, &b_bin, &strs(&via_link), &creds(&g.rw)));
    let err = stderr(&out);
    assert!(!err.contains("warning"), "{err}");
    let s = last_session(&b);
    assert!(s["remote"]["hits"].as_u64().unwrap() >= 3, "{s}");
    assert_eq!(s["remote"]["refused"], 0, "{s}");
    assert_eq!(s["remote"]["errors"], 0, "{s}");
    assert!(link.bytes_down() > 0);
    assert_eq!(
        std::fs::read(&a_bin).unwrap(),
        std::fs::read(&b_bin).unwrap()
    );

    // Machine C: the link resets a connection in the middle of an answer.
    // One warning, the tier pauses, the build is local and correct.
    let c = Sandbox::with_template();
    let c_bin = c.root().join("fleet-c");
    link.arm(Fault::Reset { after: 600 });
    let out = run_ok(build(&c, &fleet, &c_bin, &strs(&via_link), &creds(&g.rw)));
    assert_eq!(link.faults_fired(), 1);
    let err = stderr(&out);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("asked again in 30 s"), "{err}");
    let s = last_session(&c);
    assert_eq!(
        s["remote"]["refused"], 0,
        "a reset is not a bad object: {s}"
    );
    assert_eq!(
        std::fs::read(&a_bin).unwrap(),
        std::fs::read(&c_bin).unwrap()
    );
    assert_eq!(run_binary(&c_bin), "sum 25\n");
}

/// The listing once a key starting with `p` is there (a session writes
/// its manifest right after go has its answer).
fn wait_for_prefix(store: &dyn ObjectStore, p: &str) -> Vec<String> {
    let start = Instant::now();
    loop {
        let listed = keys(store);
        if count_prefix(&listed, p) > 0 || start.elapsed() > Duration::from_secs(20) {
            assert!(count_prefix(&listed, p) > 0, "no {p}: {listed:?}");
            return listed;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The fleet module's manifest as the store holds it.
fn manifest_of(
    store: &dyn ObjectStore,
    fleet: &Fleet,
) -> Option<gocache::remote::manifest::Manifest> {
    use gocache::remote::manifest::{BuildKey, read};
    let key = BuildKey::of_build(&fleet.module(), |n| std::env::var(n).ok());
    read(store, &key).unwrap()
}

/// `(prefetched, planned, used by go)` from the summary line.
fn prefetched(err: &str) -> Option<(u64, u64, u64)> {
    let rest = err.split("; prefetched ").nth(1)?;
    let n: Vec<u64> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    // "F of P in the manifest (B KiB), U used by go, M not fetched"
    Some((n[0], n[1], *n.get(n.len().saturating_sub(2))?))
}

#[test]
fn over_a_slow_link_the_session_manifest_is_prefetched_and_a_stall_or_reset_mid_prefetch_costs_one_warning()
 {
    use crate::support::shaped::{Fault, Shape, ShapedLink};
    let g = GarageCluster::shared();
    let (url, store) = g.fresh_prefix(&g.rw);
    let fleet = Fleet::new(30);
    // Machine A starts empty, builds and uploads everything (the runtime
    // too); at close it writes its manifest.
    let a = Sandbox::new();
    let a_bin = a.root().join("fleet-a");
    let out = run_ok(build(
        &a,
        &fleet,
        &a_bin,
        &strs(&remote_args(g, &url)),
        &creds(&g.rw),
    ));
    assert!(prefetched(&stderr(&out)).is_none(), "no manifest yet");
    let listed = wait_for_prefix(&store, "m/");
    assert_eq!(count_prefix(&listed, "m/"), 1, "{listed:?}");
    let m = manifest_of(&store, &fleet).unwrap();
    assert!(m.entries.len() >= 3, "{m:?}");

    // Machine B, over 20 ms and 100 Mbit/s: the manifest's entries arrive
    // ahead of go's gets, which find them in level one.
    let node0 = g.endpoint().trim_start_matches("http://").parse().unwrap();
    let link = ShapedLink::start(node0, Shape::new(20, 100)).unwrap();
    let via_link = store_args(&url, link.endpoint());
    let b = Sandbox::with_template();
    let b_bin = b.root().join("fleet-b");
    let out = run_ok(build(&b, &fleet, &b_bin, &strs(&via_link), &creds(&g.rw)));
    let err = stderr(&out);
    assert!(!err.contains("warning"), "{err}");
    let (fetched, planned, used) = prefetched(&err).unwrap_or_else(|| panic!("{err}"));
    assert!(fetched >= 3 && planned >= fetched, "{err}");
    assert!(used >= 3, "go used what was prefetched: {err}");
    let s = last_session(&b);
    assert!(
        s["puts"].as_u64().unwrap() <= 1,
        "nothing but the link: {s}"
    );
    assert_eq!(s["remote"]["refused"], 0, "{s}");
    assert_eq!(s["remote"]["errors"], 0, "{s}");
    assert_eq!(
        std::fs::read(&a_bin).unwrap(),
        std::fs::read(&b_bin).unwrap()
    );
    // Nothing but Go's layout in level one: no temp file left.
    for (name, _) in level_one(&b.cache()) {
        assert!(name.ends_with("-a") || name.ends_with("-d"), "{name}");
    }

    // Machines C and D start empty, so their prefetch brings the runtime
    // too (megabytes, A uploaded it): the link stalls, then resets, a
    // connection in the middle of it. At most one warning each, and a
    // correct build.
    for (i, fault) in [
        Fault::Stall { after: 100_000 },
        Fault::Reset { after: 100_000 },
    ]
    .into_iter()
    .enumerate()
    {
        let c = Sandbox::new();
        let c_bin = c.root().join("fleet-c");
        link.arm(fault);
        let t = Instant::now();
        let out = run_ok(build(&c, &fleet, &c_bin, &strs(&via_link), &creds(&g.rw)));
        let err = stderr(&out);
        eprintln!("{fault:?}: {:?}\n{err}", t.elapsed());
        assert_eq!(link.faults_fired(), i as u64 + 1, "{err}");
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
        assert_eq!(warnings.len(), 1, "{err}");
        assert!(warnings[0].contains("asked again in 30 s"), "{err}");
        let (fetched, planned, _) = prefetched(&err).unwrap_or_else(|| panic!("{err}"));
        assert!(fetched < planned, "the fault cut the prefetch short: {err}");
        assert_eq!(run_binary(&c_bin), "sum 35\n");
        assert_eq!(
            std::fs::read(&a_bin).unwrap(),
            std::fs::read(&c_bin).unwrap()
        );
    }

    // The manifest is the trim's to count, never to delete, and stats
    // report it.
    let env = g.env(&g.rw);
    let mut trim = Command::new(gocache_bin());
    trim.args([
        "remote",
        "trim",
        &url.to_string(),
        "--budget",
        "1KiB",
        "--grace",
        "0s",
    ]);
    let mut st = Command::new(gocache_bin());
    st.args(["remote", "stats", "--json", &url.to_string()]);
    for cmd in [&mut trim, &mut st] {
        clear_aws_env(cmd);
        for (k, v) in &env {
            cmd.env(k, v);
        }
    }
    let out = trim.output().unwrap();
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", stderr(&out));
    assert_eq!(count_prefix(&keys(&store), "m/"), 1);
    let stats = json(&run_ok(st));
    assert_eq!(stats["manifests"]["objects"], 1, "{stats}");
    assert!(stats["manifests"]["bytes"].as_u64().unwrap() > 0, "{stats}");
    assert!(
        stats["prefix_bytes"].as_u64().unwrap() > stats["stored_bytes"].as_u64().unwrap(),
        "{stats}"
    );
}

/// The prefetch brings what level one lacks and leaves the rest alone: on
/// a warm machine it reads nothing and, above all, marks nothing used.
/// Go's own trim (and gocache's) goes by the mtimes, so an entry the
/// manifest names but this go command never asked for must keep its age.
#[test]
fn the_prefetch_on_a_warm_machine_marks_nothing_used_that_go_did_not_ask_for() {
    let g = GarageCluster::shared();
    let (url, store) = g.fresh_prefix(&g.rw);
    let fleet = Fleet::new(41);
    let args = remote_args(g, &url);
    let a = Sandbox::with_template();
    let bin = a.root().join("fleet-a");
    run_ok(build(&a, &fleet, &bin, &strs(&args), &creds(&g.rw)));
    wait_for_prefix(&store, "m/");
    let named = manifest_of(&store, &fleet).unwrap().entries.len();

    // Hours later, a go command of the same module (the same manifest)
    // that needs one package of it.
    backdate(&a.cache(), Duration::from_secs(2 * 3600));
    let mut cmd = a.go(["build", "./calc"]);
    cmd.current_dir(fleet.module());
    cmd.env(
        "GOCACHEPROG",
        format!("{} prog {}", gocache_bin().display(), args.join(" ")),
    );
    clear_aws_env(&mut cmd);
    for (k, v) in creds(&g.rw) {
        cmd.env(k, v);
    }
    let err = stderr(&run_ok(cmd));
    // Level one had everything: nothing queued, so no prefetch line.
    assert_eq!(prefetched(&err), None, "{err}");
    assert!(named > 20, "{named}");
    let gets = last_session(&a)["gets"].as_u64().unwrap() as usize;

    // An hour is Go's lag before it marks a file used again: what was
    // marked now is what this go command looked up.
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let fresh: Vec<String> = level_one(&a.cache())
        .into_iter()
        .filter(|(_, p)| std::fs::symlink_metadata(p).unwrap().modified().unwrap() > hour_ago)
        .map(|(name, _)| name)
        .collect();
    assert!(
        fresh.len() <= 2 * gets && gets * 4 < named,
        "{} entries marked used for {gets} gets; the manifest names {named}: {fresh:?}",
        fresh.len()
    );
}

/// One session of `gocache prog` with `args` on `sb`'s cache, asking as
/// go asks: a get of each of `actions` (each a miss), then close.
/// Sends `actions` as gets (each a miss) and a close to one `gocache
/// prog` session; returns what it printed on stderr.
fn prog_gets(
    sb: &Sandbox,
    args: &[String],
    env: &[(&str, String)],
    actions: &[[u8; 32]],
) -> String {
    use base64::Engine;
    use std::io::Write;
    std::fs::create_dir_all(sb.cache()).unwrap();
    let mut cmd = sb.gocache(["prog"]);
    cmd.args(args);
    clear_aws_env(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (mut child, mut out) = spawn_prog_with(cmd);
    let mut input = child.stdin.take().unwrap();
    for (i, a) in actions.iter().enumerate() {
        let id = base64::engine::general_purpose::STANDARD.encode(a);
        writeln!(
            input,
            "{{\"ID\":{},\"Command\":\"get\",\"ActionID\":\"{id}\"}}",
            i + 1
        )
        .unwrap();
        let v = read_response(&mut out);
        assert_eq!(v["Miss"], true, "{v}");
    }
    writeln!(
        input,
        "{{\"ID\":{},\"Command\":\"close\"}}",
        actions.len() + 1
    )
    .unwrap();
    read_response(&mut out);
    drop(input);
    let done = child.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", stderr(&done));
    stderr(&done)
}

/// What the store lacks and go does not store (go looks up some entries
/// it never puts: the compiler's output kept beside an action when there
/// was none, a link it does not cache) is asked of the store once a day,
/// not in every go command: each is a round trip go waits for.
#[test]
fn a_lookup_the_store_lacks_and_go_never_stores_is_not_asked_again_for_a_day() {
    let g = GarageCluster::shared();
    let (url, _store) = g.fresh_prefix(&g.rw);
    let args = remote_args(g, &url);
    let sb = Sandbox::new();
    let never = [7u8; 32];
    let remote_misses = || last_session(&sb)["remote"]["misses"].as_u64().unwrap();
    let not_asked = "1 not asked (the store lacked them lately, go stores none)";
    // Asked, the store lacks it, and nothing is put.
    let said = prog_gets(&sb, &args, &creds(&g.rw), &[never]);
    assert_eq!(remote_misses(), 1, "{}", last_session(&sb));
    assert!(
        said.contains("1 misses") && !said.contains("not asked"),
        "{said}"
    );
    // The next session answers the miss without asking; having asked the
    // store nothing, it prints no summary.
    let said = prog_gets(&sb, &args, &creds(&g.rw), &[never]);
    let s = last_session(&sb);
    assert_eq!((s["misses"].as_u64(), remote_misses()), (Some(1), 0), "{s}");
    assert!(!said.contains("remote"), "{said}");
    // One that asks for something else too says what it did not ask.
    let said = prog_gets(&sb, &args, &creds(&g.rw), &[never, [8u8; 32]]);
    let s = last_session(&sb);
    assert_eq!((s["misses"].as_u64(), remote_misses()), (Some(2), 1), "{s}");
    assert!(said.contains(not_asked), "{said}");
    // A day later the store is asked again (another machine may have
    // stored it after all).
    let mut later = creds(&g.rw);
    later.push(("GOCACHE_TEST_NOW_OFFSET", (25 * 3600).to_string()));
    prog_gets(&sb, &args, &later, &[never]);
    assert_eq!(remote_misses(), 1, "{}", last_session(&sb));
}

/// A machine whose level one lost part of what its manifest names (a trim,
/// `go clean`, a partly restored CI cache): the prefetch waits for go's
/// first miss of one of them instead of looking up every entry at start
/// (a warm machine never gives that sign), and everything lost comes back
/// from the store: nothing is rebuilt.
#[test]
fn a_machine_that_lost_part_of_its_manifest_gets_it_back_without_a_rebuild() {
    let g = GarageCluster::shared();
    let (url, store) = g.fresh_prefix(&g.rw);
    let fleet = Fleet::new(47);
    let args = remote_args(g, &url);
    // Empty at first, so that everything it uses went up.
    let a = Sandbox::new();
    let bin = a.root().join("fleet-a");
    run_ok(build(&a, &fleet, &bin, &strs(&args), &creds(&g.rw)));
    let first = std::fs::read(&bin).unwrap();
    wait_for_prefix(&store, "m/");
    let m = manifest_of(&store, &fleet).unwrap();
    assert!(m.entries.len() > 20, "{m:?}");

    // Every other entry of the manifest's later half loses its action
    // file: go's first gets are hits, so the manifest is most likely read
    // before the first miss, and the plan waits for it.
    let mut lost = 0;
    for e in m.entries.iter().skip(m.entries.len() / 2).step_by(2) {
        let hex = e.action.to_string();
        let p = a.cache().join(&hex[..2]).join(format!("{hex}-a"));
        if std::fs::remove_file(&p).is_ok() {
            lost += 1;
        }
    }
    assert!(lost > 5, "{lost}");

    let out = run_ok(build(&a, &fleet, &bin, &strs(&args), &creds(&g.rw)));
    let err = stderr(&out);
    assert!(!err.contains("warning"), "{err}");
    let s = last_session(&a);
    assert!(
        s["puts"].as_u64().unwrap() <= 1,
        "nothing but the link: {s}"
    );
    let remote_hits = s["remote"]["hits"].as_u64().unwrap();
    assert_eq!(
        remote_hits,
        s["misses"].as_u64().unwrap(),
        "every local miss served by the store: {s}\n{err}"
    );
    // What go did not take itself before the plan was made is planned:
    // the plan came, at go's first miss of an entry the manifest names.
    let (_, planned, _) = prefetched(&err).unwrap_or_else(|| panic!("{err}"));
    assert!(planned + remote_hits >= lost, "{lost} lost: {s}\n{err}");
    assert_eq!(std::fs::read(&bin).unwrap(), first);
}

/// A warm build run again costs the store nothing: level one misses
/// nothing the store could have, so the manifest is neither read nor
/// written, and the uses are the set this machine reported minutes ago,
/// so no use log goes up either. Fifteen minutes later the same build
/// reports them again: the fleet's last use moves on, and a trim (whose
/// grace period is an hour) keeps what is in use.
#[test]
fn a_warm_build_run_again_sends_the_store_nothing() {
    use crate::support::shaped::{Shape, ShapedLink};
    let g = GarageCluster::shared();
    let (url, store) = g.fresh_prefix(&g.rw);
    let fleet = Fleet::new(53);
    let a = Sandbox::with_template();
    let bin = a.root().join("fleet-a");
    // go waits for the wrapper's output to close, so for prog to have
    // exited: what it sends after go has its answer is sent by then.
    let wrapper = a.root().join("until-prog-exits.sh");
    std::fs::write(&wrapper, "\"$@\"\n").unwrap();
    let waiting = |args: &[String], env: &[(&str, String)]| {
        let mut cmd = build(&a, &fleet, &bin, &strs(args), &creds(&g.rw));
        // `build`'s GOCACHEPROG, run by the wrapper.
        let prog = cmd
            .get_envs()
            .find(|(k, _)| *k == "GOCACHEPROG")
            .and_then(|(_, v)| v)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        cmd.env(
            "GOCACHEPROG",
            format!("/bin/sh {} {prog}", wrapper.display()),
        );
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_ok(cmd)
    };
    let logs = || list_all(&store, "uses/log-").unwrap().len();
    // Every build through a link that counts what crosses it (the store
    // as this machine names it: its uses and absences are kept per store).
    let node0 = g.endpoint().trim_start_matches("http://").parse().unwrap();
    let link = ShapedLink::start(node0, Shape::none()).unwrap();
    let args = store_args(&url, link.endpoint());
    // The first build uploads what it built; the second, warm, reports
    // its uses (a set this machine has not reported yet).
    waiting(&args, &[]);
    assert!(!wait_for_prefix(&store, "m/").is_empty());
    waiting(&args, &[]);
    let logs_before = logs();
    assert!(logs_before >= 1, "{logs_before}");

    // The third sends nothing.
    let sent = (link.connections(), link.bytes_up(), link.bytes_down());
    let err = stderr(&waiting(&args, &[]));
    assert_eq!(
        (link.connections(), link.bytes_up(), link.bytes_down()),
        sent,
        "a warm build run again asked the store something: {err}"
    );
    assert_eq!(run_binary(&bin), "sum 58\n");
    assert_eq!(logs(), logs_before);

    // Sixteen minutes on, the same build reports its uses again.
    let later = [("GOCACHE_TEST_NOW_OFFSET", (16 * 60).to_string())];
    waiting(&args, &later);
    assert!(link.bytes_up() > sent.1);
    assert_eq!(logs(), logs_before + 1, "one log, with the later uses");
}
