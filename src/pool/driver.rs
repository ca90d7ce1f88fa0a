//! One coordinator thread per helper: feeds it jobs, enforces the running
//! job's timeout, and replaces the helper when it dies.
//!
//! A helper runs its jobs strictly in order, so when it dies the first
//! unanswered job is the one it was running: that job alone fails (or is
//! retried); jobs queued behind it in the pipeline go back to the queue.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{PoolError, TaskError};
use super::job::Job;
use super::spawn::{self, wait_readable, Helper};
use super::spin::{spin, WINDOW};
use super::wire::{frame, send, Failure, Fill, FromHelper, ToHelper};
use super::{Inner, Work};

/// Consecutive failed starts after which a driver gives up.
const MAX_START_FAILURES: u32 = 3;

/// The driver thread's body: start a helper, serve it, replace it, repeat.
pub(crate) fn run(inner: Arc<Inner>, index: usize, ready: Sender<Result<(), PoolError>>) {
    let mut ready = Some(ready);
    let mut failures = 0;
    loop {
        let helper = match spawn::start(&inner.config, &inner.names) {
            Ok(helper) => helper,
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
        inner.set_helper(index, Some(helper.cell.clone()));
        let _ = ready.take().map(|tx| tx.send(Ok(())));
        let session = Session { inner: &inner, index, h: helper, inflight: VecDeque::new(), sent: 0, next_id: 1 };
        if session.run() == End::Stop {
            return inner.driver_gone("the pool is shut down".into());
        }
    }
}

/// A job sent to the helper and not yet answered.
struct InFlight {
    job: Job,
    id: u64,
    started: Option<Instant>,
}

/// How a helper was lost.
enum Death {
    /// It died, or its stream broke.
    Lost,
    /// The running job passed its timeout (the given one).
    TimedOut(Duration),
}

#[derive(PartialEq)]
enum End {
    Replace,
    Stop,
}

/// One helper's life, from handshake to exit.
struct Session<'a> {
    inner: &'a Inner,
    index: usize,
    h: Helper,
    inflight: VecDeque<InFlight>,
    sent: usize,
    next_id: u64,
}

