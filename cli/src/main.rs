//! `shmkit`: list, inspect, clean up and check shared-memory segments.
//!
//! `cargo run -p shmkit-cli -- ls`, or `cargo install --path cli`.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use shmkit::admin::{Creator, Gc, Listing, Presence, RemoveIpc, SegmentInfo, SegmentKind, Unnamed};
use shmkit::ndarray::IxDyn;
use shmkit::{DType, Element, SharedArray};

/// List, inspect and clean up shared-memory segments in /dev/shm.
#[derive(Parser)]
#[command(
    name = "shmkit",
    version,
    after_help = "EXAMPLES:\n    shmkit ls\n    shmkit inspect my-data -n 4\n    shmkit gc --dry-run          # what a crashed run left behind\n    shmkit gc --json | jq .\n    shmkit doctor                # /dev/shm size, RemoveIPC, limits, and what to change\n\nExit status: 0 on success, 1 on an error, 2 on a usage error."
)]
struct Cli {
    /// Print JSON instead of text (errors too).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List shmkit segments and .npy arrays, and segments that have no name
    /// (being created, or removed while still in use).
    #[command(after_help = "EXAMPLES:\n    shmkit ls\n    shmkit ls --all --json")]
    Ls {
        /// Every entry of /dev/shm, not only shmkit's and numpy's.
        #[arg(long)]
        all: bool,
    },
    /// Show a segment's header, creator and first elements.
    #[command(after_help = "EXAMPLES:\n    shmkit inspect my-data\n    shmkit inspect my-data -n 4 --json")]
    Inspect {
        /// The segment's name in /dev/shm.
        name: String,
        /// How many elements of an array to show.
        #[arg(short = 'n', default_value_t = 8)]
        count: usize,
    },
    /// Remove a segment by name (others' segments need --force).
    #[command(after_help = "EXAMPLES:\n    shmkit rm my-data\n    shmkit rm some-other-programs-segment --force")]
    Rm {
        /// The segment's name in /dev/shm.
        name: String,
        /// Remove it even if shmkit did not create it.
        #[arg(long)]
        force: bool,
    },
    /// Remove shmkit segments whose creator has exited, except those marked
    /// persistent, and finish removals that were cut short.
    #[command(after_help = "EXAMPLES:\n    shmkit gc --dry-run\n    shmkit gc\n    shmkit gc --prefix myapp-")]
    Gc {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Only segments whose names start with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Only segments this process created (may be given several times).
        #[arg(long)]
        creator: Vec<u32>,
    },
    /// Check /dev/shm's size and leftovers, systemd's RemoveIPC, and the
    /// limits on open handles; say what to change.
    Doctor,
}

fn main() -> ExitCode {
    let cli = Cli::parse(); // usage errors exit with status 2
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match cli.json {
                true => println!("{}", json!({ "error": format!("{e:#}") })),
                false => eprintln!("shmkit: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Ls { all } => ls(*all, cli.json),
        Command::Inspect { name, count } => inspect(name, *count, cli.json),
        Command::Rm { name, force } => rm(name, *force, cli.json),
        Command::Gc { dry_run, prefix, creator } => gc(*dry_run, prefix.as_deref(), creator, cli.json),
        Command::Doctor => doctor(cli.json),
    }
}

fn presence(p: Presence) -> &'static str {
    match p {
        Presence::Alive => "alive",
        Presence::Gone => "exited",
        Presence::Unknown => "unknown",
    }
}

/// "pid 123 alive", with a note when the pid belongs to another PID namespace.
fn creator_text(c: &Creator) -> String {
    let ns = if c.in_this_namespace() { "" } else { " (other pid ns)" };
    format!("{} {}{ns}", c.pid, presence(c.presence))
}

fn creator_json(c: &Creator) -> Value {
    json!({"pid": c.pid, "start_time": c.start_time, "pid_namespace": c.pid_namespace,
        "same_pid_namespace": c.in_this_namespace(), "state": presence(c.presence), "alive": c.is_alive()})
}

