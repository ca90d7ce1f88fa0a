//! numpy on the other side: it maps shmkit segments zero-copy, and shmkit
//! opens what numpy writes. Needs python3; installs numpy into a venv
//! under `target/` when the system python lacks it (never skips).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{unique, ShmFile};
use ndarray::{Array2, Ix1, Ix2};
use shmkit::{Error, SharedArray};

fn python() -> PathBuf {
    common::setup::python_with_numpy()
}

/// Runs `code` in python with numpy; panics with its stderr on failure.
fn run_python(code: &str) -> String {
    let out = Command::new(python()).args(["-c", code]).output().expect("run python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python failed:\n{stderr}");
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[test]
fn numpy_maps_a_shmkit_segment_zero_copy_and_rust_sees_its_writes() {
    let _w = common::Watchdog::new(std::time::Duration::from_secs(600));
    let name = unique("np-map");
    let data = Array2::from_shape_fn((3, 4), |(i, j)| (10 * i + j) as f64);
    let a = SharedArray::create_from(&name, &data).unwrap();
    let code = format!(
        "import numpy as np\n\
         a = np.load('/dev/shm/{name}', mmap_mode='r+')\n\
         assert isinstance(a, np.memmap), type(a)\n\
         print(a.dtype.str, a.shape, a.offset % 64, int(a[2, 3]))\n\
         a *= 2\n\
         a.flush()\n"
    );
    let out = run_python(&code);
    assert_eq!(out.trim(), "<f8 (3, 4) 0 23");
    assert_eq!(*a.view().unwrap(), data.mapv(|x| 2.0 * x));
}

#[test]
fn numpy_reads_a_shmkit_segment_without_mmap_too() {
    let _w = common::Watchdog::new(std::time::Duration::from_secs(600));
    let name = unique("np-load");
    let _a = SharedArray::create_from(&name, &ndarray::array![1i16, -2, 3]).unwrap();
    let out = run_python(&format!("import numpy as np\nprint(np.load('/dev/shm/{name}').tolist())"));
    assert_eq!(out.trim(), "[1, -2, 3]");
}

#[test]
fn npy_written_by_numpy_into_dev_shm_opens_as_shared_array() {
    let _w = common::Watchdog::new(std::time::Duration::from_secs(600));
    let name = format!("{}.npy", unique("np-save"));
    let _cleanup = ShmFile(name.clone());
    run_python(&format!(
        "import numpy as np\n\
         np.save('/dev/shm/{name}', np.arange(12, dtype='<i4').reshape(3, 4))"
    ));
    let mut a = SharedArray::<i32, Ix2>::open(&name).unwrap();
    assert!(!a.is_owner());
    assert_eq!(*a.view().unwrap(), Array2::from_shape_fn((3, 4), |(i, j)| (4 * i + j) as i32));
    assert!(a.info().unwrap().creator.is_none(), "numpy's file has no shmkit trailer");
    a.rows_mut(0..1).unwrap().fill(-7);
    let out = run_python(&format!("import numpy as np\nprint(np.load('/dev/shm/{name}')[0].tolist())"));
    assert_eq!(out.trim(), "[-7, -7, -7, -7]");
    assert!(matches!(SharedArray::<f64, Ix2>::open(&name), Err(Error::WrongDtype { .. })));
}

#[test]
fn fortran_ordered_npy_from_numpy_has_the_right_view() {
    let _w = common::Watchdog::new(std::time::Duration::from_secs(600));
    let name = format!("{}.npy", unique("np-fortran"));
    let _cleanup = ShmFile(name.clone());
    run_python(&format!(
        "import numpy as np\n\
         np.save('/dev/shm/{name}', np.asfortranarray(np.arange(6, dtype='<f4').reshape(2, 3)))"
    ));
    let a = SharedArray::<f32, Ix2>::open(&name).unwrap();
    assert_eq!(*a.view().unwrap(), ndarray::array![[0.0f32, 1.0, 2.0], [3.0, 4.0, 5.0]]);
    assert_eq!(*a.as_slice().unwrap(), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0], "memory order is column-major");
    // Distinct rows are distinct elements, interleaved in memory: two
    // handles may write one row each, but not a row and the whole array.
    let (mut top, mut bottom) = (SharedArray::<f32, Ix2>::open(&name).unwrap(), a);
    let mut row0 = top.rows_mut(0..1).unwrap();
    let mut row1 = bottom.rows_mut(1..2).unwrap();
    row0.fill(-1.0);
    row1.fill(-2.0);
    drop(row1);
    assert!(matches!(bottom.view(), Err(Error::Busy { .. })), "row 0 is claimed");
    drop(row0);
    assert_eq!(*bottom.view().unwrap(), ndarray::array![[-1.0f32, -1.0, -1.0], [-2.0, -2.0, -2.0]]);
    let one_byte = format!("{}.npy", unique("np-u1"));
    let _cleanup2 = ShmFile(one_byte.clone());
    run_python(&format!("import numpy as np\nnp.save('/dev/shm/{one_byte}', np.array([1, 2, 250], dtype=np.uint8))"));
    assert_eq!(*SharedArray::<u8, Ix1>::open(&one_byte).unwrap().as_slice().unwrap(), [1, 2, 250]);
}

