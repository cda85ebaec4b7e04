//! A real, distributed S3 store for the tests: Garage, as a three-node
//! cluster on 127.0.0.1.
//!
//! Garage is AGPL, so it is only ever run as a separate server process,
//! never linked. [`garage_bin`] finds it (`$GOCACHE_TEST_GARAGE`, else
//! `target/garage-<version>/bin/garage`), else builds the pinned version
//! from the crate registry into that directory, once, under a file lock: about 30
//! to 40 minutes on two cores, after which every run reuses it.
//!
//! [`GarageCluster`] starts three nodes (replication factor 3, consistency
//! mode `consistent`: reads and writes need two of the three), assigns and
//! applies a layout, and creates a bucket with a read-write key and a
//! read-only key. [`GarageCluster::shared`] is one cluster per test process
//! (tests then isolate themselves by prefix or with a bucket of their own);
//! a test that kills nodes starts its own with [`GarageCluster::start`].
//! Every node is spawned from one long-lived thread with a parent-death
//! signal, so the nodes die with the test process however it ends; a
//! cluster that is dropped kills its nodes at once.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use gocache::remote::RemoteUrl;
use gocache::remote::s3::{S3Config, S3Credentials, S3Overrides, S3Store};

use super::{target_tmp, with_file_lock};

/// The pinned Garage version.
pub const GARAGE_VERSION: &str = "2.5.0";

/// The S3 region the clusters use.
pub const REGION: &str = "garage";

/// Where the pinned Garage is installed: `target/garage-<version>`.
fn garage_root() -> PathBuf {
    target_tmp()
        .parent()
        .expect("CARGO_TARGET_TMPDIR is target/tmp")
        .join(format!("garage-{GARAGE_VERSION}"))
}

fn garage_version_ok(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| {
            // "garage cargo:2.5.0 [features: bundled-libs, sqlite]", or
            // "garage v2.5.0 …" from a release build.
            let text = String::from_utf8_lossy(&o.stdout);
            o.status.success()
                && text.starts_with("garage ")
                && text
                    .split([' ', ':'])
                    .any(|w| w.trim_start_matches('v') == GARAGE_VERSION)
        })
}

/// The `garage` binary: `$GOCACHE_TEST_GARAGE`, else the pinned version
/// under the target directory, installed there first if missing.
pub fn garage_bin() -> &'static Path {
    static GARAGE: OnceLock<PathBuf> = OnceLock::new();
    GARAGE.get_or_init(|| {
        if let Some(g) = std::env::var_os("GOCACHE_TEST_GARAGE") {
            let g = PathBuf::from(g);
            assert!(
                garage_version_ok(&g),
                "GOCACHE_TEST_GARAGE={} is not garage v{GARAGE_VERSION}",
                g.display()
            );
            return g;
        }
        let root = garage_root();
        let bin = root.join("bin/garage");
        with_file_lock("garage-install", || {
            if garage_version_ok(&bin) {
                return;
            }
            install_garage(&root);
            assert!(
                garage_version_ok(&bin),
                "{} does not run after install",
                bin.display()
            );
        });
        bin
    })
}

/// `cargo install`s the pinned Garage into `root`, with the cheapest build
/// that works: the SQLite metadata engine only (no LMDB, metrics or K2V),
/// bundled C libraries, no LTO, 16 codegen units, no debug info.
fn install_garage(root: &Path) {
    let build_dir = root.join("build");
    eprintln!(
        "building Garage {GARAGE_VERSION} (the tests' S3 store) into {}: this takes about 30-40 minutes on two cores, once; later runs reuse it (or set GOCACHE_TEST_GARAGE to a garage binary of this version)",
        root.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // The outer cargo's settings are for gocache, not for Garage: its
    // profile, flags, target and target directory would all leak in.
    for (k, _) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        let keep = k == "CARGO_HOME"
            || k.starts_with("CARGO_NET_")
            || k.starts_with("CARGO_HTTP_")
            || k.starts_with("CARGO_REGISTRIES_")
            || k.starts_with("CARGO_REGISTRY_");
        let drop = (k.starts_with("CARGO_") && !keep)
            || matches!(
                k,
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "RUSTC"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "RUSTC_BOOTSTRAP"
                    | "CARGO"
                    | "RUST_TEST_THREADS"
                    | "__CARGO_FIX_PLZ"
            );
        if drop {
            cmd.env_remove(k);
        }
    }
    cmd.args(["install", "garage", "--version", GARAGE_VERSION])
        .args(["--locked", "--no-default-features", "--features"])
        .arg("bundled-libs,sqlite")
        .arg("--root")
        .arg(root)
        .env("CARGO_TARGET_DIR", &build_dir)
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .stdin(Stdio::null());
    let started = Instant::now();
    let status = cmd.status().expect("running cargo install garage");
    assert!(
        status.success(),
        "cargo install garage --version {GARAGE_VERSION} failed ({status})"
    );
    eprintln!(
        "built Garage {GARAGE_VERSION} in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // The build directory is gigabytes; the binary is all the tests need.
    let _ = std::fs::remove_dir_all(&build_dir);
}

/// Spawns `cmd` from one thread that lives as long as the process, with a
/// parent-death signal: the kernel sends it when the spawning thread ends,
/// which (that thread never returning) is when the test process ends,
/// however it ends.
fn spawn_owned(mut cmd: Command) -> std::io::Result<Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("garage-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // The senders live in a static: never reached. Park so the
                // children's parent thread never exits before the process.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawning the garage spawner thread");
        Mutex::new(tx)
    });
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe; nothing else runs
    // between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // The test process is already gone.
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.lock()
        .unwrap()
        .send((cmd, reply_tx))
        .expect("the spawner thread runs");
    reply_rx.recv().expect("the spawner thread answers")
}

