//! A shaped link on 127.0.0.1: a TCP proxy that gives what passes through
//! it the delay and bandwidth of a real link, and can stall or reset a
//! connection in the middle of a response. The tests put it between the
//! S3 client and a Garage node; `examples/shaped_proxy.rs` runs it on its
//! own for `scripts/bench.sh remote`.
//!
//! # What it shapes, and what it does not
//!
//! - **Delay**: every chunk of bytes is delivered half a round trip after
//!   it leaves the link, each way, so a request and its answer take one
//!   round trip more than on loopback. A new connection's first bytes wait
//!   one round trip more, as a TCP handshake would make them.
//! - **Bandwidth**: each direction is one link shared by every connection:
//!   a chunk occupies it for `len / rate` seconds, in the order chunks
//!   arrive, so eight parallel downloads share the rate as they would on a
//!   real link. Chunks are at most 16 KiB (1.3 ms at 100 Mbit/s).
//! - **Faults**, armed once: the first connection whose answers pass a
//!   byte count after the fault was armed stalls (the proxy keeps the
//!   connection open and forwards nothing more) or is reset (a TCP RST:
//!   the client's next read fails).
//! - **Not shaped**: loss, reordering, congestion control and TCP slow
//!   start (the queue at the bottleneck is unbounded, so a sender is never
//!   slowed by a full window, and a connection has its full rate from its
//!   first byte); TLS (the tests' store speaks plain HTTP); DNS. Upstream
//!   of the proxy, the store is on loopback. So it shows what a link's
//!   round trips and rate cost, a floor under what a real WAN costs.
//!
//! Only addresses on 127.0.0.1: it listens there and forwards there.

#![allow(dead_code)] // each user (the tests, the example) uses a part

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A link's round trip and rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    /// The round trip: each direction delays by half of it.
    pub rtt: Duration,
    /// Bits per second each way; `None`: as fast as loopback.
    pub bits_per_s: Option<u64>,
}

impl Shape {
    /// `rtt_ms` milliseconds of round trip, `mbit` Mbit/s each way.
    pub fn new(rtt_ms: u64, mbit: u64) -> Shape {
        Shape {
            rtt: Duration::from_millis(rtt_ms),
            bits_per_s: Some(mbit * 1_000_000),
        }
    }

    /// Loopback as it is.
    pub fn none() -> Shape {
        Shape {
            rtt: Duration::ZERO,
            bits_per_s: None,
        }
    }
}

/// What an armed fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// After `after` bytes of answers, forward nothing more on that
    /// connection, and keep it open.
    Stall {
        /// Bytes forwarded first.
        after: u64,
    },
    /// After `after` bytes of answers, reset the connection (RST).
    Reset {
        /// Bytes forwarded first.
        after: u64,
    },
}

impl Fault {
    fn after(&self) -> u64 {
        match *self {
            Fault::Stall { after } | Fault::Reset { after } => after,
        }
    }
}

/// One direction of the link: when it is next free.
struct Pacer {
    next_free: Mutex<Instant>,
}

impl Pacer {
    fn new() -> Pacer {
        Pacer {
            next_free: Mutex::new(Instant::now()),
        }
    }

    /// When `len` bytes that reached the link at `now` have crossed it.
    fn cross(&self, len: usize, now: Instant, bits_per_s: Option<u64>) -> Instant {
        let Some(rate) = bits_per_s else { return now };
        let busy = Duration::from_secs_f64(len as f64 * 8.0 / rate as f64);
        let mut next = self.next_free.lock().unwrap();
        let start = (*next).max(now);
        *next = start + busy;
        *next
    }
}

struct Control {
    shape: Mutex<Shape>,
    up: Pacer,
    down: Pacer,
    fault: Mutex<Option<Fault>>,
    /// Bumped each time a fault is armed: connections count from there.
    epoch: AtomicU64,
    stop: AtomicBool,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    connections: AtomicU64,
    faults_fired: AtomicU64,
    open: Mutex<Vec<Arc<TcpStream>>>,
}

