//! One coordinator thread per helper: feeds it jobs, enforces the running
//! job's timeout and its cancellation, and replaces the helper when it dies.
//!
//! A helper runs its jobs strictly in order and records each one's start
//! in its status word (see `status`), so when it dies the driver knows
//! exactly which job was running: that job alone fails (or is retried),
//! results it wrote before dying are kept, and jobs behind it, which never
//! started, go back to the queue. Writes to the helper never block: frames
//! wait in an outbox, so a helper that stops reading (it is busy, or hung)
//! can never keep the driver from its deadlines.

use std::borrow::Cow;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pool::coordinator::cell::HelperCell;
use crate::pool::coordinator::lane::{InFlight, Lane, LaneState};
use crate::pool::coordinator::shared::{Shared, Work};
use crate::pool::error::{PoolError, TaskError};
use crate::pool::start::process::Process;
use crate::pool::start::relay;
use crate::pool::start::spawn::{self, Started};
use crate::pool::transport::ring::{self, Peer, Ring};
use crate::pool::transport::status::Stop;
use crate::pool::transport::wire::{fits, frame, frame_into, too_large, Fill, FromHelper, Items, ToHelper};

/// Consecutive failed starts after which a driver gives up.
const MAX_START_FAILURES: u32 = 3;

/// Helpers that may die with a job next in line, not yet started, before
/// the job is failed instead of requeued: a job whose message kills a
/// helper before it starts must not take down helper after helper.
const MAX_BOUNCES: u32 = 3;

/// Longest a driver sleeps without looking at its job's cancellation.
const CANCEL_CHECK: Duration = Duration::from_millis(20);

/// Longest a driver waits for a killed helper to be gone before it
/// delivers the verdict on its job (a SIGKILLed process ends within
/// microseconds unless the kernel holds it in an uninterruptible wait,
/// where it runs no code of its own either).
const EXIT_WAIT: Duration = Duration::from_millis(50);

/// The driver thread's body: start a helper, serve it, replace it, repeat.
/// A panic in it (a bug) fails what is queued rather than leaving it
/// waiting for a driver that is gone.
pub(crate) fn run(inner: Arc<Shared>, index: usize, ready: Sender<Result<(), PoolError>>) {
    let serve = std::panic::AssertUnwindSafe(|| drive(&inner, index, ready));
    if let Err(panic) = std::panic::catch_unwind(serve) {
        let what = panic.downcast_ref::<&str>().map(|s| s.to_string()).or(panic.downcast_ref::<String>().cloned());
        inner.set_helper(index, None);
        inner.driver_gone(format!("a pool driver thread panicked: {}", what.unwrap_or_default()));
    }
}

fn drive(inner: &Arc<Shared>, index: usize, ready: Sender<Result<(), PoolError>>) {
    let inner = inner.clone();
    let mut ready = Some(ready);
    let mut failures = 0;
    // Job ids grow across this slot's helpers: an answer from a helper
    // that was replaced can never pass for one of its successor's.
    let mut next_id = 1;
    loop {
        if ready.is_none() && inner.is_done() {
            // Shut down with nothing left to do: replacing a helper that
            // died now would only delay the pool's drop (and, with a long
            // start timeout, hold it up).
            return inner.driver_gone("the pool is shut down".into());
        }
        let (helper, lane) = match spawn::start(&inner.config, &inner.names, &inner.region, index) {
            Ok(started) => Helper::new(started, &inner, index),
            Err(e) if ready.is_some() => {
                let _ = ready.take().map(|tx| tx.send(Err(e)));
                return inner.driver_gone("the pool failed to start".into());
            }
            Err(e) => {
                failures += 1;
                if failures >= MAX_START_FAILURES || inner.is_stopping() {
                    return inner.driver_gone(e.to_string());
                }
                std::thread::sleep(Duration::from_millis(20 << failures));
                continue;
            }
        };
        failures = 0;
        inner.set_helper(index, Some(lane.clone()));
        let _ = ready.take().map(|tx| tx.send(Ok(())));
        // Where the next frame lands in the job ring's stream: past the
        // initializer's frame, if there was one.
        let queued_bytes = inner.region.jobs(index).expect("numbered within").written();
        let st = LaneState { first_id: next_id, next_id, queued_bytes, ..LaneState::default() };
        let session = Session { inner: &inner, index, h: helper, lane, st };
        let (end, next) = session.run();
        next_id = next;
        if end == End::Stop {
            return inner.driver_gone("the pool is shut down".into());
        }
    }
}

/// A running helper, as its driver holds it.
struct Helper {
    child: Process,
    cell: Arc<HelperCell>,
    /// Its output's relays, told it is gone when this is dropped.
    _relays: Vec<relay::Relay>,
}

