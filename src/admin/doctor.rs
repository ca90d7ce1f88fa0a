//! `doctor`: the limits shared memory meets on this machine, read now, and
//! what to change; `shmkit doctor` prints it.

use super::gc::{list, Listing};
use crate::{os, Error, Result};

/// Whether systemd removes this user's `/dev/shm` files at their last
/// logout (`RemoveIPC=`, see `logind.conf(5)`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoveIpc {
    /// It does: `persist()` does not outlive this user's last session
    /// (ssh and cron sessions count).
    Yes {
        /// Where that was read (the file, or "systemd's default").
        from: String,
    },
    /// It does not (set to `no`, or this user is root or a system user).
    No {
        /// Why.
        why: String,
    },
    /// No systemd-logind here (a container, say).
    NotHere,
}

/// What [`doctor`] found.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Checkup {
    /// `/dev/shm`'s size, in bytes.
    pub dev_shm_size: u64,
    /// Bytes free in it.
    pub dev_shm_free: u64,
    /// Segments shmkit made that are there now, and their bytes.
    pub segments: usize,
    /// Their bytes.
    pub segment_bytes: u64,
    /// Of those, garbage `shmkit gc` would remove (creator gone, not
    /// persistent, or a removal cut short), and their bytes.
    pub garbage: usize,
    /// Their bytes.
    pub garbage_bytes: u64,
    /// systemd's `RemoveIPC` for this user.
    pub remove_ipc: RemoveIpc,
    /// `vm.max_map_count`: mappings a process may have (each open handle holds one).
    pub max_map_count: u64,
    /// `RLIMIT_NOFILE` of this process, soft and hard (each open handle holds a file).
    pub open_files_limit: (u64, u64),
    /// What to change, one sentence each; empty if nothing.
    pub advice: Vec<String>,
}

/// Reads the limits and leftovers of this machine (for this user) and says
/// what to change.
pub fn doctor() -> Result<Checkup> {
    let dir = os::shm_dir().map_err(Error::shm_dir)?;
    let (free, size) = os::space(dir);
    let listed = list()?;
    let ours: Vec<_> = listed.iter().filter(|l| l.creator().is_some() || l.removing.is_some()).collect();
    let bytes = |l: &&Listing| l.info.as_ref().map_or(0, |i| i.total_len as u64);
    let garbage: Vec<_> = ours.iter().filter(|l| l.is_garbage() || l.removing.is_some()).collect();
    let limits = os::limits();
    let mut check = Checkup {
        dev_shm_size: size,
        dev_shm_free: free,
        segments: ours.len(),
        segment_bytes: ours.iter().map(bytes).sum(),
        garbage: garbage.len(),
        garbage_bytes: garbage.iter().map(|l| bytes(l)).sum(),
        remove_ipc: remove_ipc(),
        max_map_count: limits.max_mappings,
        open_files_limit: (limits.max_open_files, limits.hard_open_files),
        advice: Vec::new(),
    };
    check.advice = advise(&check);
    Ok(check)
}

fn advise(c: &Checkup) -> Vec<String> {
    let mut out = Vec::new();
    if c.dev_shm_size < 1 << 30 {
        out.push(format!(
            "/dev/shm holds only {} MiB (containers get 64 MiB by default): enlarge it (`mount -o remount,size=8G /dev/shm`; Docker: `--shm-size=8g`; Kubernetes: an emptyDir volume with medium: Memory mounted at /dev/shm)",
            c.dev_shm_size >> 20
        ));
    }
    if c.garbage > 0 {
        out.push(format!(
            "{} leftover segments ({} MiB) whose creators are gone: remove them with `shmkit gc`",
            c.garbage,
            c.garbage_bytes >> 20
        ));
    }
    if let RemoveIpc::Yes { from } = &c.remove_ipc {
        out.push(format!(
            "systemd-logind removes this user's /dev/shm files at its last logout (RemoveIPC=yes, from {from}): persisted segments do not survive it. Set RemoveIPC=no in /etc/systemd/logind.conf, keep a session (`loginctl enable-linger`), or run as a system user"
        ));
    }
    if c.max_map_count < 262_144 {
        out.push(format!(
            "vm.max_map_count is {}: a process can hold about that many open handles at once; raise it for more (`sysctl -w vm.max_map_count=1048576`)",
            c.max_map_count
        ));
    }
    if c.open_files_limit.0 < 4096 {
        out.push(format!(
            "this process may open {} files (RLIMIT_NOFILE; hard limit {}): each open handle holds one; raise it (`ulimit -n {}`)",
            c.open_files_limit.0, c.open_files_limit.1, c.open_files_limit.1.min(1 << 20)
        ));
    }
    out
}

/// systemd-logind's `RemoveIPC` for this user: the last `RemoveIPC=` in
/// `/etc/systemd/logind.conf` and its `*.conf` drop-ins (from `/etc`,
/// `/run`, `/usr/local/lib` and `/usr/lib`, by file name, as
/// `systemd.syntax(7)` orders them), else systemd's default (yes); root
/// and system users (uid below 1000) are never affected.
fn remove_ipc() -> RemoveIpc {
    if !std::path::Path::new("/run/systemd/system").exists() {
        return RemoveIpc::NotHere;
    }
    let uid = os::effective_uid();
    if uid < 1000 {
        return RemoveIpc::No { why: format!("uid {uid} is root or a system user, whose IPC logind leaves alone") };
    }
    let mut files = vec![std::path::PathBuf::from("/etc/systemd/logind.conf")];
    files.extend(drop_ins());
    let mut found = None;
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        if let Some(v) = setting(&text, "RemoveIPC") {
            found = Some((v, f.display().to_string()));
        }
    }
    match found {
        Some((v, from)) if matches!(v.as_str(), "no" | "false" | "0" | "off") => {
            RemoveIpc::No { why: format!("RemoveIPC={v} in {from}") }
        }
        Some((_, from)) => RemoveIpc::Yes { from },
        None => RemoveIpc::Yes { from: "systemd's default".into() },
    }
}

/// logind's `*.conf` drop-ins: by file name across the directories, a
/// name in an earlier directory hiding the same name in a later one.
fn drop_ins() -> Vec<std::path::PathBuf> {
    let dirs = [
        "/etc/systemd/logind.conf.d",
        "/run/systemd/logind.conf.d",
        "/usr/local/lib/systemd/logind.conf.d",
        "/usr/lib/systemd/logind.conf.d",
    ];
    let mut by_name = std::collections::BTreeMap::new();
    for dir in dirs.iter().rev() {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for e in entries.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "conf")) {
            by_name.insert(e.file_name(), e.path()); // earlier directories (inserted last) win
        }
    }
    by_name.into_values().collect()
}

/// The last value of `key` in an INI-style `text` (`key = value`, spaces
/// around `=` allowed, `#` and `;` comments), lower-cased.
fn setting(text: &str, key: &str) -> Option<String> {
    let lines = text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.starts_with(';'));
    lines
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::setting;

    #[test]
    fn settings_are_read_as_systemd_reads_them() {
        let text = "[Login]\n#RemoveIPC=no\nRemoveIPC = No\n; RemoveIPC=yes\nKillUserProcesses=no\n";
        assert_eq!(setting(text, "RemoveIPC").as_deref(), Some("no"));
        assert_eq!(setting("[Login]\nRemoveIPC=yes\nRemoveIPC=false\n", "RemoveIPC").as_deref(), Some("false"));
        assert_eq!(setting("[Login]\n", "RemoveIPC"), None);
    }
}
