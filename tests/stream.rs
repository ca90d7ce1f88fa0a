//! Streams between processes: ordered delivery under each policy, a
//! recorder beside a latest-only viewer, subscribers and publishers
//! SIGKILLed or SIGSTOPped at random moments, and misuse.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{child_arg, ours, seeded_rng, signal, spawn_child, tier, unique, wait_with_watchdog, Watchdog};
use ndarray::Ix2;
use rustix::process::Signal;
use shmkit::stream::{Policy, PublishError, Publisher, RecvError, RecvTimeoutError, Subscriber, TryRecvError};
use shmkit::Error;

/// A sample's shape in these tests: 256 KiB of u32, filled with one value.
const FRAME: (usize, usize) = (256, 256);

fn block(ms: u64) -> Policy {
    Policy::Block { lag: Duration::from_millis(ms) }
}

/// Publishes `count` frames (0: until killed), each filled with its own
/// sequence number, one every `pause`.
fn publish(name: &str, policy: Policy, count: u64, pause: Duration) {
    let p = Publisher::<u32, Ix2>::builder(name, FRAME).slots(8).subscribers(3).policy(policy).create();
    let p = p.unwrap();
    for i in 1.. {
        let mut loan = p.loan().unwrap();
        let next = i as u32;
        loan.fill(next);
        assert_eq!(p.publish(loan).unwrap(), i, "numbers follow publish order");
        if count != 0 && i == count {
            break;
        }
        std::thread::sleep(pause);
    }
}

/// Checks a sample: every element equal to its sequence number (a torn
/// frame would mix two).
fn intact(s: &shmkit::stream::Sample<'_, u32, Ix2>) {
    let want = s.seq() as u32;
    assert!(s.iter().all(|&x| x == want), "sample {} is torn or mislabelled", s.seq());
}

fn publisher_child(test: &str, name: &str) -> Child {
    spawn_child(test, name, Stdio::null())
}

#[test]
fn in_order_subscribers_get_every_sample_of_a_block_stream_and_count_the_missed_ones_of_an_overwrite_one() {
    let test = "in_order_subscribers_get_every_sample_of_a_block_stream_and_count_the_missed_ones_of_an_overwrite_one";
    if let Some(arg) = child_arg() {
        let (name, policy) = arg.split_once(' ').unwrap();
        let policy = if policy == "block" { block(5000) } else { Policy::Overwrite };
        return publish(name, policy, 2000, Duration::ZERO);
    }
    let _w = Watchdog::new(Duration::from_secs(120));
    for policy in ["block", "overwrite"] {
        let name = unique("stream-order");
        let child = publisher_child(test, &format!("{name} {policy}"));
        let sub = Subscriber::<u32, Ix2>::open_timeout(&name, Duration::from_secs(30)).unwrap();
        // It reads what is published from its open on (the publisher may
        // have begun already).
        let (mut expect, mut missed, mut got, mut first) = (0, 0, 0, 0);
        loop {
            match sub.next_timeout(Duration::from_secs(30)) {
                Ok(s) => {
                    intact(&s);
                    if first == 0 {
                        (first, expect) = (s.seq() - s.missed(), s.seq() - s.missed());
                    }
                    assert_eq!(s.seq(), expect + s.missed(), "in order, the skipped ones counted");
                    if policy == "block" {
                        assert_eq!(s.missed(), 0, "a Block stream loses nothing");
                    }
                    missed += s.missed();
                    expect = s.seq() + 1;
                    got += 1;
                    if got % 97 == 0 {
                        std::thread::sleep(Duration::from_millis(2)); // lag now and then
                    }
                }
                Err(RecvTimeoutError::Ended) => break,
                Err(e) => panic!("{policy}: {e}"),
            }
        }
        assert_eq!(expect, 2001, "{policy}: read to the last sample, then the end");
        assert_eq!(got + missed, 2001 - first);
        println!("{policy}: {got} read, {missed} missed");
        assert!(wait_with_watchdog(child, Duration::from_secs(30)).success());
    }
}

