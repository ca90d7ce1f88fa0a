//! The `shmkit` command line against fixtures, including segments left
//! behind by a coordinator killed with SIGKILL.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{child_arg, shm_exists, spawn_child, unique, ShmFile, Watchdog};
use serde_json::Value;
use shmkit::ndarray::{array, Ix1};
use shmkit::sync::{EventMode, ShmEvent, ShmQueue};
use shmkit::SharedArray;

fn shmkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit")).args(args).output().expect("run shmkit")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(args: &[&str]) -> Value {
    let out = shmkit(args);
    assert!(out.status.success(), "shmkit {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

#[test]
fn gc_removes_exactly_what_a_killed_coordinator_left() {
    let test = "gc_removes_exactly_what_a_killed_coordinator_left";
    if let Some(base) = child_arg() {
        // Owner handles, alive until the parent kills this process.
        let _a = SharedArray::create_from(&format!("{base}-a"), &array![[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]).unwrap();
        let _b = SharedArray::<i32, Ix1>::create(&format!("{base}-b"), 10).unwrap();
        let _q = ShmQueue::<u64>::create(&format!("{base}-q"), 16).unwrap();
        let keep = SharedArray::<u8, Ix1>::create(&format!("{base}-keep"), 4).unwrap();
        keep.persist().unwrap();
        ShmEvent::open(&format!("{base}-ready")).unwrap().set();
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let base = unique("cli");
    let ready = ShmEvent::create(&format!("{base}-ready"), EventMode::Manual).unwrap();
    let mut coordinator = spawn_child(test, &base, std::process::Stdio::null());
    ready.wait_timeout(Duration::from_secs(30)).expect("the child made its segments");
    rustix::process::kill_process(rustix::process::Pid::from_child(&coordinator), rustix::process::Signal::KILL)
        .unwrap();
    coordinator.wait().unwrap();
    let dead = [format!("{base}-a"), format!("{base}-b"), format!("{base}-q")];
    let _cleanup: Vec<ShmFile> = dead.iter().chain([&format!("{base}-keep")]).map(|n| ShmFile(n.clone())).collect();
    let live = SharedArray::<f32, Ix1>::create(&format!("{base}-live"), 3).unwrap();
    let foreign = ShmFile::with_bytes(&format!("{base}-foreign"), b"made by some other program");

    let listing = json(&["ls", "--all", "--json"]);
    let entry = |n: &str| {
        let segments = listing["segments"].as_array().unwrap();
        segments.iter().find(|e| e["name"] == n).cloned().unwrap_or_else(|| panic!("{n} not listed"))
    };
    for n in &dead {
        assert_eq!(entry(n)["garbage"], true, "{n}");
        assert_eq!(entry(n)["creator_alive"], false);
    }
    assert_eq!(entry(&dead[0])["dtype"], "<f8");
    assert_eq!(entry(&dead[0])["shape"], serde_json::json!([2, 3]));
    assert_eq!(entry(&dead[2])["kind"], "queue");
    assert_eq!(
        (entry(&format!("{base}-keep"))["persistent"].clone(), entry(&format!("{base}-keep"))["garbage"].clone()),
        (true.into(), false.into())
    );
    assert_eq!(entry(live.name())["creator_alive"], true);
    assert_eq!(entry(&foreign.0)["shmkit"], false);
    let text = stdout(&shmkit(&["ls"]));
    assert!(text.lines().any(|l| l.starts_with(&dead[1]) && l.contains("garbage")), "{text}");
    assert!(!text.contains(&foreign.0), "plain ls shows only arrays and shmkit segments");

    let shown = stdout(&shmkit(&["inspect", &dead[0], "-n", "4"]));
    for want in ["dtype       <f8", "shape       [2, 3]", "(exited)", "[0.0, 1.0, 2.0, 3.0]"] {
        assert!(shown.contains(want), "inspect lacks {want:?}:\n{shown}");
    }
    assert_eq!(json(&["inspect", &dead[1], "--json"])["first"], serde_json::json!([0, 0, 0, 0, 0, 0, 0, 0]));

    let would: Vec<String> = serde_json::from_value(json(&["gc", "--dry-run", "--json"])["removed"].clone()).unwrap();
    let ours: Vec<&String> = would.iter().filter(|n| n.starts_with(&base)).collect();
    assert_eq!(ours, dead.iter().collect::<Vec<_>>(), "gc would remove exactly the dead coordinator's three");
    assert!(dead.iter().all(|n| shm_exists(n)), "a dry run removes nothing");
    let removed = json(&["gc", "--json"]);
    assert!(
        removed["removed"].as_array().unwrap().iter().filter(|n| n.as_str().unwrap().starts_with(&base)).count() == 3
    );
    assert!(dead.iter().all(|n| !shm_exists(n)));
    for kept in [format!("{base}-keep"), live.name().to_owned(), foreign.0.clone()] {
        assert!(shm_exists(&kept), "gc removed {kept}");
    }

    let refused = shmkit(&["rm", &foreign.0]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    assert!(shmkit(&["rm", &foreign.0, "--force"]).status.success());
    assert!(shmkit(&["rm", &format!("{base}-keep")]).status.success());
    assert!(!shm_exists(&foreign.0) && !shm_exists(&format!("{base}-keep")));
}

#[test]
fn errors_and_usage_have_their_own_exit_codes() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let missing = shmkit(&["inspect", &unique("cli-missing")]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no segment named"));
    let as_json = json_error(&["inspect", &unique("cli-missing"), "--json"]);
    assert!(as_json["error"].as_str().unwrap().contains("no segment named"));
    assert_eq!(shmkit(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(shmkit(&["ls", "--bogus"]).status.code(), Some(2));
    let help = stdout(&shmkit(&["--help"]));
    assert!(help.contains("EXAMPLES") && help.contains("shmkit gc --dry-run"));
    for sub in ["ls", "inspect", "rm", "gc"] {
        let help = shmkit(&[sub, "--help"]);
        assert!(help.status.success() && stdout(&help).contains("EXAMPLES"), "shmkit {sub} --help");
    }
}

fn json_error(args: &[&str]) -> Value {
    let out = shmkit(args);
    assert_eq!(out.status.code(), Some(1));
    serde_json::from_slice(&out.stdout).expect("JSON error")
}

#[test]
fn ls_shows_a_segment_whose_name_was_removed_while_its_owner_runs() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let owner = SharedArray::<u16, Ix1>::create(&unique("cli-orphan"), 1000).unwrap();
    let name = owner.name().to_owned();
    shmkit::admin::unlink(&name).unwrap(); // what Python's resource_tracker does to attached segments
    let listing = json(&["ls", "--json"]);
    let unnamed = listing["unnamed"].as_array().unwrap();
    let entry = unnamed.iter().find(|u| u["name"] == name.as_str()).unwrap_or_else(|| panic!("{listing}"));
    assert_eq!(entry["state"], "removed while in use");
    assert_eq!(entry["creator"]["alive"], true);
    assert!(entry["pids"].as_array().unwrap().contains(&std::process::id().into()));
    let text = stdout(&shmkit(&["ls"]));
    assert!(text.lines().any(|l| l.starts_with(&name) && l.contains("name removed while in use")), "{text}");
    drop(owner);
    let after = json(&["ls", "--json"]);
    assert!(!after["unnamed"].as_array().unwrap().iter().any(|u| u["name"] == name.as_str()), "gone with its owner");
}

#[test]
fn ls_and_inspect_show_maps_and_lists_with_their_entries_and_capacity() {
    let _w = Watchdog::new(Duration::from_secs(60));
    use shmkit::collections::{ShmMap, ShmVec};
    let map = ShmMap::<u64, f32>::create(&unique("cli-map"), 500).unwrap();
    (0..7).for_each(|k| assert!(map.insert(k, 0.5).unwrap().is_none()));
    let list = ShmVec::<[u8; 16]>::create(&unique("cli-list"), 64).unwrap();
    (0..3).for_each(|_| assert!(list.push([1; 16]).is_ok()));
    let listing = json(&["ls", "--json"]);
    let entry = |n: &str| listing["segments"].as_array().unwrap().iter().find(|e| e["name"] == n).cloned().unwrap();
    let (m, l) = (entry(map.name()), entry(list.name()));
    assert_eq!((m["kind"].as_str(), m["entries"].as_u64(), m["capacity"].as_u64()), (Some("map"), Some(7), Some(500)));
    let types = (m["types"]["key"].as_str(), m["types"]["value"].as_str());
    assert_eq!(types, (Some("<u8"), Some("<f4")), "numpy dtypes: {m}");
    assert_eq!((l["kind"].as_str(), l["entries"].as_u64(), l["capacity"].as_u64()), (Some("list"), Some(3), Some(64)));
    let text = stdout(&shmkit(&["ls"]));
    let line = text.lines().find(|l| l.starts_with(map.name())).expect("the map is listed");
    assert!(line.contains("map") && line.contains("<u8→<f4") && line.contains("7/500"), "{line}");
    let header = text.lines().next().unwrap();
    assert_eq!(header.find("TYPE"), line.find("<u8→<f4"), "columns line up: {header}\n{line}");
    let shown = stdout(&shmkit(&["inspect", map.name()]));
    assert!(shown.contains("key         <u8") && shown.contains("value       <f4"), "{shown}");
    assert!(shown.contains("entries     7 of 500"), "{shown}");
    assert!(shown.contains("recoveries  0"), "{shown}");
    let shown = stdout(&shmkit(&["inspect", list.name()]));
    assert!(shown.contains("item        (16,)|u1") && shown.contains("entries     3 of 64"), "{shown}");
}

#[test]
fn ls_and_inspect_show_streams_with_their_slots_subscribers_and_newest_sample() {
    let _w = Watchdog::new(Duration::from_secs(60));
    use shmkit::stream::{Policy, Publisher, Subscriber};
    let name = unique("cli-stream");
    let p = Publisher::<u8, shmkit::ndarray::Ix2>::create(&name, (4, 3), 6, Policy::Overwrite).unwrap();
    let _subs: Vec<_> = (0..2).map(|_| Subscriber::<u8, shmkit::ndarray::Ix2>::open(&name).unwrap()).collect();
    for _ in 0..5 {
        let loan = p.loan().unwrap();
        p.publish(loan).unwrap();
    }
    let listing = json(&["ls", "--json"]);
    let e = listing["segments"].as_array().unwrap().iter().find(|e| e["name"] == name.as_str()).cloned().unwrap();
    assert_eq!(e["kind"].as_str(), Some("stream"), "{e}");
    let s = &e["stream"];
    assert_eq!(
        (s["slots"].as_u64(), s["newest"].as_u64(), s["subscribers_alive"].as_u64()),
        (Some(6), Some(5), Some(2))
    );
    assert_eq!((s["publisher_alive"].as_bool(), s["policy"].as_str()), (Some(true), Some("overwrite")), "{s}");
    let text = stdout(&shmkit(&["ls"]));
    let line = text.lines().find(|l| l.starts_with(&name)).expect("the stream is listed");
    assert!(line.contains("stream") && line.contains("[6, 4, 3] #5 2/4 subs"), "{line}");
    let out = shmkit(&["inspect", &name]);
    let shown = stdout(&out);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(shown.contains("newest      5") && shown.contains("subscribers 2 alive, at most 4"), "{shown}");
    assert!(shown.contains("publisher   alive"), "{shown}");
}

#[test]
fn inspect_shows_the_header_of_an_array_a_writer_holds() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let name = unique("cli-busy");
    let mut a = SharedArray::create_from(&name, &array![1.0, 2.0, 3.0]).unwrap();
    let free = json(&["inspect", &name, "--json"]);
    assert_eq!(free["first"], serde_json::json!([1.0, 2.0, 3.0]), "{free}");
    let _writer = a.view_mut().unwrap();
    let held = json(&["inspect", &name, "--json"]);
    assert_eq!((held["shape"].clone(), held["first"].clone()), (serde_json::json!([3]), Value::Null), "{held}");
    let text = stdout(&shmkit(&["inspect", &name]));
    assert!(text.contains("not shown: a writer holds a mutable view"), "{text}");
}
