//! shmkit's side: a `Publisher` in the bench, `Subscriber`s in peers.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use shmkit::ndarray::Ix1;
use shmkit::stream::{Policy, Publisher, Subscriber, TryRecvError};

use crate::peer::{say, say_latencies, Peer};
use crate::{marks, now_ns, write_frame, Wait, FRAME};

/// Lossless, and patient enough that no subscriber is ever dropped here.
const POLICY: Policy = Policy::Block { lag: Duration::from_secs(30) };

fn publisher(name: &str, subscribers: usize) -> Result<Publisher<u8, Ix1>> {
    Ok(Publisher::<u8, Ix1>::builder(name, FRAME).slots(8).policy(POLICY).subscribers(subscribers).holds(1).create()?)
}

/// Publish → seen, in µs, for `frames` frames a period apart.
pub fn latency(name: &str, wait: Wait, frames: usize) -> Result<Vec<f64>> {
    let stream = publisher(name, 1)?;
    let peer = Peer::start("shmkit", "latency", name, wait, frames)?;
    for _ in 0..frames {
        let start = Instant::now();
        let mut frame = stream.loan()?;
        let bytes = frame.as_slice_mut().expect("a slot is contiguous");
        write_frame(bytes, 0);
        bytes[..8].copy_from_slice(&now_ns().to_le_bytes());
        stream.publish(frame).map_err(|e| anyhow::anyhow!("{e}"))?;
        std::thread::sleep(wait.period().saturating_sub(start.elapsed()));
    }
    stream.end()?;
    peer.latencies()
}

/// Frames per second to 2 subscribers, every frame written once and seen by both.
pub fn throughput(name: &str, frames: usize) -> Result<f64> {
    let stream = publisher(name, 2)?;
    let a = Peer::start("shmkit", "bulk", name, Wait::Sleep, frames)?;
    let b = Peer::start("shmkit", "bulk", name, Wait::Sleep, frames)?;
    let start = Instant::now();
    for i in 0..frames {
        let mut frame = stream.loan()?;
        write_frame(frame.as_slice_mut().expect("a slot is contiguous"), i as u64);
        stream.publish(frame).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    a.done()?;
    b.done()?;
    let fps = frames as f64 / start.elapsed().as_secs_f64();
    stream.end()?;
    Ok(fps)
}

/// A peer: takes `frames` frames as they come and says how late each was.
pub fn subscribe_latency(name: &str, wait: Wait, frames: usize) -> Result<()> {
    let stream = Subscriber::<u8, Ix1>::open_timeout(name, Duration::from_secs(10))?;
    say("ready");
    let mut late = Vec::with_capacity(frames);
    for _ in 0..frames {
        let frame = match wait {
            Wait::Sleep => stream.next()?,
            Wait::Busy => loop {
                match stream.try_next() {
                    Ok(frame) => break frame,
                    Err(TryRecvError::Empty) => std::hint::spin_loop(),
                    Err(e) => bail!("{e}"),
                }
            },
        };
        let seen = now_ns();
        let (stamp, _) = marks(frame.as_slice().expect("a slot is contiguous"));
        late.push(seen.saturating_sub(stamp));
    }
    say_latencies(&late);
    Ok(())
}

/// A peer: checks `frames` frames whole, in order, then says `done BAD`.
pub fn subscribe_bulk(name: &str, frames: usize) -> Result<()> {
    let stream = Subscriber::<u8, Ix1>::open_timeout(name, Duration::from_secs(10))?;
    say("ready");
    let mut bad = 0;
    for i in 0..frames as u64 {
        let frame = stream.next()?;
        if marks(frame.as_slice().expect("a slot is contiguous")) != (i, i) || frame.seq() != i + 1 {
            bad += 1;
        }
    }
    say(&format!("done {bad}"));
    Ok(())
}
