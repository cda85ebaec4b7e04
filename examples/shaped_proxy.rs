//! A shaped link on 127.0.0.1, on its own: the tests' TCP proxy
//! (`tests/support/shaped.rs`, which says what it shapes and what it does
//! not) for `scripts/bench.sh remote`.
//!
//! ```sh
//! shaped_proxy --to 127.0.0.1:3900 --rtt-ms 20 --mbit 100 [--listen 127.0.0.1:0]
//! ```
//!
//! Prints the address it listens on (`127.0.0.1:PORT`) on one line, then
//! forwards until it is killed. `--mbit 0` leaves the rate unlimited.

#[path = "../tests/support/shaped.rs"]
mod shaped;

use std::net::SocketAddr;

fn usage(why: &str) -> ! {
    eprintln!(
        "shaped_proxy: {why}\nusage: shaped_proxy --to 127.0.0.1:PORT --rtt-ms MS --mbit MBIT [--listen 127.0.0.1:PORT]"
    );
    std::process::exit(2);
}

fn main() {
    let mut to: Option<SocketAddr> = None;
    let mut listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (mut rtt_ms, mut mbit) = (0u64, 0u64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--to" => to = Some(value().parse().unwrap_or_else(|_| usage("bad --to"))),
            "--listen" => listen = value().parse().unwrap_or_else(|_| usage("bad --listen")),
            "--rtt-ms" => rtt_ms = value().parse().unwrap_or_else(|_| usage("bad --rtt-ms")),
            "--mbit" => mbit = value().parse().unwrap_or_else(|_| usage("bad --mbit")),
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    let Some(to) = to else {
        usage("--to is required")
    };
    let mut shape = shaped::Shape::new(rtt_ms, mbit);
    if mbit == 0 {
        shape.bits_per_s = None;
    }
    let link = shaped::ShapedLink::start_on(listen, to, shape).unwrap_or_else(|e| {
        eprintln!("shaped_proxy: {e}");
        std::process::exit(1);
    });
    println!("{}", link.addr());
    loop {
        std::thread::park();
    }
}