impl Helper {
    /// The helper, and its lane (which holds its socket: the handshake is
    /// over, frames go through the rings).
    fn new(s: Started, shared: &Arc<Shared>, index: usize) -> (Helper, Arc<Lane>) {
        let cell = Arc::new(HelperCell::new(s.helper, s.launcher, shared.region.clone(), index));
        let lane = Lane::new(cell.clone(), s.stream, shared, index);
        (Helper { child: s.child, cell, _relays: s.relays }, Arc::new(lane))
    }
}

impl Drop for Helper {
    /// A helper given up without being reaped (its driver thread panicked)
    /// is killed and reaped: no process outlives its pool.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.cell.retire();
            let _ = self.child.wait();
        }
    }
}

/// Why a helper is being given up.
#[derive(Clone, Copy, PartialEq)]
enum Death {
    /// It died, or its stream broke.
    Lost,
    /// Job `.1` passed its timeout `.0`; its helper was killed.
    TimedOut(Duration, u64),
    /// The running (or next) job was cancelled; it was killed.
    Cancelled,
}

#[derive(PartialEq)]
enum End {
    Replace,
    Stop,
}

/// One helper's life, from handshake to exit.
struct Session<'a> {
    inner: &'a Shared,
    index: usize,
    h: Helper,
    lane: Arc<Lane>,
    /// The session's state, while this driver holds it (see `lane`).
    st: LaneState,
}

impl<'a> Session<'a> {
    /// Serves the helper until it is replaced or the pool stops; returns
    /// which, and the id the next helper's first job gets.
    fn run(mut self) -> (End, u64) {
        loop {
            self.fill();
            if self.st.inflight.is_empty() {
                if self.st.sent() >= self.inner.config.max_tasks.unwrap_or(usize::MAX) {
                    self.inner.pass_on(&self.lane); // a wake-up that brought it here is not for it
                    return self.retire(End::Replace); // recycle after max tasks
                }
                // Idle: the state is parked, lendable to callers, meanwhile.
                self.lane.park(std::mem::take(&mut self.st));
                let work = self.inner.wait_for_work(&self.lane);
                self.st = self.lane.unpark();
                if self.st.broken {
                    self.inner.pass_on(&self.lane);
                    return self.on_death(Death::Lost); // a caller read garbage
                }
                match work {
                    _ if !self.st.inflight.is_empty() => self.inner.pass_on(&self.lane), // a lent job first
                    Work::Ready => continue,
                    Work::Closed => return self.retire(End::Stop),
                    Work::Terminated => return self.on_death(Death::Lost),
                }
            }
            if let Err(death) = self.await_front() {
                return self.on_death(death);
            }
        }
    }

    /// Queues jobs for the helper until the pipeline is full. (A helper
    /// that died while idle shows up as a hang-up when its driver waits;
    /// the job sent to it had not started, so it goes elsewhere.)
    fn fill(&mut self) {
        let max = self.inner.config.max_tasks.unwrap_or(usize::MAX);
        let depth = self.inner.pipeline_depth();
        if depth > self.inner.config.pipeline && self.st.inflight.len() > depth / 2 {
            return; // deep pipeline: refill in batches, one write per half
        }
        while self.st.inflight.len() < depth && self.st.sent() < max {
            let next = if self.st.inflight.is_empty() {
                self.inner.try_pop()
            } else if self.st.inflight.iter().any(|f| f.job.claim.is_some()) {
                None // a claim job runs as long as chunks are left: nothing waits behind it
            } else {
                self.inner.try_pop_ahead(self.st.inflight.len())
            };
            let Some(job) = next else { break };
            if job.timeout == Some(Duration::ZERO) {
                // Out of time before it begins: failing it here costs no
                // helper (sending it would kill one per job).
                job.fail(TaskError::TimedOut(Duration::ZERO));
                continue;
            }
            if !fits(job.args.len()) {
                let why = format!("the arguments take {}", too_large(job.args.len()));
                job.fail(TaskError::Codec(why));
                continue;
            }
            let (id, task) = (self.st.next_id, job.task);
            // Registered before it is sent: a cancel from now on reaches it
            // in this helper's pipeline (see `status`).
            if !job.cancel.sent_to(&self.h.cell, id) {
                job.fail(TaskError::Cancelled);
                continue;
            }
            // Used from here on, sent or not: a cancel may have written it
            // into the skip table, where it must never meet another job.
            self.st.next_id += 1;
            let args = Cow::Borrowed(job.args.as_slice());
            let run = match job.claim {
                Some(claim) => ToHelper::Claim { job: id, task, claim, args },
                None => ToHelper::Run { job: id, task, count: job.count, args },
            };
            let before = self.st.outbox.len();
            if let Err(e) = frame_into(&mut self.st.outbox, &run) {
                job.cancel.forget(&self.h.cell, id);
                job.fail(TaskError::Codec(format!("the arguments could not be sent: {e}")));
                continue;
            }
            let at = self.st.queued_bytes;
            self.st.queued_bytes += (self.st.outbox.len() - before) as u64;
            self.st.inflight.push_back(InFlight { job, id, started: None, at });
        }
        // A dead helper shows up as a hang-up when waiting.
        let _ = self.flush();
    }

