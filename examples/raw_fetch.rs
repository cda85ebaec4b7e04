//! The floor of a fetch from the bucket: GET every cache object under a
//! prefix (`a/`, `o/`, `z/`), N at a time over kept-alive connections,
//! bytes discarded, nothing verified or written. `scripts/bench.sh remote`
//! runs it beside a build that fetches the same objects.
//!
//! ```sh
//! raw_fetch s3://BUCKET/PREFIX [--parallel 8] [--endpoint URL] [--region R]
//! ```
//!
//! Endpoint, region and credentials as for `gocache remote`. Prints one
//! line: `objects bytes seconds` (the listing not counted).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use gocache::remote::ObjectStore;
use gocache::remote::keys::RemoteKey;
use gocache::remote::s3::S3Overrides;

fn usage(why: &str) -> ! {
    eprintln!(
        "raw_fetch: {why}\nusage: raw_fetch s3://BUCKET/PREFIX [--parallel N] [--endpoint URL] [--region R]"
    );
    std::process::exit(2);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut url = None;
    let mut parallel = 8usize;
    let mut overrides = S3Overrides::default();
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--parallel" => parallel = value().parse().unwrap_or_else(|_| usage("bad --parallel")),
            "--endpoint" => overrides.endpoint = Some(value()),
            "--region" => overrides.region = Some(value()),
            _ if url.is_none() && a.starts_with("s3://") => url = Some(a),
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    let Some(url) = url else {
        usage("the s3:// URL is required")
    };
    let store = gocache::remote::s3::open(&url, &overrides, |k| std::env::var_os(k))
        .unwrap_or_else(|e| usage(&e.to_string()));
    let keys: Vec<String> = gocache::remote::store::list_all(&store, "")
        .unwrap_or_else(|e| {
            eprintln!("raw_fetch: {e}");
            std::process::exit(1)
        })
        .into_iter()
        .map(|m| m.key)
        .filter(|k| !matches!(RemoteKey::parse(k), RemoteKey::Uses(_) | RemoteKey::Other))
        .collect();
    let next = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..parallel.max(1) {
            s.spawn(|| {
                while let Some(k) = keys.get(next.fetch_add(1, Ordering::Relaxed)) {
                    match store.get(k, u64::MAX, &mut std::io::sink()) {
                        Ok(Some(n)) => {
                            bytes.fetch_add(n, Ordering::Relaxed);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            eprintln!("raw_fetch: {e}");
                            std::process::exit(1);
                        }
                    }
                }
            });
        }
    });
    println!(
        "{} {} {:.3}",
        keys.len(),
        bytes.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}
