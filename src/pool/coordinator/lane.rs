//! `Lane`: one helper's session with the pool (which jobs it was sent,
//! what of its answers was read), and the *direct hand-off*: while its
//! driver idles, a submitting thread may send a job itself and read the
//! answer itself, so a round trip wakes no third thread.
//!
//! The session's state ([`LaneState`]) is held by exactly one thread at a
//! time. The driver holds it while it works; when it idles it *parks* it
//! here. A caller may then take the lane's lock and *lend* it: send one job
//! (only when nothing is in flight and nothing queued waits), and, while
//! it waits for that job, read the helper's result ring itself. The lent
//! job has a *lease*: it is the caller's until the lease runs out (the
//! caller renews it while it waits) or the caller *departs* (its wait
//! gives up spinning, it registers a waker or a notification, it drops or
//! cancels the handle). Then the driver takes the state back and serves
//! the job as any other: timeouts, cancels and a helper's death go through
//! it alone, as before. A driver whose lane was lent lately sleeps with a
//! timeout ([`LEASE_CHECK`]), so an expired lease is taken over within it;
//! a departing caller wakes it at once, and so does the first lending
//! after a long idle (the driver then slept without a timeout).

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::pool::coordinator::cell::HelperCell;
use crate::pool::coordinator::job::Job;
use crate::pool::coordinator::shared::Shared;
use crate::pool::error::TaskError;
use crate::pool::transport::region::Region;
use crate::pool::transport::ring::{Peer, Ring};
use crate::pool::transport::wire::{fits, frame_into, FrameReader, FromHelper, Items, ToHelper};
use crate::sync::spin;

/// Longest an idle driver sleeps while its lane may be lent: how late an
/// unattended lent job (its caller neither waits nor departs) is taken
/// over, and its helper watched again.
pub(crate) const LEASE_CHECK: Duration = Duration::from_millis(1);

/// How long after its last lending an idle driver keeps sleeping in
/// [`LEASE_CHECK`] slices; past it, it sleeps without a timeout (an idle
/// pool wakes no one), and the next lending wakes it.
const TIMED_FOR: Duration = Duration::from_millis(20);

/// How long a waiting caller that finds itself on its helper's CPU
/// sleeps: a wake-up from a timer is placed on an idle CPU if there is
/// one, where spinning (yielding) never moves it. (A socket's wake-up
/// puts the helper on its waker's CPU, and two spinners that share a CPU
/// stay together until load balancing, milliseconds later.)
/// (With the kernel's timer slack it sleeps about 70 µs.)
const STEP_ASIDE: Duration = Duration::from_micros(20);

/// The shortest task timeout a lent job may have: while lent, a deadline
/// is enforced up to [`LEASE_CHECK`] (plus a wake-up) late.
const MIN_LENT_TIMEOUT: Duration = Duration::from_millis(50);

/// A job sent to the helper and not yet answered.
pub(crate) struct InFlight {
    pub job: Job,
    pub id: u64,
    pub started: Option<Instant>,
    /// Where its frame starts in the job ring's stream: the helper has
    /// read some of it once the ring's read count passes this.
    pub at: u64,
}

/// One helper's session: what its driver (or a caller it is lent to) needs
/// to send jobs and read their answers.
#[derive(Default)]
pub(crate) struct LaneState {
    pub inflight: VecDeque<InFlight>,
    /// The id of this helper's first job, and the id the next job gets.
    pub first_id: u64,
    pub next_id: u64,
    /// Frames not yet taken by the job ring, and how much of them was.
    pub outbox: Vec<u8>,
    pub written: usize,
    /// Where the next frame starts in the job ring's stream.
    pub queued_bytes: u64,
    /// Frames read from the result ring.
    pub reader: FrameReader,
    /// A caller read a garbled or out-of-turn answer, or a broken ring:
    /// the driver gives the helper up when it takes the state back.
    pub broken: bool,
}

impl LaneState {
    /// Jobs sent to this helper so far.
    pub fn sent(&self) -> usize {
        (self.next_id - self.first_id) as usize
    }

    /// Delivers the front job's results (`Err` for a job the helper
    /// skipped, as cancelled); false if they do not fit it.
    pub fn complete_front(&mut self, cell: &Arc<HelperCell>, results: Result<Items, ()>) -> bool {
        let fits = match (&results, self.inflight.front()) {
            (Ok(r), Some(f)) => f.job.count == r.count,
            (Err(()), front) => front.is_some(),
            (Ok(_), None) => false,
        };
        if !fits {
            return false;
        }
        let done = self.inflight.pop_front().expect("checked above");
        done.job.cancel.forget(cell, done.id);
        match results {
            Ok(results) => done.job.deliver(Ok(results)),
            Err(()) => done.job.fail(TaskError::Cancelled),
        }
        true
    }