#[test]
fn a_recorder_gets_every_frame_while_a_latest_only_viewer_holds_nothing_back() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let name = unique("stream-rec");
    let p =
        Publisher::<u32, Ix2>::builder(&name, FRAME).slots(6).subscribers(2).policy(block(10_000)).create().unwrap();
    let recorder = Subscriber::<u32, Ix2>::open(&name).unwrap();
    let viewer = Subscriber::<u32, Ix2>::open(&name).unwrap();
    let mut recorded = 0;
    for i in 1..=300u64 {
        let mut loan = p.try_loan().expect("the viewer holds nothing back, the recorder keeps up");
        loan.fill(i as u32);
        p.publish(loan).unwrap();
        if i == 1 || i % 10 == 0 {
            // From its first `latest`, the viewer holds the publisher back no more.
            let seen = viewer.latest().unwrap();
            intact(&seen);
            assert_eq!(seen.seq(), i, "the newest");
        }
        while let Ok(s) = recorder.try_next() {
            intact(&s);
            recorded += 1;
            assert_eq!(s.seq(), recorded);
        }
    }
    assert_eq!(recorded, 300);
    drop(p);
    assert!(matches!(recorder.next(), Err(RecvError::Ended)));
    assert!(matches!(viewer.latest(), Err(RecvError::Ended)), "after the end, the end, not the same sample forever");
}

#[test]
fn subscribers_killed_or_stopped_at_random_moments_never_hold_the_publisher_past_its_limit() {
    let test = "subscribers_killed_or_stopped_at_random_moments_never_hold_the_publisher_past_its_limit";
    if let Some(name) = child_arg() {
        // A subscriber that reads in order, holds each sample a moment,
        // and now and then holds two.
        let sub = Subscriber::<u32, Ix2>::open_timeout(&name, Duration::from_secs(30)).unwrap();
        loop {
            match sub.next() {
                Ok(s) => {
                    intact(&s);
                    std::thread::sleep(Duration::from_micros(200 * (s.seq() % 7)));
                }
                Err(RecvError::Dropped) => {}
                Err(_) => return,
            }
        }
    }
    let _w = Watchdog::new(Duration::from_secs(600));
    let mut rng = seeded_rng("stream subscriber kills");
    let rounds = tier(30, 120);
    for policy in [block(200), Policy::Overwrite] {
        let name = unique("stream-subkill");
        let p = Publisher::<u32, Ix2>::builder(&name, FRAME).slots(8).subscribers(3).policy(policy).create().unwrap();
        let mut children: Vec<Child> = Vec::new();
        let (mut kills, mut stops, mut longest, mut sent) = (0, 0, Duration::ZERO, 0u64);
        let mut send = |p: &Publisher<u32, Ix2>, longest: &mut Duration| {
            let t = Instant::now();
            let mut loan = p.loan().unwrap();
            *longest = (*longest).max(t.elapsed());
            if sent % 5 == 0 {
                drop(loan); // unpublished: the slot goes back
                loan = p.loan().unwrap();
            }
            sent += 1;
            loan.fill(sent as u32);
            assert_eq!(p.publish(loan).unwrap(), sent);
        };
        for _ in 0..rounds {
            while children.len() < 3 {
                children.push(spawn_child(test, &name, Stdio::null()));
            }
            let until = Instant::now() + Duration::from_millis(rng.below(40));
            while Instant::now() < until {
                send(&p, &mut longest);
            }
            let victim = children.swap_remove(rng.below(children.len() as u64) as usize);
            if rng.chance(3) {
                // Stopped (as by a debugger or Ctrl-Z), then killed a moment later.
                signal(victim.id(), Signal::STOP).unwrap();
                stops += 1;
                let until = Instant::now() + Duration::from_millis(300);
                while Instant::now() < until {
                    send(&p, &mut longest);
                }
            }
            kill(victim);
            kills += 1;
        }
        children.into_iter().for_each(kill);
        // Every place and every held sample came back: three new
        // subscribers fit, and the publisher lends every spare slot at once.
        let subs: Vec<_> = (0..3).map(|_| Subscriber::<u32, Ix2>::open(&name).unwrap()).collect();
        let loans: Vec<_> = (0..8 - 3 - 1).map(|_| p.try_loan().expect("a slot a dead subscriber held")).collect();
        drop((loans, subs));
        println!("{policy:?}: {kills} kills ({stops} after a stop), longest loan {longest:?}");
        assert!(longest < Duration::from_secs(2), "a loan waited {longest:?}: a dead or stopped reader held it");
    }
}