/// An S3 access key.
#[derive(Clone, Debug)]
pub struct Key {
    /// Access key ID.
    pub id: String,
    /// Secret access key.
    pub secret: String,
}

impl Key {
    fn random() -> Key {
        let hex = |n: usize| {
            (0..n)
                .map(|_| char::from(b"0123456789abcdef"[fastrand::usize(..16)]))
                .collect::<String>()
        };
        Key {
            id: format!("GK{}", hex(24)),
            secret: hex(64),
        }
    }

    /// As store credentials.
    pub fn credentials(&self) -> S3Credentials {
        S3Credentials {
            access_key_id: self.id.clone(),
            secret_access_key: self.secret.clone(),
            session_token: None,
        }
    }
}

struct Node {
    config: PathBuf,
    log: PathBuf,
    s3: SocketAddr,
    rpc: SocketAddr,
    child: Option<Child>,
    /// `<node id>@<rpc address>`, once known.
    id: Option<String>,
}

/// A three-node Garage cluster on 127.0.0.1.
pub struct GarageCluster {
    dir: tempfile::TempDir,
    nodes: Mutex<Vec<Node>>,
    /// The bucket created at start.
    pub bucket: String,
    /// A key that may read and write every bucket the cluster creates.
    pub rw: Key,
    /// A key that may only read them.
    pub ro: Key,
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free port on 127.0.0.1")
}

fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > limit => {
                panic!("{what}: still failing after {limit:?}: {e}")
            }
            Err(_) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        }
    }
}