#[test]
fn numpy_refuses_to_load_a_lock_or_queue_segment() {
    let _w = common::Watchdog::new(std::time::Duration::from_secs(600));
    let mutex = shmkit::sync::ShmMutex::create(&unique("np-mutex"), 0u64).unwrap();
    let queue = shmkit::sync::ShmQueue::<u32>::create(&unique("np-queue"), 4).unwrap();
    for name in [mutex.name(), queue.name()] {
        let out = run_python(&format!(
            "import numpy as np\n\
             for how in ({{'mmap_mode': 'r+'}}, {{}}):\n\
             \x20   try:\n\
             \x20       np.load('/dev/shm/{name}', **how)\n\
             \x20       print('loaded')\n\
             \x20   except ValueError as e:\n\
             \x20       print('refused')\n\
             try:\n\
             \x20   np.lib.format.open_memmap('/dev/shm/{name}', mode='r+')\n\
             \x20   print('mapped')\n\
             except ValueError:\n\
             \x20   print('refused')\n"
        ));
        assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["refused"; 3], "{name}: {out}");
    }
}

/// Python's `SharedMemory(name=...)` registers every segment it attaches
/// with its resource tracker, which unlinks it when the attaching process
/// exits (Python 3.8-3.12; `track=False` from 3.13). `np.load(...,
/// mmap_mode='r+')` never does: the way the README tells Python users.
#[test]
fn python_attaches_safely_with_np_load_and_shared_memory_unlinks_what_it_attached() {
    let _w = common::Watchdog::new(std::time::Duration::from_secs(600));
    let safe = SharedArray::create_from(&unique("np-safe"), &ndarray::array![1.0f64, 2.0, 3.0]).unwrap();
    run_python(&format!(
        "import numpy as np\n\
         a = np.load('/dev/shm/{}', mmap_mode='r+')\n\
         a[0] = 10.0\n\
         a.flush()\n",
        safe.name()
    ));
    assert!(common::shm_exists(safe.name()), "np.load removed the segment");
    assert_eq!(*safe.as_slice().unwrap(), [10.0, 2.0, 3.0]);

    let victim = SharedArray::<f64, Ix1>::create(&unique("np-tracker"), 3).unwrap();
    let out = Command::new(python())
        .args([
            "-c",
            &format!(
                "from multiprocessing import shared_memory\n\
             s = shared_memory.SharedMemory(name='{}')\n\
             print(s.size)\n\
             s.close()\n",
                victim.name()
            ),
        ])
        .output()
        .expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!common::shm_exists(victim.name()), "Python's resource tracker left it: has its behaviour changed?");
    let unnamed = shmkit::admin::list_unnamed();
    let seen = unnamed.iter().find(|u| u.name.as_deref() == Some(victim.name()));
    let seen = seen.unwrap_or_else(|| panic!("shmkit ls does not show the orphan: {unnamed:?}"));
    assert!(seen.creator.is_alive() && seen.pids.contains(&std::process::id()));
    assert!(matches!(victim.close(), Err(Error::NotFound { .. })), "close() reports the name was removed");
}

/// A deterministic stream of choices for the header generator.
struct Pick(u64);

impl Pick {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }

    fn one<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[self.next(options.len())]
    }

    /// Mostly one of `good`, sometimes one of `bad`.
    fn mostly<'a>(&mut self, good: &[&'a str], bad: &[&'a str]) -> &'a str {
        match self.next(7) {
            0 => self.one(bad),
            _ => self.one(good),
        }
    }
}

