//! numpy on the other side: it maps shmkit segments zero-copy, and shmkit
//! opens what numpy writes. Needs python3; installs numpy into a venv
//! under `target/` when the system python lacks it (never skips).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{unique, ShmFile};
use ndarray::{Array2, Ix1, Ix2};
use shmkit::{Error, SharedArray};

/// A python3 that can `import numpy`, setting up `target/tmp/numpy-venv`
/// once if needed. A file lock keeps concurrent test binaries from
/// building the venv twice.
fn python() -> PathBuf {
    let has_numpy = |py: &PathBuf| {
        Command::new(py).args(["-c", "import numpy"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    let system = PathBuf::from("python3");
    if has_numpy(&system) {
        return system;
    }
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let lock = std::fs::File::create(tmp.join("numpy-venv.lock")).expect("create lock file");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("flock");
    let venv = tmp.join("numpy-venv");
    let py = venv.join("bin/python");
    if !has_numpy(&py) {
        eprintln!("numpy missing: installing it into {}", venv.display());
        let ok = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().expect("python3 is required");
        assert!(ok.success(), "python3 -m venv failed");
        let pip = Command::new(&py).args(["-m", "pip", "install", "--quiet", "numpy"]).status().expect("run pip");
        assert!(pip.success(), "pip install numpy failed");
    }
    py
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
    assert_eq!(a.view(), data.mapv(|x| 2.0 * x));
}

#[test]
fn numpy_reads_a_shmkit_segment_without_mmap_too() {
    let name = unique("np-load");
    let _a = SharedArray::create_from(&name, &ndarray::array![1i16, -2, 3]).unwrap();
    let out = run_python(&format!("import numpy as np\nprint(np.load('/dev/shm/{name}').tolist())"));
    assert_eq!(out.trim(), "[1, -2, 3]");
}

#[test]
fn npy_written_by_numpy_into_dev_shm_opens_as_shared_array() {
    let name = format!("{}.npy", unique("np-save"));
    let _cleanup = ShmFile(name.clone());
    run_python(&format!(
        "import numpy as np\n\
         np.save('/dev/shm/{name}', np.arange(12, dtype='<i4').reshape(3, 4))"
    ));
    let mut a = SharedArray::<i32, Ix2>::open(&name).unwrap();
    assert!(!a.is_owner());
    assert_eq!(a.view(), Array2::from_shape_fn((3, 4), |(i, j)| (4 * i + j) as i32));
    assert!(a.info().unwrap().creator.is_none(), "numpy's file has no shmkit trailer");
    a.rows_mut(0..1).unwrap().fill(-7);
    let out = run_python(&format!("import numpy as np\nprint(np.load('/dev/shm/{name}')[0].tolist())"));
    assert_eq!(out.trim(), "[-7, -7, -7, -7]");
    assert!(matches!(SharedArray::<f64, Ix2>::open(&name), Err(Error::WrongDtype { .. })));
}

#[test]
fn fortran_ordered_npy_from_numpy_has_the_right_view() {
    let name = format!("{}.npy", unique("np-fortran"));
    let _cleanup = ShmFile(name.clone());
    run_python(&format!(
        "import numpy as np\n\
         np.save('/dev/shm/{name}', np.asfortranarray(np.arange(6, dtype='<f4').reshape(2, 3)))"
    ));
    let a = SharedArray::<f32, Ix2>::open(&name).unwrap();
    assert_eq!(a.view(), ndarray::array![[0.0f32, 1.0, 2.0], [3.0, 4.0, 5.0]]);
    assert_eq!(a.as_slice(), &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0], "memory order is column-major");
    let one_byte = format!("{}.npy", unique("np-u1"));
    let _cleanup2 = ShmFile(one_byte.clone());
    run_python(&format!("import numpy as np\nnp.save('/dev/shm/{one_byte}', np.array([1, 2, 250], dtype=np.uint8))"));
    assert_eq!(SharedArray::<u8, Ix1>::open(&one_byte).unwrap().as_slice(), &[1, 2, 250]);
}