impl GarageCluster {
    /// The cluster shared by every test of this process. A static is never
    /// dropped, so its directory is `target/tmp/garage-shared/<pid>`, and
    /// each process removes those of processes that are gone.
    pub fn shared() -> &'static GarageCluster {
        static SHARED: OnceLock<GarageCluster> = OnceLock::new();
        SHARED.get_or_init(|| {
            let parent = target_tmp().join("garage-shared");
            std::fs::create_dir_all(&parent).unwrap();
            for e in std::fs::read_dir(&parent).unwrap().flatten() {
                let pid = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok());
                // SAFETY: kill with signal 0 only checks that the process exists.
                if pid.is_some_and(|p| unsafe { libc::kill(p, 0) } != 0) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
            let dir = parent.join(std::process::id().to_string());
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            GarageCluster::start_in(tempfile::TempDir::new_in(&dir).unwrap())
        })
    }

    /// Starts a fresh cluster of three nodes, with a bucket and two keys,
    /// in a temporary directory removed when it is dropped.
    pub fn start() -> GarageCluster {
        let dir = tempfile::Builder::new()
            .prefix("gocache-garage-")
            .tempdir()
            .unwrap();
        GarageCluster::start_in(dir)
    }

    fn start_in(dir: tempfile::TempDir) -> GarageCluster {
        // Install (or find) Garage before anything else.
        garage_bin();
        let secret: String = (0..64)
            .map(|_| char::from(b"0123456789abcdef"[fastrand::usize(..16)]))
            .collect();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let home = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&home).unwrap();
            let (s3, rpc) = (free_port(), free_port());
            let config = home.join("garage.toml");
            let text = format!(
                r#"metadata_dir = "{home}/meta"
data_dir = "{home}/data"
db_engine = "sqlite"
replication_factor = 3
consistency_mode = "consistent"
rpc_bind_addr = "{rpc}"
rpc_public_addr = "{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "{s3}"
"#,
                home = home.display(),
            );
            std::fs::write(&config, text).unwrap();
            nodes.push(Node {
                config,
                log: home.join("log"),
                s3,
                rpc,
                child: None,
                id: None,
            });
        }
        let cluster = GarageCluster {
            dir,
            nodes: Mutex::new(nodes),
            bucket: "gocache-test".to_owned(),
            rw: Key::random(),
            ro: Key::random(),
        };
        for i in 0..3 {
            cluster.spawn_node(i);
        }
        let ids: Vec<String> = (0..3)
            .map(|i| {
                wait_until("garage node id", Duration::from_secs(30), || {
                    let out = cluster.cli(i, &["node", "id", "-q"])?;
                    Ok(out.trim().to_owned())
                })
            })
            .collect();
        for (node, id) in cluster.nodes.lock().unwrap().iter_mut().zip(&ids) {
            node.id = Some(id.clone());
        }
        for id in &ids[1..] {
            wait_until("garage node connect", Duration::from_secs(30), || {
                cluster.cli(0, &["node", "connect", id])
            });
        }
        let short: Vec<&str> = ids.iter().map(|id| &id[..16]).collect();
        let mut assign = vec!["layout", "assign", "-z", "dc1", "-c", "1G"];
        assign.extend(&short);
        wait_until("garage layout assign", Duration::from_secs(30), || {
            cluster.cli(0, &assign)
        });
        cluster
            .cli(0, &["layout", "apply", "--version", "1"])
            .unwrap_or_else(|e| panic!("garage layout apply: {e}"));
        for (key, name) in [(&cluster.rw, "rw"), (&cluster.ro, "ro")] {
            wait_until("garage key import", Duration::from_secs(30), || {
                cluster.cli(
                    0,
                    &["key", "import", "--yes", "-n", name, &key.id, &key.secret],
                )
            });
        }
        cluster.create_bucket(&cluster.bucket);
        cluster
    }

    fn spawn_node(&self, i: usize) {
        let mut nodes = self.nodes.lock().unwrap();
        let node = &mut nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let mut cmd = Command::new(garage_bin());
        cmd.arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn,garage_api_s3=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        node.child = Some(spawn_owned(cmd).expect("spawning garage server"));
        let (s3, rpc) = (node.s3, node.rpc);
        drop(nodes);
        for addr in [s3, rpc] {
            wait_until("a garage node listening", Duration::from_secs(60), || {
                self.check_alive(i)?;
                TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                    .map(drop)
                    .map_err(|e| format!("{addr}: {e}"))
            });
        }
    }

    fn check_alive(&self, i: usize) -> Result<(), String> {
        let mut nodes = self.nodes.lock().unwrap();
        let node = &mut nodes[i];
        if let Some(child) = &mut node.child
            && let Ok(Some(status)) = child.try_wait()
        {
            let log = std::fs::read_to_string(&node.log).unwrap_or_default();
            panic!("garage node {i} exited ({status}):\n{log}");
        }
        Ok(())
    }

    /// Runs `garage -c <node i's config> ARGS`, returning its stdout.
    pub fn cli(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let config = self.nodes.lock().unwrap()[i].config.clone();
        let out = Command::new(garage_bin())
            .arg("-c")
            .arg(config)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("spawning garage: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "garage {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Creates bucket `name`, readable and writable by [`Self::rw`] and
    /// readable by [`Self::ro`], and waits until every node serves it.
    pub fn create_bucket(&self, name: &str) {
        wait_until(
            "garage bucket create",
            Duration::from_secs(30),
            || match self.cli(0, &["bucket", "create", name]) {
                Err(e) if !e.contains("already exists") => Err(e),
                _ => Ok(()),
            },
        );
        wait_until("garage bucket allow", Duration::from_secs(30), || {
            self.cli(
                0,
                &[
                    "bucket", "allow", "--read", "--write", "--owner", name, "--key", "rw",
                ],
            )?;
            self.cli(0, &["bucket", "allow", "--read", name, "--key", "ro"])
        });
        let url = RemoteUrl::parse(&format!("s3://{name}/.ready")).unwrap();
        for i in 0..3 {
            let store = self.store_on(i, url.clone(), &self.rw);
            wait_until(
                "the bucket served by every node",
                Duration::from_secs(60),
                || {
                    use gocache::remote::ObjectStore;
                    store
                        .put("probe", gocache::remote::store::PutBody::Bytes(b"ok"))
                        .map_err(|e| e.to_string())?;
                    let mut got = Vec::new();
                    store
                        .get("probe", 16, &mut got)
                        .map_err(|e| e.to_string())?;
                    (got == b"ok")
                        .then_some(())
                        .ok_or("probe read back wrong".to_owned())
                },
            );
        }
    }

    /// The S3 endpoint of node `i` (`http://127.0.0.1:PORT`).
    pub fn endpoint_of(&self, i: usize) -> String {
        format!("http://{}", self.nodes.lock().unwrap()[i].s3)
    }

    /// The S3 endpoint of the first node.
    pub fn endpoint(&self) -> String {
        self.endpoint_of(0)
    }

    /// A store for `url` through node `i`'s endpoint with `key`.
    pub fn store_on(&self, i: usize, url: RemoteUrl, key: &Key) -> S3Store {
        let overrides = S3Overrides {
            endpoint: Some(self.endpoint_of(i)),
            region: Some(REGION.to_owned()),
            credentials: Some(key.credentials()),
            ..S3Overrides::default()
        };
        let config = S3Config::resolve(url, &overrides, |_| None).expect("a valid test config");
        S3Store::new(config)
    }

    /// A store for a fresh, unique prefix of the shared bucket, with
    /// `key`, through node 0.
    pub fn fresh_prefix(&self, key: &Key) -> (RemoteUrl, S3Store) {
        let url = self.fresh_url();
        let store = self.store_on(0, url.clone(), key);
        (url, store)
    }

    /// `s3://<bucket>/t-<random>`: a prefix no other test uses.
    pub fn fresh_url(&self) -> RemoteUrl {
        RemoteUrl::parse(&format!(
            "s3://{}/t-{:016x}",
            self.bucket,
            fastrand::u64(..)
        ))
        .unwrap()
    }

    /// The environment a gocache process needs to use the cluster with
    /// `key` (after [`clear_aws_env`]).
    pub fn env(&self, key: &Key) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", key.id.clone()),
            ("AWS_SECRET_ACCESS_KEY", key.secret.clone()),
        ]
    }

    /// Kills node `i` (SIGKILL) and waits for it to exit.
    pub fn kill(&self, i: usize) {
        let mut nodes = self.nodes.lock().unwrap();
        if let Some(mut child) = nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again, with its data, and waits until it is
    /// connected to every live node.
    pub fn restart(&self, i: usize) {
        self.kill(i);
        self.spawn_node(i);
        // Left alone, a restarted node finds its peers again within about
        // 30 s; tell it where they are.
        let peers: Vec<String> = {
            let nodes = self.nodes.lock().unwrap();
            (0..nodes.len())
                .filter(|&j| j != i && nodes[j].child.is_some())
                .filter_map(|j| nodes[j].id.clone())
                .collect()
        };
        for peer in &peers {
            wait_until("garage node connect", Duration::from_secs(60), || {
                self.cli(i, &["node", "connect", peer])
            });
        }
        self.wait_connected(i);
    }

    /// Waits until node `i` has a connection to every live storage node
    /// (itself included), by its own health report.
    pub fn wait_connected(&self, i: usize) {
        let live = self
            .nodes
            .lock()
            .unwrap()
            .iter()
            .filter(|n| n.child.is_some())
            .count();
        wait_until(
            "a garage node connected to its peers",
            Duration::from_secs(60),
            || {
                let out = self.cli(i, &["json-api", "GetClusterHealth"])?;
                let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
                let up = v["storageNodesUp"].as_u64().unwrap_or(0) as usize;
                (up == live)
                    .then_some(())
                    .ok_or(format!("{up} of {live} storage nodes up: {out}"))
            },
        );
    }

    /// Every node's log, for a failing test's message.
    pub fn logs(&self) -> String {
        use std::fmt::Write as _;
        let nodes = self.nodes.lock().unwrap();
        let mut out = String::new();
        for (i, n) in nodes.iter().enumerate() {
            let log = std::fs::read_to_string(&n.log).unwrap_or_default();
            let _ = writeln!(out, "--- node {i} ({}):\n{log}", n.s3);
        }
        out
    }

    /// The cluster's working directory (configs, data, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
    }
}

/// Removes from `cmd`'s environment every variable the S3 store reads
/// (endpoint, region, credentials) and the HTTP proxy ureq would honour,
/// so a test's gocache sees only what the test sets.
pub fn clear_aws_env(cmd: &mut std::process::Command) {
    for v in [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "HTTP_PROXY",
        "http_proxy",
    ] {
        cmd.env_remove(v);
    }
}
