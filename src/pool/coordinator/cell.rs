//! `HelperCell`: a live helper as the threads that may stop it see it:
//! its driver (timeouts), cancelling callers, and `terminate`.

use std::sync::{Arc, Mutex};

use crate::pool::start::process::Target;
use crate::pool::transport::region::Region;
use crate::pool::transport::status::{Status, Stop};

/// A live helper, as a canceller sees it.
pub(crate) struct HelperCell {
    /// The helper process itself (it reports its pid when it starts).
    pub helper: Target,
    /// The process the pool started, when it is a launcher (`timeout`,
    /// `strace`, a script) in front of the helper; still unreaped while
    /// the cell can be reached.
    pub launcher: Option<Target>,
    /// The pool's status words, and which is this helper's.
    region: Arc<Region>,
    index: usize,
    /// Held while deciding whether to kill, so that two deciders (a
    /// timeout and a cancel) never lift each other's hold; true once one
    /// of them killed the helper, or its driver gave it up.
    killed: Mutex<bool>,
}

impl HelperCell {
    pub fn new(helper: Target, launcher: Option<Target>, region: Arc<Region>, index: usize) -> HelperCell {
        HelperCell { helper, launcher, region, index, killed: Mutex::new(false) }
    }

    /// The helper's status word and skip table.
    pub fn status(&self) -> Status<'_> {
        self.region.status(self.index).expect("drivers are numbered within the pool's segment")
    }

    /// The pid shown to users: the helper's own.
    pub fn pid(&self) -> u32 {
        self.helper.pid
    }

    /// Stops job `id` as `stop` asks: a cancelled job that has not begun
    /// its body is marked to be skipped; one that runs (or, for a timeout,
    /// is being received) gets its helper killed. True if the helper is
    /// killed (by this call or an earlier one); false if the job finished
    /// or will be skipped, and the helper goes on.
    pub fn stop_job(&self, id: u64, stop: Stop) -> bool {
        // A panic while holding this lock leaves a plain flag; go on.
        let mut killed = self.killed.lock().unwrap_or_else(|e| e.into_inner());
        if *killed {
            return true;
        }
        let status = self.status();
        if stop == Stop::Cancel {
            status.skip(id); // before the hold: see `status`
        }
        if !status.hold().must_kill(id, stop) {
            status.release();
            return false;
        }
        self.kill(); // the hold stays: it begins nothing more
        *killed = true;
        true
    }

    /// Kills the helper (and its launcher) and marks it given up, so that
    /// no later decider signals it: its driver calls this before reaping.
    pub fn retire(&self) {
        let mut killed = self.killed.lock().unwrap_or_else(|e| e.into_inner());
        // Held first: whatever the kill reaches (behind a launcher without
        // pidfds it may reach only the launcher), the helper begins no
        // other job, so what the word says after this is final.
        self.status().hold();
        self.kill();
        *killed = true;
    }

    /// SIGKILLs the helper and its launcher, through pidfds where there
    /// are some; by pid only the launcher, our own child, which its driver
    /// reaps only after retiring the cell.
    pub fn kill(&self) {
        let helper_is_child = self.launcher.is_none();
        self.helper.kill(helper_is_child);
        if let Some(l) = &self.launcher {
            l.kill(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decision a timeout or a cancel makes before killing: kill only
    /// if the job meant runs its body (or, for a timeout, is next).
    #[test]
    fn stop_job_kills_only_while_the_job_meant_runs() {
        let region = Arc::new(Region::create(1).unwrap());
        let spawn = || std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let cell = |child: &std::process::Child| HelperCell::new(Target::new(child.id()), None, region.clone(), 0);
        let mut child = spawn();
        let helper = cell(&child);
        assert!(helper.status().begin(8)); // job 7 finished, job 8 (in place, say) runs
        assert!(!helper.stop_job(7, Stop::Timeout), "job 7 is done: its result is on its way");
        assert!(!helper.stop_job(9, Stop::Cancel), "job 9 waits in the pipeline: it will be skipped");
        assert!(child.try_wait().unwrap().is_none(), "the helper running job 8 was spared");
        helper.status().finish(8);
        assert!(!helper.stop_job(8, Stop::Timeout), "job 8's result is written: nothing to kill for");
        assert!(!helper.status().begin(9), "job 9 was cancelled in the pipeline: skipped");
        helper.status().finish(9);
        assert!(helper.status().begin(10));
        assert!(helper.stop_job(10, Stop::Cancel), "job 10 runs: killed");
        assert!(child.wait().unwrap().code().is_none(), "killed");
        // A second decider (a timeout after a cancel) finds it killed, and
        // must not lift the hold the first one set.
        assert!(helper.stop_job(10, Stop::Timeout), "already killed");
        assert!(helper.status().hold().job == 10, "the hold stays");
        helper.status().reset();
        let mut child = spawn();
        let helper = cell(&child);
        assert!(!helper.stop_job(3, Stop::Cancel), "job 3 has not begun: a cancel skips it");
        assert!(helper.stop_job(3, Stop::Timeout), "but a timeout stops the helper before it does");
        child.wait().unwrap();
    }
}