    /// Delivers every complete answer read so far that is the front job's;
    /// false on one that is not (garbled, or out of turn).
    pub fn deliver_answers(&mut self, cell: &Arc<HelperCell>) -> bool {
        while let Some(answer) = self.reader.next::<FromHelper>() {
            let (job, results) = match answer {
                Ok(FromHelper::Done { job, results }) => (job, Ok(results)),
                Ok(FromHelper::Skipped { job }) => (job, Err(())),
                _ => return false,
            };
            if self.inflight.front().is_none_or(|f| f.id != job) || !self.complete_front(cell, results) {
                return false;
            }
        }
        true
    }
}

/// A helper's lane: its session state when parked, and who holds it.
pub(crate) struct Lane {
    pub cell: Arc<HelperCell>,
    /// The driver's end of the helper's socket (doorbells, hang-up).
    pub stream: UnixStream,
    region: Arc<Region>,
    index: usize,
    shared: Weak<Shared>,
    /// The state while its driver idles (`None` while the driver has it).
    parked: Mutex<Option<LaneState>>,
    /// The job lent to a caller (0: none); written under `parked`'s lock.
    lent: AtomicU64,
    /// When the lent job's lease ends, in nanoseconds since `epoch`.
    lease: AtomicU64,
    /// When the lane was last lent, in nanoseconds since `epoch`.
    last_lent: AtomicU64,
    epoch: Instant,
    /// A caller handed a job back: the driver must take the state.
    wanted: AtomicBool,
    /// Its driver may be asleep on `wake`.
    pub(crate) driver_asleep: AtomicBool,
    /// Its driver may be asleep on `wake` without a timeout: the next
    /// lending must wake it, or a lease could run out unseen.
    untimed: AtomicBool,
    /// Where its idle driver sleeps (with the queue's lock): queued jobs
    /// and handed-back lent jobs wake it.
    pub(crate) wake: Condvar,
    /// Jobs a helper runs before it is replaced (`max_tasks_per_helper`).
    max_tasks: usize,
}

/// A job lent to a caller: where to attend it.
pub(crate) struct Lent {
    pub lane: Weak<Lane>,
    pub id: u64,
}