impl Session<'_> {
    fn run(mut self) -> End {
        loop {
            if !self.fill() {
                return self.on_death(Death::Lost);
            }
            if self.inflight.is_empty() {
                if self.sent >= self.inner.config.max_tasks.unwrap_or(usize::MAX) {
                    return self.retire(End::Replace); // recycle after max tasks
                }
                match self.inner.wait_for_work() {
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

    /// Sends queued jobs until the pipeline is full, in one write. False
    /// if the helper turned out to have died while idle.
    fn fill(&mut self) -> bool {
        let max = self.inner.config.max_tasks.unwrap_or(usize::MAX);
        let depth = self.inner.pipeline_depth();
        if depth > self.inner.config.pipeline && self.inflight.len() > depth / 2 {
            return true; // deep pipeline: refill in batches, one write per half
        }
        let mut out = Vec::new();
        while self.inflight.len() < depth && self.sent < max {
            let next = if self.inflight.is_empty() { self.inner.try_pop() } else { self.inner.try_pop_ahead() };
            let Some(job) = next else { break };
            if job.is_cancelled() {
                job.fail(TaskError::Cancelled);
                continue;
            }
            if self.inflight.is_empty() && exited(&mut self.h.child) {
                self.inner.requeue(vec![job]); // not this job's fault
                return false;
            }
            let (id, task) = (self.next_id, job.task);
            self.next_id += 1;
            out.extend(frame(&ToHelper::Run { job: id, task, args: Cow::Borrowed(&job.args) }));
            self.sent += 1;
            self.inflight.push_back(InFlight { job, id, started: None });
        }
        // A dead helper shows up as end-of-stream when reading.
        let _ = std::io::Write::write_all(&mut &self.h.stream, &out);
        true
    }

    /// Waits for the front job's result, up to its deadline.
    fn await_front(&mut self) -> Result<(), Death> {
        let front = self.inflight.front_mut().expect("a job in flight");
        let started = *front.started.get_or_insert_with(Instant::now);
        if !front.job.start_on(&self.h.cell) {
            self.h.cell.killed_for_cancel.store(true, Ordering::SeqCst); // cancelled while queued here
            return Err(Death::Lost);
        }
        let (id, timeout) = (front.id, front.job.timeout);
        loop {
            match self.h.reader.next::<FromHelper>() {
                Some(Ok(FromHelper::Done { job, results })) if job == id => {
                    return if self.complete_front(results) { Ok(()) } else { Err(Death::Lost) };
                }
                Some(_) => return Err(Death::Lost), // a garbled or out-of-turn message
                None => {}
            }
            let left = timeout.map(|t| (started + t).saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Err(Death::TimedOut(timeout.expect("deadline implies timeout")));
            }
            match self.read_some(left) {
                Ok(Fill::Data | Fill::WouldBlock) => continue,
                _ => return Err(Death::Lost),
            }
        }
    }

    /// Reads whatever results arrive: polls a short window (short tasks
    /// answer within microseconds), then sleeps until data or `left` passes.
    fn read_some(&mut self, left: Option<Duration>) -> std::io::Result<Fill> {
        let (reader, stream) = (&mut self.h.reader, &self.h.stream);
        let window = left.map_or(WINDOW, |l| l.min(WINDOW));
        let quick = spin(window, || match reader.fill(stream, false) {
            Ok(Fill::WouldBlock) => None,
            other => Some(other),
        });
        match quick {
            Some(fill) => fill,
            None if wait_readable(stream, left) => reader.fill(stream, false),
            None => Ok(Fill::WouldBlock),
        }
    }

    /// Delivers the front job's results; false if they do not fit it.
    fn complete_front(&mut self, results: Vec<Result<Vec<u8>, Failure>>) -> bool {
        if self.inflight.front().is_none_or(|f| f.job.args.len() != results.len()) {
            return false;
        }
        let done = self.inflight.pop_front().expect("checked above");
        done.job.stop_running();
        done.job.deliver(results.into_iter().map(|r| r.map_err(TaskError::from)).collect());
        true
    }

    /// The helper is dead or must die: kill it, keep what it finished,
    /// fail or retry the job it was running, requeue the rest.
    fn on_death(mut self, death: Death) -> End {
        self.inflight.iter().for_each(|f| f.job.stop_running());
        self.inner.set_helper(self.index, None); // before reaping frees the pid
        let _ = self.h.child.kill();
        while let Ok(FromHelper::Done { job, results }) = self.h.reader.recv(&self.h.stream) {
            if self.inflight.front().is_none_or(|f| f.id != job) || !self.complete_front(results) {
                break;
            }
        }
        let status = self.h.child.wait().ok();
        let (signal, code) = (status.and_then(|s| s.signal()), status.and_then(|s| s.code()));
        let cancel_kill = self.h.cell.killed_for_cancel.load(Ordering::SeqCst);
        let terminated = self.inner.is_terminated();
        let mut requeue = Vec::new();
        for (k, mut f) in self.inflight.drain(..).enumerate() {
            let culprit = k == 0 && f.started.is_some() && !cancel_kill;
            if terminated {
                f.job.fail(TaskError::Terminated);
            } else if f.job.is_cancelled() {
                f.job.fail(TaskError::Cancelled);
            } else if !culprit {
                requeue.push(f.job);
            } else if let Death::TimedOut(t) = death {
                f.job.fail(TaskError::TimedOut(t));
            } else if f.job.retries > 0 {
                f.job.retries -= 1;
                requeue.push(f.job);
            } else {
                f.job.fail(TaskError::WorkerDied { signal, code });
            }
        }
        self.inner.requeue(requeue);
        if terminated {
            End::Stop
        } else {
            End::Replace
        }
    }

    /// Asks an idle helper to exit, killing it if it has not within 2 s.
    fn retire(mut self, end: End) -> End {
        self.inner.set_helper(self.index, None);
        let _ = send(&mut &self.h.stream, &ToHelper::Exit);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !exited(&mut self.h.child) {
            if Instant::now() > deadline {
                let _ = self.h.child.kill();
                let _ = self.h.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        end
    }
}

/// True if `child` has exited (and is now reaped).
fn exited(child: &mut Child) -> bool {
    !matches!(child.try_wait(), Ok(None))
}
