//! A unit of work on its way to a helper, and where its result goes.

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use crate::pool::coordinator::cancel::Cancel;
use crate::pool::coordinator::slot::Slot;
use crate::pool::error::{Failed, Outcome, TaskError};
use crate::pool::transport::wire::ClaimRef;

/// What a batch call receives per job: the index of its first argument,
/// how many arguments it had, and its outcome.
pub(crate) type Delivery = (usize, u32, Outcome);

/// One message's worth of work: a task and one or more argument sets.
pub(crate) struct Job {
    pub task: u32,
    /// `count` arguments, encoded one after another (see `codec`).
    pub args: Vec<u8>,
    pub count: u32,
    pub timeout: Option<Duration>,
    /// How many more times it may be rerun if its helper dies under it.
    pub retries: u32,
    /// How many helpers died with this job next in line but not started:
    /// not its fault, unless it keeps happening (see `driver::on_death`).
    pub bounced: u32,
    /// Never sent further ahead than the configured pipeline (a chunk of
    /// an array pass: a helper the host delays must not sit on many).
    pub shallow: bool,
    /// A claim job of an array pass (see `claims`): sent as `Claim`, and
    /// only to an idle helper, so that each claim job of a pass has a
    /// helper of its own.
    pub claim: Option<ClaimRef>,
    /// Shared by every job of one call: cancelling it cancels them all.
    pub cancel: Arc<Cancel>,
    /// `None` once delivered; a job dropped undelivered fails as `Terminated`.
    pub reply: Option<Reply>,
}

/// Where a job's results go.
pub(crate) enum Reply {
    /// One result, to a [`TaskHandle`](crate::pool::TaskHandle).
    Slot(Arc<Slot>),
    /// One result per argument, for arguments `first..`, to a batch call:
    /// one message per job, however many arguments it carries.
    Channel { first: usize, tx: Sender<Delivery> },
}

impl Job {
    /// Hands the outcome to whoever waits for it.
    pub fn deliver(mut self, outcome: Outcome) {
        send(self.reply.take().expect("a job is delivered once"), self.count, outcome);
    }

    /// Fails every argument set of a job whose task body never started.
    pub fn fail(self, error: TaskError) {
        self.deliver(Err(Failed { error, started: false }));
    }

    /// Fails every argument set of a job whose task body may have run.
    pub fn fail_started(self, error: TaskError) {
        self.deliver(Err(Failed { error, started: true }));
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // Every waiter gets an answer, even if the pool goes away under it.
        if let Some(reply) = self.reply.take() {
            send(reply, self.count, Err(Failed { error: TaskError::Terminated, started: true }));
        }
    }
}

/// Hands `outcome` (of `count` arguments) to whoever waits on `reply`.
fn send(reply: Reply, count: u32, outcome: Outcome) {
    match reply {
        Reply::Slot(slot) => slot.complete(outcome),
        Reply::Channel { first, tx } => {
            let _ = tx.send((first, count, outcome)); // the caller may have stopped listening
        }
    }
}
