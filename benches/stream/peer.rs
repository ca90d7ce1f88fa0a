//! The subscribers' processes: this bench started again with `--role`,
//! talking back one line at a time on stdout.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::Wait;

/// How long a peer may take to say its next line.
const LIMIT: Duration = Duration::from_secs(60);

/// A subscriber's process; killed when dropped, if still running.
pub struct Peer {
    child: Child,
    lines: Receiver<String>,
}

impl Peer {
    /// Starts `--role SIDE KIND NAME WAIT FRAMES` and waits for its `ready`.
    pub fn start(side: &str, kind: &str, name: &str, wait: Wait, frames: usize) -> Result<Peer> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--role", side, kind, name, wait.word(), &frames.to_string()])
            .stdout(Stdio::piped())
            .spawn()?;
        let out = child.stdout.take().context("a piped stdout")?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut peer = Peer { child, lines };
        peer.expect("ready")?;
        Ok(peer)
    }

    /// The rest of the next line, which must start with `word`.
    pub fn expect(&mut self, word: &str) -> Result<String> {
        let line = match self.lines.recv_timeout(LIMIT) {
            Ok(line) => line,
            Err(_) => bail!("a {word} from the subscriber (pid {}): none in {LIMIT:?}", self.child.id()),
        };
        match line.strip_prefix(word) {
            Some(rest) => Ok(rest.trim().to_owned()),
            None => bail!("the subscriber said {line:?} instead of {word}"),
        }
    }

    /// The latencies it measured, in µs (a line `lat NS NS ...`).
    pub fn latencies(mut self) -> Result<Vec<f64>> {
        let line = self.expect("lat")?;
        let ns: Result<Vec<f64>, _> = line.split_whitespace().map(|w| w.parse::<f64>().map(|n| n / 1e3)).collect();
        self.finish()?;
        Ok(ns?)
    }

    /// Waits for its `done` (every frame seen, none torn) and its exit.
    pub fn done(mut self) -> Result<()> {
        let bad: usize = self.expect("done")?.parse()?;
        self.finish()?;
        match bad {
            0 => Ok(()),
            n => bail!("a subscriber saw {n} torn frames"),
        }
    }

    fn finish(&mut self) -> Result<()> {
        let status = self.child.wait()?;
        match status.success() {
            true => Ok(()),
            false => bail!("a subscriber failed: {status}"),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A peer dies with the bench (`PR_SET_PDEATHSIG`), so a bench killed or
/// given up leaves no subscriber behind.
pub fn die_with_parent() {
    // SAFETY: prctl(2) PR_SET_PDEATHSIG takes a signal number and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
}

/// Prints a line to the bench and flushes it.
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The `lat` line for latencies in nanoseconds.
pub fn say_latencies(ns: &[u64]) {
    let words: Vec<String> = ns.iter().map(u64::to_string).collect();
    say(&format!("lat {}", words.join(" ")));
}
