//! How one call's jobs are cancelled: a flag the drivers check before
//! sending a job, and the helpers its jobs were sent to, so that a cancel
//! reaches jobs already pipelined to a helper.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::pool::coordinator::cell::HelperCell;
use crate::pool::transport::status::Stop;

/// Shared by every job of one call.
#[derive(Default)]
pub(crate) struct Cancel {
    state: Mutex<Vec<(Arc<HelperCell>, u64)>>,
    cancelled: AtomicBool,
}

impl Cancel {
    fn lock(&self) -> MutexGuard<'_, Vec<(Arc<HelperCell>, u64)>> {
        // A panic while holding this lock leaves plain data behind; go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Records that job `id` is sent to `helper` (queued there or
    /// running), so a cancel can stop it; false if already cancelled.
    pub fn sent_to(&self, helper: &Arc<HelperCell>, id: u64) -> bool {
        let mut sent = self.lock();
        if self.is_cancelled() {
            return false;
        }
        sent.push((helper.clone(), id));
        true
    }

    /// Forgets job `id` on `helper` (answered, or its helper is gone).
    pub fn forget(&self, helper: &Arc<HelperCell>, id: u64) {
        self.lock().retain(|(h, i)| !(Arc::ptr_eq(h, helper) && *i == id));
    }

    /// Cancels: jobs not yet sent will never be; jobs sent but not begun
    /// are skipped by their helper; running ones have their helper killed.
    pub fn cancel(&self) {
        let mut sent = self.lock();
        self.cancelled.store(true, Ordering::Release);
        for (helper, id) in sent.drain(..) {
            helper.stop_job(id, Stop::Cancel);
        }
    }
}
