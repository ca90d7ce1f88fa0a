//! iceoryx2's side, as its docs and benchmarks use it: a publish-subscribe
//! service of `[u8]` slices (a loaned sample written in place, then sent)
//! and, for a sleeping subscriber, an event service beside it whose
//! listener the subscriber blocks on.

use std::mem::MaybeUninit;
use std::time::Instant;

use anyhow::{anyhow, Result};
use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;

use crate::peer::{say, say_latencies, Peer};
use crate::{mark_frame, marks, now_ns, Wait, FRAME};

type Ipc = ipc::Service;
/// A publisher of frames and the notifier that wakes sleeping subscribers.
type Sending = (Publisher<Ipc, [u8], ()>, Notifier<Ipc>);
/// A subscriber of frames and the listener it sleeps on.
type Receiving = (Subscriber<Ipc, [u8], ()>, Listener<Ipc>);

/// iceoryx2's errors as anyhow errors (some are not `Send + Sync`).
fn e<E: std::fmt::Debug>(err: E) -> anyhow::Error {
    anyhow!("iceoryx2: {err:?}")
}

fn node() -> Result<Node<Ipc>> {
    set_log_level(LogLevel::Error);
    NodeBuilder::new().create::<Ipc>().map_err(e)
}

/// The frames' service and its wake-up service (`NAME` and `NAME.wake`).
fn names(name: &str) -> Result<(ServiceName, ServiceName)> {
    Ok((ServiceName::new(name).map_err(e)?, ServiceName::new(&format!("{name}.wake")).map_err(e)?))
}

/// The publisher side: both services made, a publisher that waits for
/// room (nothing is lost, as with shmkit's `Block`) and a notifier.
fn publisher(node: &Node<Ipc>, name: &str, subscribers: usize) -> Result<Sending> {
    let (frames, wake) = names(name)?;
    let service = node
        .service_builder(&frames)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(subscribers)
        .history_size(0)
        .subscriber_max_buffer_size(4)
        .enable_safe_overflow(false)
        .create()
        .map_err(e)?;
    let publisher = service
        .publisher_builder()
        .initial_max_slice_len(FRAME)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .map_err(e)?;
    let notifier = node.service_builder(&wake).event().create().map_err(e)?.notifier_builder().create().map_err(e)?;
    Ok((publisher, notifier))
}

/// Loans a frame, writes it whole (`mark` at both ends), lets `last`
/// change it, sends it and wakes sleeping subscribers.
fn send(p: &Publisher<Ipc, [u8], ()>, n: &Notifier<Ipc>, mark: u64, last: impl FnOnce(&mut [u8])) -> Result<()> {
    let mut sample = p.loan_slice_uninit(FRAME).map_err(e)?;
    sample.payload_mut().fill(MaybeUninit::new(mark as u8));
    // SAFETY: every byte of the payload was just written (the fill above).
    let mut sample = unsafe { sample.assume_init() };
    mark_frame(sample.payload_mut(), mark);
    last(sample.payload_mut());
    sample.send().map_err(e)?;
    n.notify().map_err(e)?;
    Ok(())
}

/// Publish → seen, in µs, for `frames` frames a period apart.
pub fn latency(name: &str, wait: Wait, frames: usize) -> Result<Vec<f64>> {
    let node = node()?;
    let (publisher, notifier) = publisher(&node, name, 1)?;
    let peer = Peer::start("iceoryx2", "latency", name, wait, frames)?;
    for _ in 0..frames {
        let start = Instant::now();
        send(&publisher, &notifier, 0, |b| b[..8].copy_from_slice(&now_ns().to_le_bytes()))?;
        std::thread::sleep(wait.period().saturating_sub(start.elapsed()));
    }
    peer.latencies()
}

/// Frames per second to 2 subscribers, every frame written once and seen by both.
pub fn throughput(name: &str, frames: usize) -> Result<f64> {
    let node = node()?;
    let (publisher, notifier) = publisher(&node, name, 2)?;
    let a = Peer::start("iceoryx2", "bulk", name, Wait::Sleep, frames)?;
    let b = Peer::start("iceoryx2", "bulk", name, Wait::Sleep, frames)?;
    let start = Instant::now();
    for i in 0..frames {
        send(&publisher, &notifier, i as u64, |_| {})?;
    }
    a.done()?;
    b.done()?;
    Ok(frames as f64 / start.elapsed().as_secs_f64())
}

/// A peer's subscriber and listener.
fn subscriber(node: &Node<Ipc>, name: &str) -> Result<Receiving> {
    let (frames, wake) = names(name)?;
    let service = node.service_builder(&frames).publish_subscribe::<[u8]>().open().map_err(e)?;
    let subscriber = service.subscriber_builder().create().map_err(e)?;
    let listener = node.service_builder(&wake).event().open().map_err(e)?.listener_builder().create().map_err(e)?;
    Ok((subscriber, listener))
}

/// Calls `each` with every frame received until it has had `frames`,
/// busy-polling or asleep on the listener between frames.
fn receive(name: &str, wait: Wait, frames: usize, mut each: impl FnMut(&[u8])) -> Result<()> {
    let node = node()?;
    let (subscriber, listener) = subscriber(&node, name)?;
    say("ready");
    let mut got = 0;
    while got < frames {
        if wait == Wait::Sleep {
            listener.blocking_wait(|_| {}).map_err(e)?;
        }
        while let Some(sample) = subscriber.receive().map_err(e)? {
            each(sample.payload());
            got += 1;
        }
        if wait == Wait::Busy {
            std::hint::spin_loop();
        }
    }
    Ok(())
}

/// A peer: takes `frames` frames as they come and says how late each was.
pub fn subscribe_latency(name: &str, wait: Wait, frames: usize) -> Result<()> {
    let mut late = Vec::with_capacity(frames);
    receive(name, wait, frames, |frame| late.push(now_ns().saturating_sub(marks(frame).0)))?;
    say_latencies(&late);
    Ok(())
}

/// A peer: checks `frames` frames whole, in order, then says `done BAD`.
pub fn subscribe_bulk(name: &str, frames: usize) -> Result<()> {
    let (mut i, mut bad) = (0u64, 0);
    receive(name, Wait::Sleep, frames, |frame| {
        bad += usize::from(marks(frame) != (i, i));
        i += 1;
    })?;
    say(&format!("done {bad}"));
    Ok(())
}
