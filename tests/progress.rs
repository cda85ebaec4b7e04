//! Progress on a terminal: a bar as wide as the
//! terminal, at 50 and at 120 columns, that advances, and a spinner that
//! keeps moving while a phase has nothing to count. Run on a real
//! pseudo-terminal, read back byte for byte.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};

use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};

use crate::support::*;

/// Runs `cmd` with its stderr on a pseudo-terminal `cols` columns wide;
/// returns its stdout and everything written to the terminal.
fn on_terminal(mut cmd: Command, cols: u16) -> (std::process::Output, Vec<u8>) {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let win = Winsize {
        ws_row: 40,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    tcsetwinsize(&master, win).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(std::ffi::OsStr::from_bytes(name.as_bytes()))
        .unwrap();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(slave));
    let child = cmd.spawn().unwrap();
    // Our copy of the terminal's other end goes, so that reading ends
    // when the child's does.
    drop(cmd);
    let mut master = std::fs::File::from(master);
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the last writer has closed it.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        seen
    });
    let out = child.wait_with_output().unwrap();
    (out, reader.join().unwrap())
}

/// What a terminal would show, frame by frame: the text between carriage
/// returns and newlines, escape sequences taken out.
fn frames(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let mut plain = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final(@..~); other escapes: one more char.
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
            plain.push('\r');
            continue;
        }
        plain.push(c);
    }
    plain
        .split(['\r', '\n'])
        .map(|f| f.trim_end().to_string())
        .filter(|f| !f.is_empty())
        .collect()
}

/// The `pos/len` of a bar's frame for `phase`.
fn position(frame: &str, phase: &str) -> Option<(u64, u64)> {
    if !frame.contains(phase) {
        return None;
    }
    let counts = frame.split_whitespace().find(|w| {
        w.split_once('/')
            .is_some_and(|(a, b)| a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok())
    })?;
    let (a, b) = counts.split_once('/')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[test]
fn progress_follows_the_terminal_width_and_advances() {
    let sb = Sandbox::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut spec = gocache::synth_cache::SynthSpec::realistic(60_000, 7, now);
    spec.max_age = 20 * 86_400;
    gocache::synth_cache::generate(&sb.cache(), &spec).unwrap();
    let total = json(&run_ok(sb.gocache(["stats", "--json"])))["total"]["allocated_bytes"]
        .as_u64()
        .unwrap();

    for (cols, args) in [
        (50u16, vec!["scan".to_string(), "--full".into()]),
        (
            120,
            vec!["trim".into(), "--budget".into(), (total / 2).to_string()],
        ),
    ] {
        let (out, raw) = on_terminal(sb.gocache(&args), cols);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&raw)
        );
        let frames = frames(&raw);
        let widest = frames.iter().map(|f| f.chars().count()).max().unwrap_or(0);
        assert!(
            widest <= cols as usize,
            "{cols} columns, a frame of {widest}: {frames:#?}"
        );
        assert!(
            widest >= cols as usize * 9 / 10,
            "the bar fills the terminal's {cols} columns (widest frame {widest}): {frames:#?}"
        );
        // The scan's bar counts subdirectories up to 256.
        let scan: Vec<(u64, u64)> = frames.iter().filter_map(|f| position(f, "scan")).collect();
        assert!(scan.iter().all(|&(_, len)| len == 256), "{scan:?}");
        assert!(
            scan.windows(2).all(|w| w[0].0 <= w[1].0),
            "backwards: {scan:?}"
        );
        let distinct: std::collections::BTreeSet<u64> = scan.iter().map(|p| p.0).collect();
        assert!(
            distinct.len() >= 3,
            "the scan's bar barely moved: {frames:#?}"
        );
        if cols == 120 {
            // A trim also shows its planning (a spinner: nothing to count
            // while entries load) and its removals (a bar).
            let removal: Vec<(u64, u64)> =
                frames.iter().filter_map(|f| position(f, "trim")).collect();
            assert!(
                removal
                    .windows(2)
                    .all(|w| w[0].0 <= w[1].0 && w[0].1 == w[1].1),
                "{removal:?}"
            );
        }
        // Never frozen: while the position stays, the spinner turns.
        let mut turned = false;
        for w in frames.windows(2) {
            if w[0] != w[1]
                && position(&w[0], "scan") == position(&w[1], "scan")
                && position(&w[0], "scan").is_some()
            {
                turned = true;
            }
        }
        let spinner_only = frames
            .iter()
            .any(|f| f.contains("plan...") || f.contains("load..."));
        assert!(turned || spinner_only || distinct.len() >= 8, "{frames:#?}");
        // Nothing of the bar is left on the terminal's last line.
        let last = String::from_utf8_lossy(&raw);
        assert!(!last.trim_end().ends_with(']'), "{last:?}");
    }
}
