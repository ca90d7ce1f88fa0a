//! The floor under a sleeping subscriber: one futex wake between two
//! processes, nothing else (a stamp and a counter in a shared page), after
//! the waker wrote a 4 MiB frame as a publisher does. A stream's wake-up
//! cannot beat it; on a VM it is mostly the cost of waking an idle
//! virtual CPU.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};

use crate::peer::{say, say_latencies, Peer};
use crate::{now_ns, write_frame, Wait, FRAME};

/// A page of shared memory (`shm_open(3)`, `mmap(2)`): a wake counter at
/// 0, a stamp at 8. Unlinked by its creator when dropped.
struct Page {
    ptr: *mut u8,
    name: Option<std::ffi::CString>,
}

impl Page {
    fn open(name: &str, create: bool) -> Result<Page> {
        let c = std::ffi::CString::new(format!("/{name}"))?;
        let flags = if create { libc::O_CREAT | libc::O_EXCL | libc::O_RDWR } else { libc::O_RDWR };
        // SAFETY: `c` is a NUL-terminated name; shm_open touches no memory of ours.
        let fd = unsafe { libc::shm_open(c.as_ptr(), flags, 0o600) };
        ensure!(fd >= 0, "shm_open {name}: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just opened by us.
        let sized = !create || unsafe { libc::ftruncate(fd, 4096) } == 0;
        // SAFETY: a fresh shared mapping of the 4096 bytes the object has; no address of ours is replaced.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        // SAFETY: `fd` is ours and no longer needed once mapped.
        unsafe { libc::close(fd) };
        if create && (!sized || ptr == libc::MAP_FAILED) {
            // SAFETY: a NUL-terminated name, of the object just made (left unused).
            unsafe { libc::shm_unlink(c.as_ptr()) };
        }
        ensure!(sized && ptr != libc::MAP_FAILED, "mapping {name}: {}", std::io::Error::last_os_error());
        Ok(Page { ptr: ptr.cast(), name: create.then_some(c) })
    }

    fn counter(&self) -> &AtomicU32 {
        // SAFETY: offset 0 of a live, page-aligned shared mapping, only ever accessed atomically.
        unsafe { &*self.ptr.cast::<AtomicU32>() }
    }

    fn stamp(&self) -> &AtomicU64 {
        // SAFETY: offset 8 (8-aligned) of the same live mapping, only ever accessed atomically.
        unsafe { &*self.ptr.add(8).cast::<AtomicU64>() }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, no longer referenced (borrows of it end with `self`).
        unsafe { libc::munmap(self.ptr.cast(), 4096) };
        if let Some(c) = &self.name {
            // SAFETY: a NUL-terminated name.
            unsafe { libc::shm_unlink(c.as_ptr()) };
        }
    }
}

fn futex(word: &AtomicU32, op: i32, val: u32) {
    // SAFETY: futex(2) on a live, aligned 32-bit word; no timeout pointer.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, std::ptr::null::<libc::timespec>()) };
}

/// Wake → awake, in µs, for `frames` wakes 3 ms apart, each after a
/// frame's writes.
pub fn latency(name: &str, frames: usize) -> Result<Vec<f64>> {
    let page = Page::open(name, true)?;
    let peer = Peer::start("futex", "latency", name, Wait::Sleep, frames)?;
    let mut frame = vec![0u8; FRAME];
    for i in 1..=frames as u32 {
        let start = Instant::now();
        write_frame(&mut frame, 0); // as a publisher does before it wakes anyone
        std::hint::black_box(&frame);
        page.stamp().store(now_ns(), Ordering::SeqCst);
        page.counter().store(i, Ordering::SeqCst);
        futex(page.counter(), libc::FUTEX_WAKE, i32::MAX as u32);
        std::thread::sleep(Duration::from_millis(3).saturating_sub(start.elapsed()));
    }
    peer.latencies()
}

/// A peer: sleeps on the counter until it has been woken `frames` times.
pub fn wait_latency(name: &str, frames: usize) -> Result<()> {
    let page = Page::open(name, false)?;
    say("ready");
    let mut late = Vec::with_capacity(frames);
    let mut seen = 0;
    // Counts wakes, not wake-ups: one woken too late for two wakes has
    // one latency to tell, and still ends.
    while (seen as usize) < frames {
        futex(page.counter(), libc::FUTEX_WAIT, seen);
        let now = page.counter().load(Ordering::SeqCst);
        if now != seen {
            late.push(now_ns().saturating_sub(page.stamp().load(Ordering::SeqCst)));
            seen = now;
        }
    }
    say_latencies(&late);
    Ok(())
}