/// A header text in one of many spellings, some valid and some not.
fn spelled_header(p: &mut Pick) -> String {
    let key = |p: &mut Pick, k: &str| -> String {
        match p.next(12) {
            0 => format!("\"{k}\""),
            1 => format!("'{}' '{}'", &k[..2], &k[2..]),
            2 => format!("u'{k}'"),
            3 => format!("('{k}')"),
            4 => format!("b'{k}'"),
            5 => format!("r'{k}'"),
            _ => format!("'{k}'"),
        }
    };
    let descr = p.mostly(
        &[
            "'<f8'",
            "'<i4'",
            "'|u1'",
            "\"<f4\"",
            "'\\x3cf8'",
            "r'<f8'",
            "u'<i2'",
            "'<' 'f8'",
            "'<f8' # c\n",
            "'>f8'",
            "('<f8')",
        ],
        &["b'<f8'", "f'<f8'", "['<f8']", "1.5", "None", "'<f8", "'<f8'x"],
    );
    let fortran = p.mostly(&["False", "True", "(False)", "True # x\n"], &["0", "1", "None", "false"]);
    let shape = p.mostly(
        &[
            "()",
            "(3,)",
            "(2, 3)",
            "(2,3,)",
            "((2), 3)",
            "(0x2, 0o3)",
            "(1_0,)",
            "(2L, 3L)",
            "(2 L,)",
            "( 2 , 3 )",
            "( # c\n 2,)",
            "(0, 3)",
            "(2, -0)",
            "(+2,)",
            "(2,\n 3)",
            "(0b11,)",
            "(00,)",
            "(\n2\n,\n)",
        ],
        &[
            "(-1,)", "(True,)", "(2.0,)", "[2, 3]", "2", "(--2,)", "(1__0,)", "(02,)", "(2, 3", "(2 3)", "(2,,)",
            "set()", "(2,)[0]",
        ],
    );
    let mut entries = vec![
        format!("{}: {descr}", key(p, "descr")),
        format!("{}: {fortran}", key(p, "fortran_order")),
        format!("{}: {shape}", key(p, "shape")),
    ];
    if p.next(6) == 0 {
        entries.insert(
            0,
            format!("'shape': {}", p.one(&["1.5", "{1: [2]}", "{[1]}", "(1, 2j)", "...", "-1+2j", "set()"])),
        );
    }
    if p.next(12) == 0 {
        entries.push(p.one(&["'extra': 1", "1: 2", "**x"]).to_owned());
    }
    for _ in 0..p.next(3) {
        let (a, b) = (p.next(entries.len()), p.next(entries.len()));
        entries.swap(a, b);
    }
    let sep = p.one(&[", ", ",", ",\n ", " , ", ",\t"]);
    let lead = p.mostly(&["", "", " ", "\n", "# c\n", "\t", "\\\n", " \n"], &["\n  ", "\x0c  ", "#c\n  "]);
    let trail = p.one(&["", ", ", ",", " "]);
    let after = p.mostly(&["", "", "  \n", " # end\n", "\n\n", "\\\n  ", "\n"], &["x", "\\\n", "\n  x"]);
    let mut text = format!("{lead}{{{}{trail}}}{after}", entries.join(sep));
    if p.next(12) == 0 {
        let at = p.next(text.len());
        if text.is_char_boundary(at) && text.is_char_boundary(at + 1) {
            text.replace_range(at..at + 1, p.one(&["", "(", ")", "'", ",", ":", "\0", "é", "#", " ", "\n"]));
        }
    }
    text
}

/// The `.npy` bytes of header `text` in format `version`, with data for
/// the largest shape the generator spells.
fn npy_file(text: &str, version: (u8, u8)) -> Vec<u8> {
    let mut b = b"\x93NUMPY".to_vec();
    b.extend_from_slice(&[version.0, version.1]);
    let body = match version.0 {
        3 => text.as_bytes().to_vec(),
        _ => text.chars().map(|c| if (c as u32) < 256 { c as u32 as u8 } else { b'?' }).collect(),
    };
    let prefix = if version.0 == 1 { 10 } else { 12 };
    let mut body = body;
    while (prefix + body.len()) % 64 != 0 {
        body.push(b' '); // numpy pads to 64 too; shmkit maps elements in place, so needs it
    }
    match version {
        (1, _) => b.extend_from_slice(&(body.len() as u16).to_le_bytes()),
        _ => b.extend_from_slice(&(body.len() as u32).to_le_bytes()),
    }
    b.extend_from_slice(&body);
    b.resize(b.len() + 8 * 64, 0);
    b
}

/// Opens `path` as whichever element type its header names: its shape,
/// or `None` for a dtype shmkit cannot hold (the header itself was read).
fn open_any(path: &std::path::Path) -> Result<Option<Vec<usize>>, Error> {
    use ndarray::IxDyn;
    type Open = fn(&std::path::Path) -> Result<Vec<usize>, Error>;
    let tries: [Open; 5] = [
        |p| SharedArray::<f64, IxDyn>::open_file(p).map(|a| a.shape().to_vec()),
        |p| SharedArray::<f32, IxDyn>::open_file(p).map(|a| a.shape().to_vec()),
        |p| SharedArray::<i32, IxDyn>::open_file(p).map(|a| a.shape().to_vec()),
        |p| SharedArray::<i16, IxDyn>::open_file(p).map(|a| a.shape().to_vec()),
        |p| SharedArray::<u8, IxDyn>::open_file(p).map(|a| a.shape().to_vec()),
    ];
    for open in tries {
        match open(path) {
            Err(Error::WrongDtype { .. }) => continue,
            other => return other.map(Some),
        }
    }
    Ok(None)
}

