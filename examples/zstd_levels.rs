//! What zstd does to a real Go cache's outputs, level by level: the
//! measurement behind `gocache::remote::codec`'s level and thresholds.
//!
//! ```sh
//! GOCACHE=/tmp/std-cache go build std
//! cargo run --release --example zstd_levels -- /tmp/std-cache [LEVELS...]
//! ```
//!
//! For each level: the bytes a bucket would hold with the codec's rules
//! (outputs under `MIN_SIZE` and those that do not save `1/MIN_SAVING`
//! stored as they are), as a share of the outputs' bytes; the CPU seconds
//! (this thread's, so a busy machine skews them less than wall time) to
//! compress and decompress them all, and the rates. Then what the
//! small-object threshold changes, at the default level.

use gocache::remote::codec::{DEFAULT_LEVEL, MIN_SAVING, MIN_SIZE};

fn outputs(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(dir).expect("reading the cache directory") {
        let sub = sub.unwrap().path();
        if !sub.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&sub).unwrap() {
            let p = f.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with("-d") && p.is_file() {
                out.push(std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// This thread's CPU time, in seconds.
fn cpu() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock and a timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: zstd_levels GOCACHE_DIR [LEVELS...]");
        std::process::exit(2);
    };
    let levels: Vec<i32> = if args.len() > 1 {
        args[1..]
            .iter()
            .map(|l| l.parse().expect("a level"))
            .collect()
    } else {
        vec![1, 2, 3, 4, 6, 9]
    };
    let outs = outputs(std::path::Path::new(dir));
    let logical: u64 = outs.iter().map(|o| o.len() as u64).sum();
    println!(
        "{} outputs, {:.1} MB; rules: as-is under {MIN_SIZE} B or when saving < 1/{MIN_SAVING}",
        outs.len(),
        logical as f64 / 1e6
    );
    println!(
        "{:>5} {:>12} {:>7} {:>11} {:>9} {:>11} {:>9} {:>11}",
        "level", "stored MB", "share", "compress", "MB/s", "decompress", "MB/s", "compressed"
    );
    for &level in &levels {
        let mut stored = 0u64;
        let mut compressed = 0usize;
        let mut kept: Vec<(Vec<u8>, usize)> = Vec::new();
        let t = cpu();
        for o in &outs {
            let n = o.len() as u64;
            if n < MIN_SIZE {
                stored += n;
                continue;
            }
            let z = zstd::bulk::compress(o, level).unwrap();
            if (z.len() as u64) > n - n / MIN_SAVING {
                stored += n;
            } else {
                stored += z.len() as u64;
                compressed += 1;
                kept.push((z, o.len()));
            }
        }
        let ct = cpu() - t;
        let t = cpu();
        for (z, n) in &kept {
            let d = zstd::bulk::decompress(z, *n).unwrap();
            assert_eq!(d.len(), *n);
        }
        let dt = cpu() - t;
        let mb = logical as f64 / 1e6;
        println!(
            "{level:>5} {:>12.1} {:>6.3}x {ct:>11.2} {:>9.0} {dt:>11.2} {:>9.0} {compressed:>11}",
            stored as f64 / 1e6,
            stored as f64 / logical as f64,
            mb / ct,
            mb / dt.max(1e-9),
        );
    }
    println!("\nsmall outputs at level {DEFAULT_LEVEL}: count, bytes, bytes if compressed");
    for (lo, hi) in [(0u64, 256u64), (256, 1024), (1024, 4096), (4096, 16384)] {
        let small: Vec<&Vec<u8>> = outs
            .iter()
            .filter(|o| (lo..hi).contains(&(o.len() as u64)))
            .collect();
        let bytes: u64 = small.iter().map(|o| o.len() as u64).sum();
        let z: u64 = small
            .iter()
            .map(|o| {
                let z = zstd::bulk::compress(o, DEFAULT_LEVEL).unwrap().len() as u64;
                z.min(o.len() as u64)
            })
            .sum();
        println!(
            "  [{lo:>5}, {hi:>5}) B: {:>5} outputs, {:>9} B, {:>9} B compressed",
            small.len(),
            bytes,
            z
        );
    }
}