fn lock(m: &Mutex<Option<LaneState>>) -> MutexGuard<'_, Option<LaneState>> {
    // Plain data behind it; a panic elsewhere leaves it consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Lane {
    pub fn new(cell: Arc<HelperCell>, stream: UnixStream, shared: &Arc<Shared>, index: usize) -> Lane {
        let (region, max_tasks) = (shared.region.clone(), shared.config.max_tasks.unwrap_or(usize::MAX));
        let shared = Arc::downgrade(shared);
        Lane {
            cell,
            stream,
            region,
            index,
            shared,
            parked: Mutex::new(None),
            lent: AtomicU64::new(0),
            lease: AtomicU64::new(0),
            last_lent: AtomicU64::new(0),
            epoch: Instant::now(),
            wanted: AtomicBool::new(false),
            driver_asleep: AtomicBool::new(false),
            untimed: AtomicBool::new(false),
            wake: Condvar::new(),
            max_tasks,
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    pub fn jobs(&self) -> Ring<'_> {
        self.region.jobs(self.index).expect("lanes are numbered within the pool's segment")
    }

    pub fn results(&self) -> Ring<'_> {
        self.region.results(self.index).expect("lanes are numbered within the pool's segment")
    }

    /// The helper as a sleeper waits on it: its socket, and its pidfd.
    pub fn peer(&self) -> Peer<'_> {
        Peer { socket: self.stream.as_fd(), pidfd: self.cell.helper.pidfd.as_ref().map(|f| f.as_fd()) }
    }

    // ---- the driver's side ----

    /// The driver idles: parks `state` here (lendable while it is parked
    /// with nothing in flight: see `try_lend`).
    pub fn park(&self, state: LaneState) {
        *lock(&self.parked) = Some(state);
    }

    /// The driver takes its state back (taking over a lent job).
    pub fn unpark(&self) -> LaneState {
        let mut parked = lock(&self.parked);
        self.lent.store(0, Ordering::SeqCst);
        self.wanted.store(false, Ordering::SeqCst);
        parked.take().unwrap_or_default()
    }

    /// True if the parked state needs its driver: a job was handed back,
    /// or a lease ran out.
    pub fn needs_driver(&self) -> bool {
        if self.wanted.load(Ordering::SeqCst) {
            return true;
        }
        self.lent.load(Ordering::SeqCst) != 0 && self.now() > self.lease.load(Ordering::SeqCst)
    }

    /// True if a job is lent now (the driver must take it before it stops).
    pub fn is_lent(&self) -> bool {
        self.lent.load(Ordering::SeqCst) != 0
    }

    /// How long an idle driver may sleep (under the queue's lock): in
    /// [`LEASE_CHECK`] slices while a job is lent or was lately; else
    /// `None`, until woken (then the next lending wakes it: `untimed`).
    pub fn idle_sleep(&self) -> Option<Duration> {
        // Up before the look: a lending after it sees the flag (both
        // sequentially consistent), one before it is seen here.
        self.untimed.store(true, Ordering::SeqCst);
        let since = self.now().saturating_sub(self.last_lent.load(Ordering::SeqCst));
        if self.is_lent() || since < TIMED_FOR.as_nanos() as u64 {
            self.untimed.store(false, Ordering::SeqCst);
            return Some(LEASE_CHECK);
        }
        None
    }

    /// The driver is awake again.
    pub fn driver_awake(&self) {
        self.untimed.store(false, Ordering::SeqCst);
        self.driver_asleep.store(false, Ordering::SeqCst);
    }

    // ---- the caller's side ----

    /// Sends `job` to this lane's helper directly if its driver idles with
    /// nothing in flight; the job back otherwise.
    pub fn try_lend(self: &Arc<Lane>, job: Job) -> Result<Lent, Job> {
        let lendable = job.claim.is_none() && job.timeout.is_none_or(|t| t >= MIN_LENT_TIMEOUT) && fits(job.args.len());
        if !lendable {
            return Err(job);
        }
        let Ok(mut parked) = self.parked.try_lock() else { return Err(job) };
        // Parked (its driver idles), with nothing in flight and nothing lent.
        let Some(st) = parked.as_mut() else { return Err(job) };
        let free = st.inflight.is_empty() && st.outbox.is_empty() && !st.broken && st.sent() < self.max_tasks;
        if !free || self.lent.load(Ordering::SeqCst) != 0 {
            return Err(job);
        }
        let id = st.next_id;
        let run = ToHelper::Run { job: id, task: job.task, count: job.count, args: job.args.as_slice().into() };
        if frame_into(&mut st.outbox, &run).is_err() {
            st.outbox.clear();
            return Err(job);
        }
        // Registered before it is sent: a cancel from now on reaches it.
        if !job.cancel.sent_to(&self.cell, id) {
            st.outbox.clear();
            job.fail(TaskError::Cancelled);
            return Ok(Lent { lane: Arc::downgrade(self), id: 0 });
        }
        st.next_id += 1;
        let at = st.queued_bytes;
        st.queued_bytes += st.outbox.len() as u64;
        st.inflight.push_back(InFlight { job, id, started: Some(Instant::now()), at });
        let now = self.now();
        self.lease.store(now + spin::WINDOW.as_nanos() as u64, Ordering::SeqCst);
        self.last_lent.store(now, Ordering::SeqCst);
        self.lent.store(id, Ordering::SeqCst);
        let jobs = self.jobs();
        match jobs.write(&st.outbox) {
            Ok(n) if n == st.outbox.len() => {
                st.outbox.clear();
                jobs.wake_reader(&self.peer());
            }
            // Part of it (a frame larger than the ring), or a broken ring:
            // the driver takes it from here.
            Ok(n) => {
                st.written = n;
                if n > 0 {
                    jobs.wake_reader(&self.peer());
                }
                self.hand_back();
            }
            Err(_) => {
                st.broken = true;
                self.hand_back();
            }
        }
        drop(parked);
        self.kick();
        // A driver asleep without a timeout would not see the lease end.
        if self.untimed.load(Ordering::SeqCst) {
            if let Some(shared) = self.shared.upgrade() {
                shared.kick(self);
            }
        }
        Ok(Lent { lane: Arc::downgrade(self), id })
    }

    /// Waits for lent job `id` up to `limit`, reading its answer from the
    /// result ring; stops early once `done` says its result is in. Then
    /// departs: if the job is still out, its driver takes it over.
    pub fn attend(&self, id: u64, limit: Duration, done: impl Fn() -> bool) {
        let window = limit.min(spin::WINDOW);
        let results = self.results();
        let mut looks = 0u32;
        let long = limit >= spin::WINDOW; // a short wait never sleeps
        let stepped = std::cell::Cell::new(false);
        let mut look = || {
            if done() || self.lent.load(Ordering::SeqCst) != id {
                return Some(());
            }
            if !results.is_empty() {
                if let Ok(mut parked) = self.parked.try_lock() {
                    self.read_lent(&mut parked, id);
                }
            } else if looks % 32 == 3 && long && self.on_our_cpu() {
                // Spinning beside the helper on one CPU, each waits for
                // the other's turn: step aside, and be woken elsewhere.
                self.lease.fetch_max(self.now() + (STEP_ASIDE + spin::WINDOW).as_nanos() as u64, Ordering::SeqCst);
                std::thread::sleep(STEP_ASIDE);
                stepped.set(true);
            }
            looks += 1;
            None
        };
        if window.is_zero() {
            let _ = look(); // a poll: one look
        } else if self.lent.load(Ordering::SeqCst) == id {
            self.lease.fetch_max(self.now() + window.as_nanos() as u64, Ordering::SeqCst);
            // A step aside took most of the window: one more, once.
            if spin::spin(window, &mut look).is_none() && stepped.get() && self.lent.load(Ordering::SeqCst) == id {
                // The step aside outlasted the lease it took (timer slack):
                // renewed, or the driver takes the job over mid-spin.
                self.lease.fetch_max(self.now() + window.as_nanos() as u64, Ordering::SeqCst);
                spin::spin(window, look);
            }
        }
        self.depart(id); // kicks the driver if a fault met here handed it back
    }

    /// True if the helper last began a job on the CPU this thread runs on.
    fn on_our_cpu(&self) -> bool {
        let cpu = self.region.cpu(self.index).expect("lanes are numbered within the pool's segment");
        cpu.load(Ordering::Relaxed) as usize == rustix::thread::sched_getcpu()
    }

    /// The caller of lent job `id` stops attending it: the driver takes it
    /// over if it is still out.
    pub fn depart(&self, id: u64) {
        if id != 0 && self.lent.load(Ordering::SeqCst) == id {
            let mut parked = lock(&self.parked);
            self.read_lent(&mut parked, id);
            if parked.is_some() && self.lent.load(Ordering::SeqCst) == id {
                self.hand_back();
            }
        }
        self.kick(); // also when reading met a fault and handed it back
    }

    /// Reads what the helper answered (under the lane's lock, while `id`
    /// is lent), delivering it; a fault hands the lane to the driver.
    fn read_lent(&self, parked: &mut Option<LaneState>, id: u64) {
        let Some(st) = parked.as_mut() else { return };
        if self.lent.load(Ordering::SeqCst) != id {
            return;
        }
        let results = self.results();
        let read = st.reader.fill_ring(&results);
        if read.is_ok() {
            results.wake_writer(&self.peer()); // if the helper waits for room for its results
        }
        if read.is_err() || !st.deliver_answers(&self.cell) {
            st.broken = true;
            return self.hand_back();
        }
        match st.inflight.is_empty() {
            // Its last job: the driver replaces the helper now, not when
            // the next job comes.
            true if st.sent() >= self.max_tasks => self.hand_back(),
            true => self.lent.store(0, Ordering::SeqCst), // answered: lendable again
            false => {}
        }
    }

    /// Gives the lent job to the driver (under the lane's lock); the caller
    /// wakes it ([`kick`](Self::kick)) once the lock is released, since the
    /// driver takes this lock under the queue's.
    fn hand_back(&self) {
        self.lent.store(0, Ordering::SeqCst);
        self.wanted.store(true, Ordering::SeqCst);
    }

    /// Wakes the driver if a job was handed back to it while it sleeps.
    /// Called with no lane lock held.
    fn kick(&self) {
        // Sequentially consistent against the driver's own pair (it sets
        // `driver_asleep`, then reads `wanted`): one of us sees the other.
        if self.wanted.load(Ordering::SeqCst) && self.driver_asleep.load(Ordering::SeqCst) {
            if let Some(shared) = self.shared.upgrade() {
                shared.kick(self);
            }
        }
    }
}

impl Lent {
    /// Attends the job (see [`Lane::attend`]) if it is still lent.
    pub fn attend(&self, limit: Duration, done: impl Fn() -> bool) {
        if let Some(lane) = self.lane.upgrade().filter(|_| self.id != 0) {
            lane.attend(self.id, limit, done);
        }
    }

    /// Stops attending it (see [`Lane::depart`]).
    pub fn depart(&self) {
        if let Some(lane) = self.lane.upgrade().filter(|_| self.id != 0) {
            lane.depart(self.id);
        }
    }
}