fn info_json(i: &SegmentInfo) -> Value {
    let mut v = json!({"kind": i.kind.to_string(), "bytes": i.total_len, "data_offset": i.data_offset, "data_bytes": i.data_len,
        "persistent": i.persistent, "dtype": i.array.as_ref().map(|a| &a.dtype),
        "shape": i.array.as_ref().map(|a| &a.shape), "fortran_order": i.array.as_ref().map(|a| a.fortran)});
    v["types"] = json!(i.types.iter().map(|(r, t)| (r.clone(), json!(t))).collect::<serde_json::Map<String, Value>>());
    if let Some(c) = &i.collection {
        v["entries"] = json!(c.len);
        v["capacity"] = json!(c.capacity);
        v["recoveries"] = json!(c.recoveries);
    }
    if let Some(s) = &i.stream {
        v["stream"] = json!({"slots": s.slots, "subscribers": s.subscribers, "subscribers_alive": s.subscribers_alive,
            "newest": s.newest, "policy": s.policy, "publisher_alive": s.publisher_alive, "ended": s.ended});
    }
    v
}

/// What a segment holds, in a few characters, for `ls`: its dtypes.
fn types_text(i: &SegmentInfo) -> String {
    match (&i.array, i.types.as_slice()) {
        (Some(a), _) => a.dtype.clone(),
        (None, []) => "-".into(),
        (None, [(_, t)]) => t.clone(),
        (None, types) => types.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join("→"),
    }
}

fn describe(l: &Listing) -> Value {
    let creator = l.creator();
    let mut v = json!({
        "name": l.name,
        "shmkit": creator.is_some(),
        "creator": creator.as_ref().map(creator_json),
        "creator_pid": creator.map(|c| c.pid),
        "creator_alive": creator.map(|c| c.is_alive()),
        "garbage": l.is_garbage(),
        "removing": l.removing,
    });
    match &l.info {
        Ok(i) => info_json(i).as_object().expect("an object").iter().for_each(|(k, x)| v[k] = x.clone()),
        Err(e) => v["error"] = json!(e.to_string()),
    }
    v
}

fn unnamed_json(u: &Unnamed) -> Value {
    json!({"name": u.name, "state": if u.name.is_some() { "removed while in use" } else { "being created" },
        "kind": u.kind.to_string(), "bytes": u.total_len, "pids": u.pids, "creator": creator_json(&u.creator)})
}

fn ls(all: bool, json: bool) -> Result<()> {
    let shown = |l: &Listing| all || l.info.is_ok() || matches!(l.info, Err(shmkit::Error::OlderVersion { .. }));
    let listings: Vec<Listing> = shmkit::admin::list()?.into_iter().filter(shown).collect();
    let unnamed = shmkit::admin::list_unnamed();
    if json {
        let v = json!({"segments": listings.iter().map(describe).collect::<Vec<_>>(),
            "unnamed": unnamed.iter().map(unnamed_json).collect::<Vec<_>>()});
        println!("{v}");
        return Ok(());
    }
    let mut rows = vec![["NAME", "KIND", "TYPE", "SHAPE", "BYTES", "CREATOR", "NOTE"].map(String::from)];
    rows.extend(listings.iter().map(row));
    rows.extend(unnamed.iter().map(unnamed_row));
    print_table(&rows);
    Ok(())
}

/// One line of `ls` for an entry of /dev/shm.
fn row(l: &Listing) -> [String; 7] {
    let creator = l.creator().map_or("-".into(), |c| creator_text(&c));
    let (kind, types, shape, bytes, mut note) = match &l.info {
        Ok(i) => {
            let shape = match (&i.array, &i.collection) {
                (Some(a), _) if i.stream.is_some() => {
                    let s = i.stream.as_ref().expect("checked");
                    format!("{:?} #{} {}/{} subs", a.shape, s.newest, s.subscribers_alive, s.subscribers)
                }
                (Some(a), _) => format!("{:?}", a.shape),
                (None, Some(c)) => format!("{}/{}", c.len, c.capacity),
                (None, None) => "-".into(),
            };
            (i.kind.to_string(), types_text(i), shape, i.total_len.to_string(), String::new())
        }
        Err(e) => ("?".into(), "-".into(), "-".into(), "-".into(), short(e)),
    };
    if let Some(n) = &l.removing {
        note = format!("unfinished removal of {n} (shmkit gc finishes it)");
    } else if l.info.as_ref().is_ok_and(|i| i.persistent) {
        note = "persistent".into();
    } else if l.is_garbage() {
        note = "garbage (shmkit gc removes it)".into();
    }
    [l.name.clone(), kind, types, shape, bytes, creator, note]
}