    /// Writes what the job ring takes now, never waiting, and rings the
    /// helper if it sleeps.
    fn flush(&mut self) -> std::io::Result<()> {
        if self.st.written < self.st.outbox.len() {
            let jobs = self.jobs();
            let n = jobs.write(&self.st.outbox[self.st.written..])?;
            self.st.written += n;
            if n > 0 {
                jobs.wake_reader(&self.peer());
            }
        }
        if self.st.written == self.st.outbox.len() {
            self.st.outbox.clear();
            self.st.written = 0;
        }
        Ok(())
    }

    fn jobs(&self) -> Ring<'a> {
        self.inner.region.jobs(self.index).expect("drivers are numbered within the pool's segment")
    }

    fn results(&self) -> Ring<'a> {
        self.inner.region.results(self.index).expect("drivers are numbered within the pool's segment")
    }

    /// Waits for the front job's result, up to its deadline, stopping it
    /// if it is cancelled meanwhile.
    fn await_front(&mut self) -> Result<(), Death> {
        let front = self.st.inflight.front_mut().expect("a job in flight");
        let started = *front.started.get_or_insert_with(Instant::now);
        let (id, timeout) = (front.id, front.job.timeout);
        // `None` when the timeout is too long for an Instant: no deadline.
        let deadline = timeout.and_then(|t| started.checked_add(t));
        loop {
            match self.st.reader.next::<FromHelper>() {
                Some(Ok(FromHelper::Done { job, results })) if job == id => {
                    return if self.complete_front(Ok(results)) { Ok(()) } else { Err(Death::Lost) };
                }
                Some(Ok(FromHelper::Skipped { job })) if job == id => {
                    self.complete_front(Err(()));
                    return Ok(());
                }
                Some(_) => return Err(Death::Lost), // a garbled or out-of-turn message
                None => {}
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.stop_front(Stop::Timeout, Death::TimedOut(timeout.expect("a deadline has a timeout"), id))?;
            }
            if self.st.inflight.front().is_some_and(|f| f.job.cancel.is_cancelled()) {
                // Skipped if its body has not begun (its `Skipped` is on its way), else killed.
                self.stop_front(Stop::Cancel, Death::Cancelled)?;
            }
            if self.flush().is_err() {
                return Err(Death::Lost);
            }
            let left = crate::sync::raw::left(deadline);
            let limit = left.map_or(CANCEL_CHECK, |l| l.min(CANCEL_CHECK));
            if limit.is_zero() {
                // Past the deadline with the answer on its way: polls in a
                // loop, letting the helper run between them.
                std::thread::yield_now();
            }
            match self.read_some(limit) {
                Ok(Fill::Data | Fill::WouldBlock) => continue,
                _ => return Err(Death::Lost),
            }
        }
    }

    /// Stops the front job as `stop` asks: `Err(why)` if its helper was
    /// killed for it. `Ok` if it has finished or will be skipped: its
    /// answer is on its way, so keep waiting for it.
    fn stop_front(&self, stop: Stop, why: Death) -> Result<(), Death> {
        let id = self.st.inflight.front().expect("a job in flight").id;
        match self.h.cell.stop_job(id, stop) {
            true => Err(why),
            false => Ok(()),
        }
    }

    /// Reads whatever results arrive: polls a short window (short tasks
    /// answer within microseconds), then sleeps on the doorbell until
    /// results arrive, the job ring takes more of the outbox, or `limit`
    /// passes. `Eof` once the helper is gone.
    fn read_some(&mut self, limit: Duration) -> std::io::Result<Fill> {
        let (results, jobs) = (self.results(), self.jobs());
        let fill = self.st.reader.fill_ring(&results)?;
        if fill == Fill::WouldBlock {
            // Woken by room in the job ring too, while frames wait to go.
            let room = (self.st.written < self.st.outbox.len()).then_some(&jobs);
            if ring::wait_readable(&results, &self.peer(), Some(limit), room).is_err() {
                return Ok(Fill::Eof);
            }
            if self.lane.cell.helper.pidfd.is_none() && self.h.child.has_exited() {
                // No pidfd to wake on (Linux before 5.3): a helper whose
                // socket a child of its own keeps open is seen here.
                return Ok(Fill::Eof);
            }
        }
        let fill = match fill {
            Fill::Data => Fill::Data,
            _ => self.st.reader.fill_ring(&results)?,
        };
        if fill == Fill::Data {
            results.wake_writer(&self.peer()); // if the helper waits for room for its results
        }
        Ok(fill)
    }

    /// The helper as a sleeper waits on it: its socket, and its pidfd.
    fn peer(&self) -> Peer<'_> {
        self.lane.peer()
    }

    /// Delivers the front job's results (`Err` for a job the helper
    /// skipped, as cancelled); false if they do not fit it.
    fn complete_front(&mut self, results: Result<Items, ()>) -> bool {
        self.st.complete_front(&self.h.cell, results)
    }

    /// The helper is dead or must die: kill it, keep what it finished,
    /// blame the job it was running (and only that one), requeue the rest.
    fn on_death(mut self, death: Death) -> (End, u64) {
        let cell = self.h.cell.clone();
        self.st.inflight.iter().for_each(|f| f.job.cancel.forget(&cell, f.id));
        self.inner.set_helper(self.index, None); // before reaping frees the pid
        cell.retire(); // killed, and no canceller signals it from now on
        let gone = cell.helper.wait_exit(EXIT_WAIT);
        if let Death::TimedOut(t, target) = death {
            // The verdict first: the deadline is what the caller was promised.
            if self.st.inflight.front().is_some_and(|f| f.id == target) {
                let f = self.st.inflight.pop_front().expect("checked");
                // A helper not gone yet may still be marking its start: in doubt.
                let last = cell.status().last();
                match gone && (last.job < target || (last.job == target && !last.run)) {
                    true => f.job.fail(TaskError::TimedOut(t)), // still receiving its arguments
                    false => f.job.fail_started(TaskError::TimedOut(t)),
                }
            }
        }
        let status = self.h.child.wait().ok();
        // Behind a launcher, the reaped process is the launcher: wait for
        // the helper itself, so it writes nothing into rings reset for its
        // successor (through its pidfd; without one, until its socket closes).
        if !gone && !cell.helper.wait_exit(Duration::from_secs(5)) {
            ring::wait_hangup(self.lane.stream.as_fd(), Duration::from_millis(200));
        }
        let consumed = self.jobs().consumed();
        self.drain_results();
        let (signal, code) = (status.and_then(|s| s.signal()), status.and_then(|s| s.code()));
        // Final now that the helper is gone: the one job whose body began.
        let last = cell.status().last();
        let terminated = self.inner.is_terminated();
        let mut requeue = Vec::new();
        for (k, mut f) in self.st.inflight.drain(..).enumerate() {
            let ran = f.id < last.job || (f.id == last.job && last.run); // and no result came back
            match (k, death) {
                _ if terminated && ran => f.job.fail_started(TaskError::Terminated),
                _ if terminated => f.job.fail(TaskError::Terminated),
                _ if f.job.cancel.is_cancelled() && ran => f.job.fail_started(TaskError::Cancelled),
                _ if f.job.cancel.is_cancelled() => f.job.fail(TaskError::Cancelled),
                (0, Death::Lost) if !ran && consumed <= f.at => requeue.push(f.job), // never sent its way
                (0, Death::Lost) if !ran => {
                    // Its helper died by itself while reading it: not its
                    // fault, unless it keeps happening.
                    f.job.bounced += 1;
                    match f.job.bounced >= MAX_BOUNCES {
                        true => f.job.fail(TaskError::WorkerDied { signal, code }),
                        false => requeue.push(f.job),
                    }
                }
                _ if !ran => requeue.push(f.job), // never started: safe to run elsewhere
                _ if f.job.retries > 0 => {
                    f.job.retries -= 1;
                    requeue.push(f.job);
                }
                _ => f.job.fail_started(TaskError::WorkerDied { signal, code }),
            }
        }
        self.inner.requeue(requeue);
        match terminated {
            true => (End::Stop, self.st.next_id),
            false => (End::Replace, self.st.next_id),
        }
    }

    /// Delivers the results a dead helper wrote before it died, in order.
    /// It is reaped, so what it wrote is all in its result ring.
    fn drain_results(&mut self) {
        let results = self.results();
        while let Ok(Fill::Data) = self.st.reader.fill_ring(&results) {}
        let _ = self.st.deliver_answers(&self.h.cell); // stops at the first that is not the front's
    }

    /// Asks an idle helper to exit, killing it if it has not within 2 s.
    fn retire(mut self, end: End) -> (End, u64) {
        self.inner.set_helper(self.index, None);
        // Idle: every job was answered, so the ring has room for this.
        if let Ok(bytes) = frame(&ToHelper::Exit) {
            let _ = ring::write_all(&self.jobs(), &self.peer(), &bytes, Some(Instant::now() + Duration::from_secs(1)));
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while !exited(&mut self.h.child) {
            if Instant::now() > deadline {
                self.h.child.kill();
                let _ = self.h.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        (end, self.st.next_id)
    }
}

/// True if `child` has exited (and is now reaped).
fn exited(child: &mut Process) -> bool {
    !matches!(child.try_wait(), Ok(None))
}
