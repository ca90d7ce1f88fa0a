//! Finding and removing segments whose creator is gone.
//!
//! A segment's creator holds a lock on it for as long as its handle is
//! open (see `segment::liveness`); a segment whose lock is free and that
//! was not persisted is garbage. `gc` proves that by taking the lock
//! itself, re-reads the persistent flag while holding it, and removes the
//! name only if it still leads to the inode it examined. Segments shmkit
//! did not create are never touched.

use std::collections::HashMap;

use super::inspect::describe;
use crate::kind::SegmentKind;
use crate::segment::info::{read_flags, Creator, SegmentInfo};
use crate::segment::liveness::{self, Presence};
use crate::segment::{probe, read_trailer, FLAG_PERSISTENT};
use crate::{name, os, Error, Result};

/// One entry of `/dev/shm`, as shmkit reads it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Listing {
    /// The entry's name.
    pub name: String,
    /// What it holds, or why that could not be read (not shmkit's,
    /// another user's, ...).
    pub info: Result<SegmentInfo>,
    /// For an entry named `shmkit-rm-<inode>-<nonce>-NAME`: a removal of `NAME`
    /// cut short (its remover died between moving the name aside and
    /// unlinking it). [`collect_garbage`] finishes it.
    pub removing: Option<String>,
}

impl Listing {
    /// The creator shmkit recorded, if any.
    pub fn creator(&self) -> Option<Creator> {
        self.info.as_ref().ok().and_then(|i| i.creator)
    }

    /// True for a shmkit segment whose creator has gone and that was not
    /// marked persistent: what [`collect_garbage`] removes. A creator
    /// whose state cannot be read is never taken for gone.
    pub fn is_garbage(&self) -> bool {
        let persistent = self.info.as_ref().is_ok_and(|i| i.persistent);
        !persistent && self.creator().is_some_and(|c| c.presence == Presence::Gone)
    }

    /// The name that counts for filters: for an unfinished removal, the
    /// name being removed.
    fn subject(&self) -> &str {
        self.removing.as_deref().unwrap_or(&self.name)
    }
}

/// Which leftovers [`Gc::run`] looks at, and whether it only says which
/// it would remove. Tests, and programs sharing `/dev/shm` with others,
/// collect only their own: by name prefix or by creator.
///
/// ```
/// // Remove what earlier runs of this program left, by its names' prefix.
/// let removed = shmkit::admin::Gc::new().prefix("myapp-").run()?;
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use = "a Gc does nothing until .run()"]
pub struct Gc {
    dry_run: bool,
    prefix: Option<String>,
    creators: Vec<u32>,
}

impl Gc {
    /// Every shmkit segment whose creator is gone (and every unfinished
    /// removal) is collected.
    pub fn new() -> Gc {
        Gc::default()
    }

    /// Only say what would be removed.
    pub fn dry_run(mut self, yes: bool) -> Gc {
        self.dry_run = yes;
        self
    }

    /// Only segments whose names start with `prefix`.
    pub fn prefix(mut self, prefix: &str) -> Gc {
        self.prefix = Some(prefix.to_owned());
        self
    }

    /// Only segments created by process `pid` (as recorded in them); may
    /// be given several times.
    pub fn creator(mut self, pid: u32) -> Gc {
        self.creators.push(pid);
        self
    }

    fn selects(&self, l: &Listing) -> bool {
        let by_name = self.prefix.as_deref().is_none_or(|p| l.subject().starts_with(p));
        let by_creator = self.creators.is_empty() || l.creator().is_some_and(|c| self.creators.contains(&c.pid));
        by_name && by_creator
    }

    /// Finishes the removals that were cut short, then removes segments
    /// whose creator has gone, unless persistent; returns the entries it
    /// removed (or would).
    pub fn run(&self) -> Result<Vec<String>> {
        let dir = os::shm_dir().map_err(Error::shm_dir)?;
        let listed: Vec<Listing> = list()?.into_iter().filter(|l| self.selects(l)).collect();
        let mut out = Vec::new();
        for l in listed.iter().filter(|l| l.removing.is_some()) {
            // A namesake given its name back is not removed, and not listed;
            // one that cannot have it back (a third file took the name) is
            // collected like any segment, if it is garbage.
            let done = match self.dry_run {
                true => true,
                false => match os::finish_removal(dir, &l.name) {
                    Ok(os::Finished::Removed) => true,
                    Ok(os::Finished::Left) => l.is_garbage() && collect(dir, &l.name, true),
                    _ => false,
                },
            };
            if done {
                out.push(l.name.clone());
            }
        }
        let garbage = listed.into_iter().filter(|l| l.removing.is_none() && l.is_garbage()).map(|l| l.name);
        match self.dry_run {
            true => out.extend(garbage),
            false => out.extend(garbage.filter(|name| collect(dir, name, false))),
        }
        Ok(out)
    }
}