/// A shaped link to a server on 127.0.0.1, listening on 127.0.0.1. Dropping
/// it closes the listener and every connection through it.
pub struct ShapedLink {
    addr: SocketAddr,
    ctl: Arc<Control>,
}

impl ShapedLink {
    /// Starts a link to `upstream` (an address on 127.0.0.1) with `shape`,
    /// on a free port of 127.0.0.1.
    pub fn start(upstream: SocketAddr, shape: Shape) -> std::io::Result<ShapedLink> {
        ShapedLink::start_on("127.0.0.1:0".parse().unwrap(), upstream, shape)
    }

    /// The same, listening on `listen` (an address on 127.0.0.1).
    pub fn start_on(
        listen: SocketAddr,
        upstream: SocketAddr,
        shape: Shape,
    ) -> std::io::Result<ShapedLink> {
        for a in [listen, upstream] {
            if !a.ip().is_loopback() {
                return Err(std::io::Error::other(format!(
                    "{a}: the shaped link only joins addresses on this machine"
                )));
            }
        }
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let ctl = Arc::new(Control {
            shape: Mutex::new(shape),
            up: Pacer::new(),
            down: Pacer::new(),
            fault: Mutex::new(None),
            epoch: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            faults_fired: AtomicU64::new(0),
            open: Mutex::new(Vec::new()),
        });
        let c = Arc::clone(&ctl);
        std::thread::Builder::new()
            .name("shaped-accept".into())
            .spawn(move || accept(listener, upstream, c))?;
        Ok(ShapedLink { addr, ctl })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, as an S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the link's shape for what crosses it from now on.
    pub fn set_shape(&self, shape: Shape) {
        *self.ctl.shape.lock().unwrap() = shape;
    }

    /// Arms `fault` for the first connection whose answers pass its byte
    /// count from now on (replacing one armed before).
    pub fn arm(&self, fault: Fault) {
        let mut f = self.ctl.fault.lock().unwrap();
        *f = Some(fault);
        self.ctl.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// True while an armed fault has not fired.
    pub fn armed(&self) -> bool {
        self.ctl.fault.lock().unwrap().is_some()
    }

    /// Faults fired so far.
    pub fn faults_fired(&self) -> u64 {
        self.ctl.faults_fired.load(Ordering::SeqCst)
    }

    /// Bytes sent to the server so far.
    pub fn bytes_up(&self) -> u64 {
        self.ctl.bytes_up.load(Ordering::SeqCst)
    }

    /// Bytes delivered to clients so far.
    pub fn bytes_down(&self) -> u64 {
        self.ctl.bytes_down.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.ctl.connections.load(Ordering::SeqCst)
    }

    /// Closes every connection through the link (the listener stays).
    pub fn cut_all(&self) {
        for s in self.ctl.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for ShapedLink {
    fn drop(&mut self) {
        self.ctl.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        self.cut_all();
    }
}

fn accept(listener: TcpListener, upstream: SocketAddr, ctl: Arc<Control>) {
    for client in listener.incoming() {
        if ctl.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(3)) else {
            // The server is down: so is the link (the client sees a close).
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        ctl.connections.fetch_add(1, Ordering::SeqCst);
        let (client, server) = (Arc::new(client), Arc::new(server));
        {
            let mut open = ctl.open.lock().unwrap();
            open.retain(|s| s.peer_addr().is_ok());
            open.push(Arc::clone(&client));
            open.push(Arc::clone(&server));
        }
        pump(&ctl, Arc::clone(&client), Arc::clone(&server), Way::Up);
        pump(&ctl, server, client, Way::Down);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Client to server.
    Up,
    /// Server to client (answers: where faults strike).
    Down,
}

enum Chunk {
    Data(Instant, Vec<u8>),
    End,
}

/// Moves bytes from `from` to `to` across the link: a reader thread stamps
/// each chunk with the time it will arrive, a writer thread delivers it
/// then. Two threads, so that delay does not cut throughput.
fn pump(ctl: &Arc<Control>, from: Arc<TcpStream>, to: Arc<TcpStream>, way: Way) {
    let (tx, rx) = mpsc::channel::<Chunk>();
    let c = Arc::clone(ctl);
    let (rfrom, rto) = (Arc::clone(&from), Arc::clone(&to));
    std::thread::spawn(move || {
        let mut first = true;
        let mut buf = vec![0u8; 16 << 10];
        loop {
            let n = match (&*rfrom).read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Chunk::End);
                    return;
                }
                Ok(n) => n,
            };
            let shape = *c.shape.lock().unwrap();
            let pacer = if way == Way::Up { &c.up } else { &c.down };
            let mut at = pacer.cross(n, Instant::now(), shape.bits_per_s) + shape.rtt / 2;
            if first && way == Way::Up {
                at += shape.rtt; // the handshake
            }
            first = false;
            if tx.send(Chunk::Data(at, buf[..n].to_vec())).is_err() {
                // The writer is gone (a fault, or the peer closed).
                let _ = rto.shutdown(Shutdown::Both);
                return;
            }
        }
    });
    let c = Arc::clone(ctl);
    std::thread::spawn(move || {
        let mut epoch = u64::MAX;
        let mut since_armed = 0u64;
        let mut stalled = false;
        for chunk in rx {
            let Chunk::Data(at, data) = chunk else {
                // Half-close, passed on; a stalled connection ends here,
                // when the client has given up and the server followed.
                let _ = to.shutdown(if stalled {
                    Shutdown::Both
                } else {
                    Shutdown::Write
                });
                return;
            };
            if stalled {
                continue;
            }
            let wait = at.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            let mut data = &data[..];
            let mut fired = None;
            if way == Way::Down {
                let now_epoch = c.epoch.load(Ordering::SeqCst);
                if now_epoch != epoch {
                    epoch = now_epoch;
                    since_armed = 0;
                }
                let mut armed = c.fault.lock().unwrap();
                if let Some(f) = *armed
                    && since_armed + data.len() as u64 > f.after()
                    && c.epoch.load(Ordering::SeqCst) == epoch
                {
                    *armed = None;
                    c.faults_fired.fetch_add(1, Ordering::SeqCst);
                    data = &data[..(f.after() - since_armed) as usize];
                    fired = Some(f);
                }
                since_armed += data.len() as u64;
            }
            // Counted as it arrives, before it is handed on: counted
            // after, a client could read the last byte and its test look
            // at the count before the count had it.
            let counter = if way == Way::Up {
                &c.bytes_up
            } else {
                &c.bytes_down
            };
            counter.fetch_add(data.len() as u64, Ordering::SeqCst);
            if to.as_ref().write_all(data).is_err() {
                let _ = from.shutdown(Shutdown::Both);
                return;
            }
            match fired {
                None => {}
                Some(Fault::Stall { .. }) => {
                    // Forward nothing more, and hold the connection: the
                    // client gives up (closing its side, which the other
                    // direction passes on to the server), or the link
                    // drops.
                    stalled = true;
                }
                Some(Fault::Reset { .. }) => {
                    reset(&to);
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
    });
}

/// Resets `s`: a linger of zero makes its close send an RST. The other
/// threads holding it are woken (their reads end) so that this close is
/// the last.
fn reset(s: &Arc<TcpStream>) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a `linger` of the size given.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    // Wakes a reader blocked on it without sending anything (no FIN).
    let _ = s.shutdown(Shutdown::Read);
    // Sends the RST at once, whoever else still holds the socket: with a
    // linger of zero, a disconnect (connect to AF_UNSPEC) aborts it.
    let unspec = libc::sockaddr {
        sa_family: libc::AF_UNSPEC as libc::sa_family_t,
        sa_data: [0; 14],
    };
    // SAFETY: a valid socket and an address of the size given.
    unsafe {
        libc::connect(
            s.as_raw_fd(),
            &unspec,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    // The link's own checks live in tests/remote.rs (`a_shaped_link_…`),
    // beside the tests that use it.
}
