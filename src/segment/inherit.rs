//! What a forked child inherits of a handle: its mapping, not its locks.
//!
//! Every lock that says a process is alive or holds something (a
//! creator's lock, a view's claim, a reader's slot, a queue role, a
//! list's pusher place) is an open-file-description lock (`fcntl(2)`
//! `F_OFD_SETLK`) on its handle's open file. `fork(2)` shares open files
//! with the child: the child's copy would keep those locks alive after the
//! parent died (a dead pusher's place read as busy for as long as the
//! child lives; a dead creator's segment never garbage), and an unlock in
//! the child (a dropped view) would release the parent's.
//!
//! So every handle's descriptor is listed here, and in a forked child,
//! before it runs anything else (a `pthread_atfork(3)` child handler),
//! each listed descriptor is pointed at `/dev/null` (`dup3(2)`): the
//! child's copies stop referring to the parent's open files, whose locks
//! stay the parent's alone, and the child's handles (whose every use is
//! refused as [`Error::Inherited`](crate::Error::Inherited)) close
//! `/dev/null` when dropped. `posix_spawn`, which pools use, runs no fork
//! handlers and needs none (the descriptors are close-on-exec).
//!
//! The list is lock-free, because the child handler may run while another
//! thread of the parent was changing it (a fork copies a held lock as
//! held): a chain of slots that are never freed, each holding one
//! descriptor or -1.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering};

/// One place in the list.
#[derive(Debug)]
pub(crate) struct Slot {
    fd: AtomicI32,
    next: AtomicPtr<Slot>,
}

static HEAD: AtomicPtr<Slot> = AtomicPtr::new(ptr::null_mut());
/// Set once the fork handler is registered. (A flag, not a `Once`: a fork
/// while another thread registers would copy a `Once` stuck "running".)
static HANDLER: AtomicBool = AtomicBool::new(false);

/// An open file that a forked child does not share (see the module):
/// listed from the moment it is made until it is closed.
#[derive(Debug)]
pub(crate) struct Tracked {
    fd: OwnedFd,
    slot: &'static Slot,
}

impl Tracked {
    /// Lists `fd`; call it right after the file is opened, before any
    /// lock is taken through it.
    pub fn new(fd: OwnedFd) -> Tracked {
        let slot = track(fd.as_raw_fd());
        Tracked { fd, slot }
    }
}

impl std::ops::Deref for Tracked {
    type Target = OwnedFd;
    fn deref(&self) -> &OwnedFd {
        &self.fd
    }
}

impl AsFd for Tracked {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Tracked {
    /// Unlisted, then closed (the field drops after this): a fork never
    /// points `/dev/null` at a number reused meanwhile.
    fn drop(&mut self) {
        self.slot.release();
    }
}

/// Lists `fd` until [`Slot::release`]: a forked child will not share it.
fn track(fd: RawFd) -> &'static Slot {
    if !HANDLER.swap(true, Ordering::AcqRel) {
        // SAFETY: `in_child` is an `extern "C" fn()` that only makes
        // async-signal-safe calls, as a fork handler must; the other two
        // handlers are none. Registering twice would only run it twice.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    }
    let mut at = HEAD.load(Ordering::Acquire);
    while !at.is_null() {
        // SAFETY: slots are leaked boxes, never freed: every pointer in
        // the chain stays valid for the life of the process.
        let slot = unsafe { &*at };
        if slot.fd.compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            return slot;
        }
        at = slot.next.load(Ordering::Acquire);
    }
    let slot: &'static Slot =
        Box::leak(Box::new(Slot { fd: AtomicI32::new(fd), next: AtomicPtr::new(ptr::null_mut()) }));
    let new = ptr::from_ref(slot).cast_mut();
    let mut head = HEAD.load(Ordering::Acquire);
    loop {
        slot.next.store(head, Ordering::Release);
        match HEAD.compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return slot,
            Err(now) => head = now,
        }
    }
}

impl Slot {
    /// Unlists the descriptor (before it is closed), freeing the slot.
    fn release(&self) {
        self.fd.store(-1, Ordering::Release);
    }
}

/// The fork handler: every listed descriptor becomes `/dev/null`.
extern "C" fn in_child() {
    // SAFETY: open, dup3 and close are async-signal-safe; the path is a
    // NUL-terminated literal.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if null < 0 {
        return; // no /dev/null: the handles stay as they were (refused as Inherited anyway)
    }
    let mut at = HEAD.load(Ordering::Acquire);
    while !at.is_null() {
        // SAFETY: as in `track`, slots are never freed.
        let slot = unsafe { &*at };
        let fd = slot.fd.load(Ordering::Acquire);
        if fd >= 0 && fd != null {
            // SAFETY: `fd` is a descriptor number this process had open at
            // the fork (a listed handle's); replacing it is what we want.
            unsafe { libc::dup3(null, fd, libc::O_CLOEXEC) };
        }
        at = slot.next.load(Ordering::Acquire);
    }
    // SAFETY: `null` was opened above and is ours.
    unsafe { libc::close(null) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forked_child_sees_dev_null_where_a_tracked_descriptor_was() {
        let file = Tracked::new(std::fs::File::open("/proc/self/stat").unwrap().into());
        let fd = file.as_raw_fd();
        let (rx, tx) = rustix::pipe::pipe().unwrap();
        let path = format!("/proc/self/fd/{fd}\0"); // before the fork: the child may not allocate
                                                    // SAFETY: the child only makes async-signal-safe calls (readlink,
                                                    // write, _exit) before it exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut buf = [0u8; 64];
            // SAFETY: `path` is NUL-terminated, `buf` is writable.
            let n = unsafe { libc::readlink(path.as_ptr().cast(), buf.as_mut_ptr().cast(), buf.len()) };
            let n = n.max(0) as usize;
            // SAFETY: `tx` is open; `buf[..n]` is initialised.
            unsafe { libc::write(tx.as_raw_fd(), buf.as_ptr().cast(), n) };
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        drop(tx);
        let mut seen = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(rx), &mut seen).unwrap();
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a local.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(seen, "/dev/null", "the child's copy of a tracked descriptor");
        let here = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        assert!(here.ends_with("stat"), "the parent's is untouched: {here:?}");
    }
}