/// Lists the entries of `/dev/shm` (sorted by name) with what they hold.
/// Entries whose names shmkit would not accept are skipped.
pub fn list() -> Result<Vec<Listing>> {
    let dir = os::shm_dir().map_err(Error::shm_dir)?;
    let entries = std::fs::read_dir(os::SHM_DIR).map_err(|e| Error::from_io("read_dir", os::SHM_DIR, e))?;
    let mut out: Vec<Listing> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| name::validate(n).is_ok())
        .map(|name| {
            let info = os::open_at(dir, &name).map_err(|e| Error::from_io("open", &name, e));
            let removing = os::parse_aside(&name).map(|(_, n)| n.to_owned());
            Listing { info: info.and_then(|fd| describe(&fd, &name)), name, removing }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes shmkit segments whose creator has gone, unless persistent;
/// returns their names. With `dry_run`, only says which it would remove.
///
/// Programs that want a clean slate call this at start; `shmkit gc` is
/// the same from the command line.
/// This is [`Gc::new().dry_run(dry_run).run()`](Gc::run).
pub fn collect_garbage(dry_run: bool) -> Result<Vec<String>> {
    Gc::new().dry_run(dry_run).run()
}

/// Removes one segment if, checked again now, it is garbage. False if it
/// turned out to be alive, persistent, or someone else's. An `aside` entry
/// (a namesake a removal left nameless) is unlinked directly: its name is
/// a removal's own, which no one else moves a file under.
fn collect(dir: rustix::fd::BorrowedFd<'_>, name: &str, aside: bool) -> bool {
    let Ok(fd) = os::open_at(dir, name) else { return false };
    let Ok(layout) = probe(&fd, name) else { return false };
    let persistent = |fd: &_| read_flags(fd, &layout) & FLAG_PERSISTENT != 0;
    if layout.trailer.is_none() || persistent(&fd) {
        return false;
    }
    // Taking the creator's lock proves the creator gone, and holding it
    // keeps any other collector out while this one finishes.
    if !liveness::take_over(&fd, liveness::CREATOR) {
        return false;
    }
    // A creator that called persist() and exited did both before its lock
    // was released: re-read the flag now that we hold the lock.
    if persistent(&fd) {
        return false;
    }
    let Ok(stat) = os::stat(&fd) else { return false };
    match aside {
        true => os::id_at(dir, name).is_ok_and(|now| now == stat.id) && os::unlink_at(dir, name).is_ok(),
        false => matches!(os::remove_if(dir, name, stat.id), Ok(os::Removed::Yes)),
    }
}

/// A shmkit segment with no name in `/dev/shm`, found through the open
/// files of the processes using it: one still being created (it gets its
/// name when complete), or one whose name was removed while its creator
/// still runs (for example by Python's `resource_tracker`, see the
/// README), whose users keep memory no one else can find.
#[derive(Debug)]
#[non_exhaustive]
pub struct Unnamed {
    /// The name it had; `None` while it is being created.
    pub name: Option<String>,
    /// Processes holding it open now.
    pub pids: Vec<u32>,
    /// Its size in bytes, taken from `/dev/shm`'s space.
    pub total_len: u64,
    /// What it holds.
    pub kind: SegmentKind,
    /// Who created it, and whether that handle is still open.
    pub creator: Creator,
}

/// Finds [`Unnamed`] segments by looking at the open files of every
/// process this user may inspect (`/proc/PID/fd`, see `proc_pid_fd(5)`).
pub fn list_unnamed() -> Vec<Unnamed> {
    let mut found: HashMap<os::FileId, Unnamed> = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    for pid in procs.flatten().filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok()) {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            let target = target.to_string_lossy();
            let Some(was) = target.strip_prefix("/dev/shm/").and_then(|t| t.strip_suffix(" (deleted)")) else {
                continue;
            };
            let Ok(file) = std::fs::OpenOptions::new().read(true).write(true).open(fd.path()) else { continue };
            let Ok(stat) = os::stat(&file) else { continue };
            if stat.links > 0 {
                continue; // named after all (an unnamed file linked later keeps its `#` path)
            }
            if let Some(u) = found.get_mut(&stat.id) {
                u.pids.push(pid);
            } else if let Some(t) = read_trailer(&file) {
                let creator = Creator {
                    pid: t.pid,
                    start_time: t.start_time,
                    pid_namespace: t.pid_namespace,
                    presence: liveness::presence(&file, liveness::CREATOR),
                };
                // `#123` is how the kernel names a file created unnamed.
                let name = (!was.starts_with('#')).then(|| was.to_owned());
                let kind = SegmentKind::from_code(t.kind);
                found.insert(stat.id, Unnamed { name, pids: vec![pid], total_len: stat.len, kind, creator });
            }
        }
    }
    let mut out: Vec<Unnamed> = found.into_values().collect();
    out.sort_by(|a, b| (&a.name, a.pids.first()).cmp(&(&b.name, b.pids.first())));
    out
}