/// shmkit reads `.npy` headers exactly as numpy does: 4000 spellings
/// (and misspellings) of a header, each loaded by numpy (`np.load`) and
/// opened by shmkit, must be accepted or refused alike, with the same
/// shape and order when accepted.
#[test]
fn shmkit_accepts_exactly_the_headers_numpy_accepts() {
    let _w = common::Watchdog::new(std::time::Duration::from_secs(600));
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique("np-headers"));
    std::fs::create_dir_all(&dir).unwrap();
    // SHMKIT_HEADER_CASES and SHMKIT_HEADER_SEED run a longer or another stream.
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let mut p = Pick(env("SHMKIT_HEADER_SEED", 0x5eed));
    let mut cases = Vec::new();
    for i in 0..env("SHMKIT_HEADER_CASES", 4000) {
        let version = [(1, 0), (1, 0), (1, 0), (2, 0), (2, 0), (3, 0), (3, 0), (1, 1), (4, 0)][p.next(9)];
        let text = spelled_header(&mut p);
        let path = dir.join(format!("{i}.npy"));
        std::fs::write(&path, npy_file(&text, version)).unwrap();
        cases.push((path, text, version));
    }
    let script = format!(
        "import numpy as np, warnings, sys\n\
         warnings.simplefilter('ignore')\n\
         for i in range({}):\n\
         \x20   try:\n\
         \x20       a = np.load('{}/%d.npy' % i)\n\
         \x20       kind = 'structured' if a.dtype.names or a.dtype.subdtype else 'ok'\n\
         \x20       print(kind, a.dtype.str, list(a.shape), a.flags.f_contiguous and not a.flags.c_contiguous)\n\
         \x20   except Exception as e:\n\
         \x20       print('refused', type(e).__name__)\n",
        cases.len(),
        dir.display()
    );
    let numpy = run_python(&script);
    let mut agreed = (0, 0);
    let mut structured = 0;
    for ((path, text, version), np_line) in cases.iter().zip(numpy.lines()) {
        let ours = open_any(path);
        if np_line.starts_with("structured") {
            // numpy reads a descr like '<f,' as a structured type: shmkit
            // refuses those (documented), whatever the rest of the header.
            assert!(ours.is_err(), "shmkit accepted a structured dtype:\n{text}");
            structured += 1;
            continue;
        }
        let numpy_ok = np_line.starts_with("ok");
        assert_eq!(ours.is_ok(), numpy_ok, "numpy said {np_line:?}, shmkit {ours:?}, for version {version:?}:\n{text}");
        if let Ok(Some(our_shape)) = ours {
            let listed = np_line.split('[').nth(1).unwrap().split(']').next().unwrap();
            let shape: Vec<usize> =
                listed.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
            assert_eq!(our_shape, shape, "shapes differ for:\n{text}");
        }
        if numpy_ok {
            agreed.0 += 1
        } else {
            agreed.1 += 1
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    println!(
        "headers: numpy and shmkit agree on all {} ({} accepted, {} refused, {structured} structured dtypes shmkit refuses)",
        cases.len(),
        agreed.0,
        agreed.1
    );
    assert!(agreed.0 > 100 && agreed.1 > 100, "the generator should make plenty of both: {agreed:?}");
}

#[test]
fn numpy_reads_a_live_stream_segment_slots_first() {
    use shmkit::stream::{Policy, Publisher, Subscriber};
    let _w = common::Watchdog::new(std::time::Duration::from_secs(600));
    let name = unique("np-stream");
    let p = Publisher::<u16, Ix2>::create(&name, (3, 5), 4, Policy::Overwrite).unwrap();
    let sub = Subscriber::<u16, Ix2>::open(&name).unwrap();
    for i in 1..=6u16 {
        let mut loan = p.loan().unwrap();
        loan.fill(i);
        p.publish(loan).unwrap();
    }
    let newest = sub.latest().unwrap();
    assert_eq!(newest.seq(), 6);
    // numpy maps the slots as one array (the control block after them is
    // not its business); the newest sample is one of them, intact.
    let code = format!(
        "import numpy as np\n\
         a = np.load('/dev/shm/{name}', mmap_mode='r')\n\
         print(a.dtype.str, a.shape, sorted({{int(s.min()) for s in a if s.min() == s.max()}}))\n"
    );
    let out = run_python(&code);
    assert!(out.trim().starts_with("<u2 (4, 3, 5) ["), "{out}");
    assert!(out.contains('6'), "the newest sample, seen by numpy: {out}");
}
