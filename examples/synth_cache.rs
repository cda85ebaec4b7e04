//! Generates a synthetic Go build cache for benchmarks:
//!
//! ```sh
//! cargo run --release --example synth_cache -- DIR [ENTRIES] [SEED] [AGE_DAYS]
//! ```
//!
//! DIR must not exist or be empty. ENTRIES defaults to 100000, SEED to 1,
//! AGE_DAYS (the oldest last use) to 10. mtimes lie before now.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: synth_cache DIR [ENTRIES] [SEED] [AGE_DAYS]");
        std::process::exit(2);
    };
    let num = |i: usize, default: u64| -> u64 {
        args.get(i).map_or(default, |s| {
            s.parse().unwrap_or_else(|_| {
                eprintln!("synth_cache: {s:?} is not a whole number");
                std::process::exit(2)
            })
        })
    };
    let now = chrono::Utc::now().timestamp();
    let mut spec =
        gocache::synth_cache::SynthSpec::realistic(num(1, 100_000) as usize, num(2, 1), now);
    spec.max_age = num(3, 10) as i64 * 86_400;
    let started = std::time::Instant::now();
    match gocache::synth_cache::generate(std::path::Path::new(dir), &spec) {
        Ok(r) => println!(
            "{dir}: {} actions, {} outputs, {} executables ({} orphan outputs, {} dangling actions), {} apparent, in {:.1}s",
            r.actions,
            r.outputs,
            r.exes,
            r.orphan_outputs,
            r.dangling_actions,
            humansize::format_size(r.apparent_bytes, humansize::BINARY),
            started.elapsed().as_secs_f64()
        ),
        Err(e) => {
            eprintln!("synth_cache: {e}");
            std::process::exit(1);
        }
    }
}