/// Kills a subscriber, which must not have failed on its own before
/// (a place it could not take, say: the table is never full here).
fn kill(mut c: Child) {
    if let Ok(Some(status)) = c.try_wait() {
        assert!(status.success(), "a subscriber failed before it was killed: {status}");
    }
    let _ = signal(c.id(), Signal::KILL);
    let _ = c.wait();
}

#[test]
fn publishers_killed_at_random_moments_never_show_a_torn_sample_and_their_subscribers_always_end() {
    let test = "publishers_killed_at_random_moments_never_show_a_torn_sample_and_their_subscribers_always_end";
    if let Some(name) = child_arg() {
        return publish(&name, Policy::Overwrite, 0, Duration::from_micros(50));
    }
    let _w = Watchdog::new(Duration::from_secs(600));
    let mut rng = seeded_rng("stream publisher kills");
    let rounds = tier(20, 100);
    let mut read = 0;
    for _ in 0..rounds {
        let name = unique("stream-pubkill");
        let child = publisher_child(test, &name);
        let sub = Subscriber::<u32, Ix2>::open_timeout(&name, Duration::from_secs(30)).unwrap();
        let kill_at = Instant::now() + Duration::from_micros(rng.below(30_000));
        let mut child = Some(child);
        loop {
            if child.is_some() && Instant::now() >= kill_at {
                kill(child.take().unwrap());
            }
            match sub.next_timeout(Duration::from_secs(10)) {
                Ok(s) => {
                    intact(&s);
                    read += 1;
                }
                Err(RecvTimeoutError::PublisherDied) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(child.is_none(), "the stream ended while its publisher lived");
        drop(sub);
        // The dead publisher's segment: gc collects it.
        let removed = shmkit::admin::Gc::new().prefix(&name).run().unwrap();
        assert!(removed.iter().any(|r| r == &name), "gc removed the dead publisher's stream: {removed:?}");
    }
    println!("{rounds} publishers killed, {read} samples read, none torn");
    assert!(ours().iter().all(|n| !n.contains("stream-pubkill")), "gc left nothing");
}

#[test]
fn a_publisher_started_again_under_a_dead_ones_name_takes_the_stream_over() {
    let test = "a_publisher_started_again_under_a_dead_ones_name_takes_the_stream_over";
    if let Some(name) = child_arg() {
        return publish(&name, Policy::Overwrite, 0, Duration::from_millis(1));
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let name = unique("stream-takeover");
    let child = publisher_child(test, &name);
    let sub = Subscriber::<u32, Ix2>::open_timeout(&name, Duration::from_secs(30)).unwrap();
    let first = sub.next().unwrap().seq();
    kill(child);
    let mut last = first;
    loop {
        match sub.next() {
            Ok(s) => last = s.seq(),
            Err(RecvError::PublisherDied) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let p = Publisher::<u32, Ix2>::create(&name, FRAME, 8, Policy::Overwrite).expect("takes the dead one's name");
    let again = Subscriber::<u32, Ix2>::open(&name).unwrap();
    let mut loan = p.loan().unwrap();
    loan.fill(0);
    let seq = p.publish(loan).unwrap();
    assert!(seq > last, "numbers go on after the dead publisher's ({seq} after {last})");
    assert_eq!(again.next().unwrap().seq(), seq);
    assert!(matches!(sub.try_next(), Err(TryRecvError::PublisherDied)), "the old stream stays ended");
}

#[test]
fn misuse_gets_clear_errors() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let name = unique("stream-misuse");
    let err = |r: shmkit::Result<Publisher<u32, Ix2>>| r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err(Publisher::create(&name, (0, 4), 8, Policy::Overwrite)).contains("must hold elements"));
    assert!(err(Publisher::<u32, Ix2>::builder(&name, (2, 2)).slots(3).subscribers(4).create()).contains("needs 6"));
    assert!(err(Publisher::create(&name, (2, 2), 8, block(0))).contains("lag limit"));
    assert!(err(Publisher::create(&name, (usize::MAX / 2, 4), 8, Policy::Overwrite)).contains("overflows"));
    let p = Publisher::<u32, Ix2>::create(&name, (2, 2), 8, Policy::Overwrite).unwrap();
    assert!(matches!(
        Publisher::<u32, Ix2>::create(&name, (2, 2), 8, Policy::Overwrite),
        Err(Error::AlreadyExists { creator_gone: false, .. })
    ));
    assert!(matches!(Subscriber::<f32, Ix2>::open(&name), Err(Error::WrongDtype { .. })));
    assert!(matches!(Subscriber::<u32, ndarray::Ix3>::open(&name), Err(Error::WrongNdim { .. })));
    assert!(matches!(shmkit::SharedArray::<u32, Ix2>::open(&name), Err(Error::WrongKind { .. })));
    let other = Publisher::<u32, Ix2>::create(&unique("stream-other"), (2, 2), 8, Policy::Overwrite).unwrap();
    let loan = other.loan().unwrap();
    let back = p.publish(loan).unwrap_err().into_inner();
    other.publish(back).unwrap();
    let sub = Subscriber::<u32, Ix2>::open(&name).unwrap();
    assert!(matches!(sub.try_next(), Err(TryRecvError::Empty)));
    assert!(matches!(sub.next_timeout(Duration::from_millis(20)), Err(RecvTimeoutError::Timeout)));
    for _ in 0..2 {
        let l = p.loan().unwrap();
        p.publish(l).unwrap();
    }
    let held = sub.next().unwrap();
    assert!(matches!(sub.next(), Err(RecvError::TooManySamples)), "one hold each by default");
    drop(held);
    assert_eq!(sub.next_timeout(Duration::MAX).unwrap().seq(), 2, "Duration::MAX waits as long as it takes");
    let missing = unique("stream-missing");
    let t = Instant::now();
    assert!(matches!(
        Subscriber::<u32, Ix2>::open_timeout(&missing, Duration::from_millis(50)),
        Err(Error::NotFound { .. })
    ));
    assert!(t.elapsed() >= Duration::from_millis(50));
    let loans: Vec<_> = (0..8 - 6 - 1).map(|_| p.loan().unwrap()).collect();
    assert!(matches!(p.loan(), Err(shmkit::stream::LoanError::TooManyLoans)));
    drop(loans);
    let _ = PublishError::<()>::NotThisPublisher(());
}

#[test]
fn a_publisher_killed_while_claiming_a_slot_leaves_its_sample_readable_and_the_stream_ends() {
    let test = "a_publisher_killed_while_claiming_a_slot_leaves_its_sample_readable_and_the_stream_ends";
    if let Some(name) = child_arg() {
        // Fills the 8 slots, then dies claiming the oldest for the 9th (the
        // claim's fault point sits between its mark and its hold check), or
        // dies at the first publish (the publish points).
        let p = Publisher::<u32, Ix2>::builder(&name, FRAME).slots(8).subscribers(2).policy(Policy::Overwrite);
        let p = p.create().unwrap();
        std::thread::sleep(Duration::from_millis(300)); // the subscriber opens meanwhile
        for i in 1..=9u32 {
            let mut loan = p.loan().unwrap();
            loan.fill(i);
            p.publish(loan).unwrap();
        }
        unreachable!("the fault point kills the publisher first");
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    for point in ["stream-claim", "stream-publish-before-newest", "stream-publish-before-wake"] {
        let name = unique("stream-claimkill");
        let mut cmd = common::child_command(test, &name, Some(point));
        let child = cmd.stdout(Stdio::null()).spawn().unwrap();
        let sub = Subscriber::<u32, Ix2>::open_timeout(&name, Duration::from_secs(30)).unwrap();
        let mut seqs = Vec::new();
        loop {
            match sub.next_timeout(Duration::from_secs(20)) {
                Ok(s) => {
                    intact(&s);
                    seqs.push(s.seq());
                }
                Err(RecvTimeoutError::PublisherDied) => break,
                Err(e) => panic!("{point}: {e}"),
            }
        }
        assert!(!wait_with_watchdog(child, Duration::from_secs(30)).success(), "{point}: the publisher died");
        // At the claim: samples 1..=8 were published whole, and sample 1,
        // claimed by a publisher that died, is still whole and read. The
        // publish points fire at the first publish: killed before its
        // number is out, nothing shows; before its wake, sample 1 does.
        let want: Vec<u64> = match point {
            "stream-claim" => (1..=8).collect(),
            "stream-publish-before-newest" => vec![],
            _ => vec![1],
        };
        assert_eq!(seqs, want, "{point}");
        drop(sub);
        shmkit::admin::Gc::new().prefix(&name).run().unwrap();
    }
}

#[test]
fn a_forked_child_dropping_its_copies_lets_go_of_nothing() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let name = unique("stream-fork");
    let p = Publisher::<u32, Ix2>::builder(&name, FRAME).slots(8).subscribers(2).policy(Policy::Overwrite);
    let p = p.create().unwrap();
    let sub = Subscriber::<u32, Ix2>::open(&name).unwrap();
    let mut loan = p.loan().unwrap();
    loan.fill(1);
    p.publish(loan).unwrap();
    let held = sub.next().unwrap();
    let lent = p.loan().unwrap();
    // SAFETY: the child only drops the copies, then leaves with _exit.
    match unsafe { libc::fork() } {
        0 => {
            drop(lent);
            drop(held);
            unsafe { libc::_exit(0) };
        }
        pid => {
            let mut status = 0;
            // SAFETY: waits for the child just forked.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        }
    }
    // The parent's hold and loan stand: publishing round the ring many
    // times never touches the held sample or the lent slot.
    for i in 2..40u32 {
        let mut next = p.loan().unwrap();
        next.fill(i);
        p.publish(next).unwrap();
    }
    assert!(held.iter().all(|&x| x == 1), "the held sample was overwritten");
    drop((held, lent));
}

#[test]
fn a_block_publisher_that_only_try_loans_still_drops_a_stalled_reader_after_the_lag_limit() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let name = unique("stream-trylag");
    let p = Publisher::<u32, Ix2>::builder(&name, FRAME).slots(4).subscribers(2).policy(block(100)).create().unwrap();
    let stalled = Subscriber::<u32, Ix2>::open(&name).unwrap(); // in order, never reads
    let reader = Subscriber::<u32, Ix2>::open(&name).unwrap();
    let (start, mut sent, mut full) = (Instant::now(), 0u64, 0);
    while sent < 20 {
        match p.try_loan() {
            Ok(mut loan) => {
                sent += 1;
                loan.fill(sent as u32);
                p.publish(loan).unwrap();
                intact(&reader.next().unwrap());
            }
            Err(shmkit::stream::TryLoanError::Full) => {
                full += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("{e}"),
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the stalled reader held the stream");
    }
    assert!(full > 0, "the stalled reader held the publisher back at first");
    assert!(matches!(stalled.next(), Err(RecvError::Dropped)), "and was dropped, and told so");
    assert_eq!(stalled.try_next().err(), Some(TryRecvError::Empty), "then goes on from the newest");
    let mut loan = p.loan().unwrap();
    loan.fill(21);
    p.publish(loan).unwrap();
    assert_eq!(stalled.next().unwrap().seq(), 21);
}

#[test]
fn the_dyn_handles_are_shared_between_threads_and_number_samples_in_publish_order() {
    use shmkit::stream::{DynPublisher, DynSubscriber};
    use std::sync::Arc;
    let _w = Watchdog::new(Duration::from_secs(60));
    let name = unique("stream-dyn");
    let p = Arc::new(
        DynPublisher::builder(&name, &[16])
            .slots(16)
            .subscribers(2)
            .holds(4)
            .policy(block(10_000))
            .create_dyn(shmkit::DType::F32)
            .unwrap(),
    );
    let sub = Arc::new(DynSubscriber::open(&name).unwrap());
    assert_eq!((p.sample_bytes(), sub.dtype()), (64, shmkit::DType::F32));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || {
                (0..250)
                    .map(|_| {
                        let k = p.loan().unwrap();
                        p.publish(k).unwrap()
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    // Samples taken here, let go on another thread.
    let (tx, rx) = std::sync::mpsc::channel::<usize>();
    let releaser = {
        let sub = sub.clone();
        std::thread::spawn(move || rx.into_iter().for_each(|hold| sub.release(hold)))
    };
    let mut seen = Vec::new();
    while seen.len() < 1000 {
        match sub.next_timeout(Duration::from_secs(30)) {
            Ok(t) => {
                seen.push(t.seq);
                tx.send(t.hold).unwrap();
            }
            // Its four holds are all on their way to the releaser.
            Err(RecvTimeoutError::TooManySamples) => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
    drop(tx);
    releaser.join().unwrap();
    let mut numbers: Vec<u64> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    numbers.sort();
    assert_eq!(numbers, (1..=1000).collect::<Vec<u64>>(), "each publish got its own number");
    assert_eq!(seen, (1..=1000).collect::<Vec<u64>>(), "in order, none lost on a Block stream");
}