/// One line of `ls` for a segment without a name.
fn unnamed_row(u: &Unnamed) -> [String; 7] {
    let (name, note) = match &u.name {
        Some(n) => (n.clone(), "name removed while in use: its memory is held until these pids exit"),
        None => ("(being created)".into(), "unfinished: gets its name when complete, vanishes if its creator dies"),
    };
    let pids: Vec<String> = u.pids.iter().map(u32::to_string).collect();
    let note = format!("{note} (pids {})", pids.join(" "));
    [name, u.kind.to_string(), "-".into(), "-".into(), u.total_len.to_string(), creator_text(&u.creator), note]
}

/// Prints rows in columns as wide as their widest cell (BYTES right-aligned).
fn print_table(rows: &[[String; 7]]) {
    let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..7).map(width).collect();
    for r in rows {
        let cells: Vec<String> = (0..7)
            .map(|c| match (c, c == 6) {
                (4, _) => format!("{:>w$}", r[c], w = widths[c]),
                (_, true) => r[c].clone(),
                _ => format!("{:<w$}", r[c], w = widths[c]),
            })
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

fn short(e: &shmkit::Error) -> String {
    match e {
        shmkit::Error::NotAnArray { .. } => "not shmkit".into(),
        shmkit::Error::PermissionDenied { .. } => "another user's".into(),
        shmkit::Error::OlderVersion { .. } => "older shmkit's (shmkit rm removes it)".into(),
        other => other.to_string(),
    }
}

fn inspect(name: &str, n: usize, json: bool) -> Result<()> {
    let info = shmkit::admin::inspect(name).with_context(|| format!("cannot inspect '{name}'"))?;
    let head = match &info.array {
        // A stream's slots change under a reader: its state is shown instead.
        Some(_) if info.stream.is_some() => Some(Vec::new()),
        // A writer holding a mutable view keeps readers' claims out: show
        // the header anyway, and say why the elements are missing.
        Some(a) => match first_elements(name, &a.dtype, n) {
            Err(e) if matches!(e.downcast_ref(), Some(shmkit::Error::Busy { .. })) => None,
            other => Some(other?),
        },
        None => Some(Vec::new()),
    };
    let busy = head.is_none();
    let head = head.unwrap_or_default();
    if json {
        let mut v = info_json(&info);
        v["name"] = json!(info.name);
        v["creator"] = json!(info.creator.as_ref().map(creator_json));
        v["first"] = if busy { json!(null) } else { json!(head) };
        println!("{v}");
        return Ok(());
    }
    println!("name        {}", info.name);
    println!("kind        {}", info.kind);
    if let Some(a) = &info.array {
        println!("dtype       {}", a.dtype);
        println!("shape       {:?}{}", a.shape, if a.fortran { " (Fortran order)" } else { "" });
    }
    for (role, dtype) in &info.types {
        println!("{:<11} {dtype}", role);
    }
    if let Some(s) = &info.stream {
        println!("slots       {} (the shape's first axis)", s.slots);
        println!("policy      {}", s.policy);
        println!("newest      {}{}", s.newest, if s.newest == 0 { " (nothing published yet)" } else { "" });
        println!("subscribers {} alive, at most {}", s.subscribers_alive, s.subscribers);
        let state = match (s.ended, s.publisher_alive) {
            (true, _) => "ended",
            (false, true) => "alive",
            (false, false) => "dead (subscribers read what it published, then hear so)",
        };
        println!("publisher   {state}");
    }
    if let Some(c) = &info.collection {
        println!("entries     {} of {}", c.len, c.capacity);
        if info.kind == SegmentKind::Map {
            println!("recoveries  {} (repairs after a process died mid-operation)", c.recoveries);
        }
    }
    println!("bytes       {} ({} of data at offset {})", info.total_len, info.data_len, info.data_offset);
    let creator = info.creator.map_or("none recorded (not created by shmkit)".into(), |c| {
        let state = match c.presence {
            Presence::Alive => "running",
            Presence::Gone => "exited",
            Presence::Unknown => "state unknown",
        };
        let ns = if c.in_this_namespace() { "" } else { ", in another pid namespace" };
        format!("pid {} ({state}{ns})", c.pid)
    });
    println!("creator     {creator}");
    println!("persistent  {}", info.persistent);
    if info.array.is_some() && busy {
        println!("first       (not shown: a writer holds a mutable view of the array)");
    } else if info.array.is_some() && info.stream.is_none() {
        let shown: Vec<String> = head.iter().map(Value::to_string).collect();
        println!("first {:<5} [{}]", shown.len(), shown.join(", "));
    }
    Ok(())
}

/// The first `n` elements in memory order, whatever the dtype.
fn first_elements(name: &str, dtype: &str, n: usize) -> Result<Vec<Value>> {
    fn take<T: Element + Into<Value>>(name: &str, n: usize) -> Result<Vec<Value>> {
        let a = SharedArray::<T, IxDyn>::open(name)?;
        let values = a.as_slice()?.iter().take(n).map(|&x| x.into()).collect();
        Ok(values)
    }
    match DType::from_descr(dtype) {
        Some(DType::I8) => take::<i8>(name, n),
        Some(DType::I16) => take::<i16>(name, n),
        Some(DType::I32) => take::<i32>(name, n),
        Some(DType::I64) => take::<i64>(name, n),
        Some(DType::U8) => take::<u8>(name, n),
        Some(DType::U16) => take::<u16>(name, n),
        Some(DType::U32) => take::<u32>(name, n),
        Some(DType::U64) => take::<u64>(name, n),
        Some(DType::F32) => take::<f32>(name, n),
        Some(DType::F64) => take::<f64>(name, n),
        _ => Ok(Vec::new()), // a dtype shmkit cannot hold: header only
    }
}

fn rm(name: &str, force: bool, json: bool) -> Result<()> {
    use shmkit::Error::{BadHeader, NotAnArray, TooSmall};
    match force {
        true => shmkit::admin::unlink(name)?,
        false => match shmkit::admin::remove(name) {
            Err(NotAnArray { .. } | BadHeader { .. } | TooSmall { .. }) => {
                bail!("'{name}' was not created by shmkit (or cannot be read); add --force to remove it anyway")
            }
            other => other?,
        },
    }
    match json {
        true => println!("{}", json!({ "removed": [name] })),
        false => println!("removed {name}"),
    }
    Ok(())
}

fn gc(dry_run: bool, prefix: Option<&str>, creators: &[u32], json: bool) -> Result<()> {
    let mut gc = Gc::new().dry_run(dry_run);
    if let Some(p) = prefix {
        gc = gc.prefix(p);
    }
    for &pid in creators {
        gc = gc.creator(pid);
    }
    let names = gc.run()?;
    if json {
        println!("{}", json!({ "dry_run": dry_run, "removed": names }));
        return Ok(());
    }
    let (verb, total) = if dry_run { ("would remove", "would be removed") } else { ("removed", "removed") };
    names.iter().for_each(|n| println!("{verb} {n}"));
    println!("{} segment(s) {total}", names.len());
    Ok(())
}

fn doctor(json: bool) -> Result<()> {
    let c = shmkit::admin::doctor()?;
    let remove_ipc = match &c.remove_ipc {
        RemoveIpc::Yes { from } => format!("yes ({from}): persisted segments go at this user's last logout"),
        RemoveIpc::No { why } => format!("no ({why})"),
        _ => "not applicable (no systemd-logind)".into(),
    };
    if json {
        let v = json!({"dev_shm_size": c.dev_shm_size, "dev_shm_free": c.dev_shm_free, "segments": c.segments,
            "segment_bytes": c.segment_bytes, "garbage": c.garbage, "garbage_bytes": c.garbage_bytes,
            "remove_ipc": remove_ipc, "max_map_count": c.max_map_count,
            "open_files_limit": c.open_files_limit.0, "open_files_hard_limit": c.open_files_limit.1,
            "advice": c.advice});
        println!("{v}");
        return Ok(());
    }
    let mib = |b: u64| b >> 20;
    println!("/dev/shm        {} MiB, {} MiB free", mib(c.dev_shm_size), mib(c.dev_shm_free));
    println!(
        "shmkit segments {} ({} MiB), of which garbage {} ({} MiB)",
        c.segments,
        mib(c.segment_bytes),
        c.garbage,
        mib(c.garbage_bytes)
    );
    println!("RemoveIPC       {remove_ipc}");
    println!("vm.max_map_count {}", c.max_map_count);
    println!("open files      {} (hard limit {})", c.open_files_limit.0, c.open_files_limit.1);
    match c.advice.is_empty() {
        true => println!("nothing to change"),
        false => c.advice.iter().for_each(|a| println!("- {a}")),
    }
    Ok(())
}
