//! `shmkit`: list, inspect and clean up shared-memory segments.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use ndarray::IxDyn;
use serde_json::{json, Value};
use shmkit::{ArrayInfo, DType, Element, Listing, SegmentKind, SharedArray};

const HELP: &str = "\
shmkit: list, inspect and clean up shared-memory segments in /dev/shm

USAGE:
    shmkit ls [--all] [--json]          shmkit segments and .npy arrays (--all: every entry)
    shmkit inspect NAME [-n N] [--json] header, creator and the first N elements (default 8)
    shmkit rm NAME [--force] [--json]   remove a segment (others' segments need --force)
    shmkit gc [--dry-run] [--json]      remove shmkit segments whose creator has exited,
                                        except those marked persistent
    shmkit --help

EXAMPLES:
    shmkit ls
    shmkit inspect my-data -n 4
    shmkit gc --dry-run          # what a crashed run left behind
    shmkit gc --json | jq .

Exit status: 0 on success, 1 on an error, 2 on a usage error.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    match run(&args, json) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Usage>() => {
            eprintln!("shmkit: {e}\n\n{HELP}");
            ExitCode::from(2)
        }
        Err(e) => {
            match json {
                true => println!("{}", json!({ "error": format!("{e:#}") })),
                false => eprintln!("shmkit: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

fn usage(msg: impl Into<String>) -> anyhow::Error {
    Usage(msg.into()).into()
}

fn run(args: &[String], json: bool) -> Result<()> {
    let words: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with('-')).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let known = ["--json", "--all", "--force", "--dry-run", "-n", "--help", "-h"];
    if let Some(bad) = args.iter().find(|a| a.starts_with('-') && !known.contains(&a.as_str())) {
        return Err(usage(format!("unknown option {bad}")));
    }
    match words.as_slice() {
        _ if flag("--help") || flag("-h") => {
            println!("{HELP}");
            Ok(())
        }
        ["ls"] => ls(flag("--all"), json),
        ["inspect", name] | ["inspect", name, _] => inspect(name, count(args)?, json),
        ["rm", name] => rm(name, flag("--force"), json),
        ["gc"] => gc(flag("--dry-run"), json),
        [] => Err(usage("no command given")),
        other => Err(usage(format!("cannot understand `{}`", other.join(" ")))),
    }
}

/// The value of `-n`, default 8.
fn count(args: &[String]) -> Result<usize> {
    match args.iter().position(|a| a == "-n") {
        None => Ok(8),
        Some(i) => args.get(i + 1).and_then(|n| n.parse().ok()).ok_or_else(|| usage("-n needs a number")),
    }
}

fn describe(l: &Listing) -> Value {
    let creator = l.creator();
    let mut v = json!({
        "name": l.name,
        "shmkit": creator.is_some(),
        "creator_pid": creator.map(|c| c.pid),
        "creator_alive": creator.map(|c| c.is_alive()),
        "garbage": l.is_garbage(),
    });
    match &l.info {
        Ok(i) => {
            v["kind"] = json!(i.kind.to_string());
            v["dtype"] = json!(i.dtype);
            v["shape"] = json!(i.shape);
            v["bytes"] = json!(i.total_len);
            v["persistent"] = json!(i.persistent);
        }
        Err(e) => v["error"] = json!(e.to_string()),
    }
    v
}

fn ls(all: bool, json: bool) -> Result<()> {
    let listings: Vec<Listing> =
        shmkit::list_segments()?.into_iter().filter(|l| all || l.info.is_ok() || l.creator().is_some()).collect();
    if json {
        println!("{}", Value::Array(listings.iter().map(describe).collect()));
        return Ok(());
    }
    println!("{:<36} {:<8} {:<6} {:<18} {:>12}  {:<14} NOTE", "NAME", "KIND", "DTYPE", "SHAPE", "BYTES", "CREATOR");
    for l in &listings {
        let creator =
            l.creator().map_or("-".into(), |c| format!("{} {}", c.pid, if c.is_alive() { "alive" } else { "dead" }));
        let (kind, dtype, shape, bytes, mut note) = match &l.info {
            Ok(i) => {
                (i.kind.to_string(), i.dtype.clone(), format!("{:?}", i.shape), i.total_len.to_string(), String::new())
            }
            Err(e) => ("?".into(), "-".into(), "-".into(), "-".into(), short(e)),
        };
        if l.info.as_ref().is_ok_and(|i| i.persistent) {
            note = "persistent".into();
        } else if l.is_garbage() {
            note = "garbage (shmkit gc removes it)".into();
        }
        println!("{:<36} {kind:<8} {dtype:<6} {shape:<18} {bytes:>12}  {creator:<14} {note}", l.name);
    }
    Ok(())
}

fn short(e: &shmkit::Error) -> String {
    match e {
        shmkit::Error::NotAnArray { .. } => "not shmkit".into(),
        shmkit::Error::NotReady { .. } => "header not written".into(),
        shmkit::Error::PermissionDenied { .. } => "another user's".into(),
        other => other.to_string(),
    }
}

fn inspect(name: &str, n: usize, json: bool) -> Result<()> {
    let info = shmkit::inspect(name).with_context(|| format!("cannot inspect '{name}'"))?;
    let head = if info.kind == SegmentKind::Array { first_elements(name, &info, n)? } else { Vec::new() };
    if json {
        let creator = info.creator.map(|c| json!({"pid": c.pid, "start_time": c.start_time, "alive": c.is_alive()}));
        let v = json!({"name": info.name, "kind": info.kind.to_string(), "dtype": info.dtype, "shape": info.shape,
            "fortran_order": info.fortran, "data_offset": info.data_offset, "data_bytes": info.data_len,
            "bytes": info.total_len, "persistent": info.persistent, "creator": creator, "first": head});
        println!("{v}");
        return Ok(());
    }
    println!("name        {}", info.name);
    println!("kind        {}", info.kind);
    println!("dtype       {}", info.dtype);
    println!("shape       {:?}{}", info.shape, if info.fortran { " (Fortran order)" } else { "" });
    println!("bytes       {} ({} of data at offset {})", info.total_len, info.data_len, info.data_offset);
    let creator = info.creator.map_or("none recorded (not created by shmkit)".into(), |c| {
        format!("pid {} ({})", c.pid, if c.is_alive() { "running" } else { "exited" })
    });
    println!("creator     {creator}");
    println!("persistent  {}", info.persistent);
    if info.kind == SegmentKind::Array {
        let shown: Vec<String> = head.iter().map(Value::to_string).collect();
        println!("first {:<5} [{}]", shown.len(), shown.join(", "));
    }
    Ok(())
}

/// The first `n` elements in memory order, whatever the dtype.
fn first_elements(name: &str, info: &ArrayInfo, n: usize) -> Result<Vec<Value>> {
    fn take<T: Element + Into<Value>>(name: &str, n: usize) -> Result<Vec<Value>> {
        let a = SharedArray::<T, IxDyn>::open(name)?;
        Ok(a.as_slice().iter().take(n).map(|&x| x.into()).collect())
    }
    match DType::from_descr(&info.dtype) {
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
    let info = shmkit::inspect(name);
    let ours = info.as_ref().is_ok_and(|i| i.creator.is_some());
    if !ours && !force {
        bail!("'{name}' was not created by shmkit (or cannot be read); add --force to remove it anyway");
    }
    shmkit::unlink(name)?;
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
