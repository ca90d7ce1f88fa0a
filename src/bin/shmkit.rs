//! `shmkit`: list, inspect and clean up shared-memory segments.
//!
//! Built with the `cli` feature: `cargo run --features cli --bin shmkit -- ls`.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ndarray::IxDyn;
use serde_json::{json, Value};
use shmkit::collections::CollectionInfo;
use shmkit::{Creator, DType, Element, Listing, Presence, SegmentInfo, SharedArray, Unnamed};

/// List, inspect and clean up shared-memory segments in /dev/shm.
#[derive(Parser)]
#[command(
    name = "shmkit",
    version,
    after_help = "EXAMPLES:\n    shmkit ls\n    shmkit inspect my-data -n 4\n    shmkit gc --dry-run          # what a crashed run left behind\n    shmkit gc --json | jq .\n\nExit status: 0 on success, 1 on an error, 2 on a usage error."
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
    /// Remove shmkit segments whose creator has exited, except those marked persistent.
    #[command(after_help = "EXAMPLES:\n    shmkit gc --dry-run\n    shmkit gc")]
    Gc {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
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
        Command::Gc { dry_run } => gc(*dry_run, cli.json),
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
    if let Some(c) = &i.collection {
        v["entries"] = json!(c.len);
        v["capacity"] = json!(c.capacity);
        v["key_type"] = json!(c.key_type);
        v["value_type"] = json!((!c.value_type.is_empty()).then_some(&c.value_type));
        v["recoveries"] = json!(c.recoveries);
    }
    v
}

/// A map's or list's types in a few characters, for `ls`.
fn types_text(c: &CollectionInfo) -> String {
    let short = |t: &str| t.rsplit("::").next().unwrap_or(t).to_owned();
    match c.value_type.is_empty() {
        true => short(&c.key_type),
        false => format!("{}→{}", short(&c.key_type), short(&c.value_type)),
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
    let listings: Vec<Listing> = shmkit::list_segments()?.into_iter().filter(shown).collect();
    let unnamed = shmkit::list_unnamed();
    if json {
        let v = json!({"segments": listings.iter().map(describe).collect::<Vec<_>>(),
            "unnamed": unnamed.iter().map(unnamed_json).collect::<Vec<_>>()});
        println!("{v}");
        return Ok(());
    }
    println!("{:<36} {:<8} {:<6} {:<18} {:>12}  {:<22} NOTE", "NAME", "KIND", "DTYPE", "SHAPE", "BYTES", "CREATOR");
    for l in &listings {
        let creator = l.creator().map_or("-".into(), |c| creator_text(&c));
        let (kind, dtype, shape, bytes, mut note) = match &l.info {
            Ok(i) => {
                let (d, s) = match (&i.array, &i.collection) {
                    (Some(a), _) => (a.dtype.clone(), format!("{:?}", a.shape)),
                    (None, Some(c)) => (types_text(c), format!("{}/{}", c.len, c.capacity)),
                    (None, None) => ("-".into(), "-".into()),
                };
                (i.kind.to_string(), d, s, i.total_len.to_string(), String::new())
            }
            Err(e) => ("?".into(), "-".into(), "-".into(), "-".into(), short(e)),
        };
        if l.info.as_ref().is_ok_and(|i| i.persistent) {
            note = "persistent".into();
        } else if l.is_garbage() {
            note = "garbage (shmkit gc removes it)".into();
        }
        println!("{:<36} {kind:<8} {dtype:<6} {shape:<18} {bytes:>12}  {creator:<22} {note}", l.name);
    }
    for u in &unnamed {
        let (name, note) = match &u.name {
            Some(n) => (n.clone(), "name removed while in use: its memory is held until these pids exit"),
            None => ("(being created)".into(), "unfinished: gets its name when complete, vanishes if its creator dies"),
        };
        let pids: Vec<String> = u.pids.iter().map(u32::to_string).collect();
        let creator = creator_text(&u.creator);
        println!(
            "{name:<36} {:<8} {:<6} {:<18} {:>12}  {creator:<22} {note} (pids {})",
            u.kind,
            "-",
            "-",
            u.total_len,
            pids.join(" ")
        );
    }
    Ok(())
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
    let info = shmkit::inspect(name).with_context(|| format!("cannot inspect '{name}'"))?;
    let head = match &info.array {
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
    if let Some(c) = &info.collection {
        match c.value_type.is_empty() {
            true => println!("elements    {} of {} ({})", c.len, c.capacity, c.key_type),
            false => println!("entries     {} of {} ({} → {})", c.len, c.capacity, c.key_type, c.value_type),
        }
        if info.kind == shmkit::SegmentKind::Map {
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
    } else if info.array.is_some() {
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
        true => shmkit::unlink(name)?,
        false => match shmkit::remove(name) {
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

fn gc(dry_run: bool, json: bool) -> Result<()> {
    let names = shmkit::collect_garbage(dry_run)?;
    if json {
        println!("{}", json!({ "dry_run": dry_run, "removed": names }));
        return Ok(());
    }
    let (verb, total) = if dry_run { ("would remove", "would be removed") } else { ("removed", "removed") };
    names.iter().for_each(|n| println!("{verb} {n}"));
    println!("{} segment(s) {total}", names.len());
    Ok(())
}
