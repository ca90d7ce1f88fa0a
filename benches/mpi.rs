//! `mpi_heat`, a global sum and a replicated table, each as shmkit node
//! segments and as plain message passing, in one run, over 1, 2 and 4 ranks
//! on 1 and 2 simulated nodes (feature `mpi`; needs OpenMPI).
//!
//! ```text
//! cargo bench --features mpi --bench mpi            # a few minutes on 2 cores
//! cargo bench --features mpi --bench mpi -- --quick
//! ```
//!
//! Each configuration runs both sides in alternating order, `REPS` (9) times;
//! the table shows medians. Writes `target/bench/mpi.md` and, unless
//! `--quick`, its section of `benches/README.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const REPS: usize = 9;

/// The examples under test, built in release first.
fn example(name: &str) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "shmkit", "--features", "mpi", "--example", name])
        .current_dir(shmkit_bench::workspace())
        .status()
        .expect("cargo");
    assert!(status.success(), "building example {name} failed");
    shmkit_bench::target_dir().join("release/examples").join(name)
}

/// Runs `exe args` on `ranks` ranks in nodes of `node_size`; its stdout.
fn mpirun(exe: &Path, ranks: usize, node_size: usize, args: &[String]) -> String {
    let out = Command::new("mpirun")
        .args(["-n", &ranks.to_string(), "--oversubscribe", "-x", &format!("SHMKIT_MPI_NODE_SIZE={node_size}")])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .arg(exe)
        .args(args)
        .output()
        .expect("mpirun (OpenMPI) is needed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{} failed: {}\n{text}", exe.display(), String::from_utf8_lossy(&out.stderr));
    text
}

/// The seconds a run printed after `label` (`... LABEL 0.123 s`).
fn seconds(text: &str, label: &str) -> f64 {
    let at = text.find(label).unwrap_or_else(|| panic!("no `{label}` in:\n{text}")) + label.len();
    text[at..].split_whitespace().next().and_then(|s| s.parse().ok()).expect("seconds")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds (after each of `labels`) of shmkit and of the
/// baseline, runs interleaved.
fn both(exe: &Path, ranks: usize, node_size: usize, args: &[String], labels: &[&str]) -> (Vec<f64>, Vec<f64>, String) {
    let (mut shm, mut base) = (vec![Vec::new(); labels.len()], vec![Vec::new(); labels.len()]);
    let mut checksum = String::new();
    for rep in 0..REPS {
        let mut baseline_args = args.to_vec();
        baseline_args.push("--baseline".into());
        let order = if rep % 2 == 0 { [false, true] } else { [true, false] };
        for is_base in order {
            let text = mpirun(exe, ranks, node_size, if is_base { &baseline_args } else { args });
            let sum = text.lines().find(|l| l.starts_with("checksum")).unwrap_or("").to_owned();
            assert!(checksum.is_empty() || sum == checksum, "checksums differ: {sum} vs {checksum}");
            checksum = sum;
            let side = if is_base { &mut base } else { &mut shm };
            for (times, label) in side.iter_mut().zip(labels) {
                times.push(seconds(&text, label));
            }
        }
    }
    (shm.into_iter().map(median).collect(), base.into_iter().map(median).collect(), checksum)
}

/// Median seconds of `REPS` runs of `mpi_heat --views` (the stencil
/// through views and `exchange_halos`, as before `Sweep`), measured right
/// after the two sides; each must print `checksum`.
fn views(exe: &Path, ranks: usize, node_size: usize, args: &[String], checksum: &str) -> f64 {
    let mut args = args.to_vec();
    args.push("--views".into());
    let times = (0..REPS).map(|_| {
        let text = mpirun(exe, ranks, node_size, &args);
        assert!(text.lines().any(|l| l == checksum), "--views printed another checksum:\n{text}");
        seconds(&text, "time ")
    });
    median(times.collect())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (size, steps, elements) = if quick { (256, 500, 1 << 22) } else { (512, 2000, 1 << 25) };
    let table_mib = if quick { 256 } else { 1024 };
    let heat = example("mpi_heat");
    let sum = example("mpi_sum");
    let configs = [(1, 1), (2, 1), (2, 2), (4, 1), (4, 2)];
    let mut md = String::new();
    writeln!(
        md,
        "| ranks | nodes | mpi_heat {size}² × {steps}: shmkit | message passing | shmkit through views + exchange_halos (before `Sweep`) | mpi_heat's steps alone (no setup, no gather): shmkit | message passing | global sum of {elements} u64: shmkit | message passing | setup (allocate, fill): shmkit | message passing | page floor in this shape: shared / private |"
    )
    .unwrap();
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|").unwrap();
    let mut checksums = Vec::new();
    let mut one_process = (0.0, 0.0); // the 1/1 row's page floor, in seconds
    for (ranks, nodes) in configs {
        let node_size = ranks / nodes;
        eprintln!("mpi bench: {ranks} ranks on {nodes} nodes ...");
        let heat_args = vec!["--size".into(), size.to_string(), "--steps".into(), steps.to_string()];
        let (hs, hb, checksum) = both(&heat, ranks, node_size, &heat_args, &["time ", "of which steps "]);
        checksums.push(checksum);
        let hv = views(&heat, ranks, node_size, &heat_args, &checksums[0]);
        let sum_args = ["--elements".into(), elements.to_string()];
        let (ss, sb, _) = both(&sum, ranks, node_size, &sum_args, &["global sum ", "setup (allocate and fill) "]);
        let (private, shared) = page_floor_at(elements * 8, ranks, nodes);
        if ranks == 1 {
            one_process = (private, shared);
        }
        writeln!(
            md,
            "| {ranks} | {nodes} | {:.3} s | {:.3} s | {:.3} s | {:.3} s | {:.3} s | {:.2} ms | {:.2} ms | {:.3} s | {:.3} s | {:.2}× |",
            hs[0],
            hb[0],
            hv,
            hs[1],
            hb[1],
            ss[0] * 1e3,
            sb[0] * 1e3,
            ss[1],
            sb[1],
            shared / private
        )
        .unwrap();
    }
    assert!(checksums.windows(2).all(|w| w[0] == w[1]), "checksums differ between configurations: {checksums:?}");
    let (private, shared) = one_process;
    writeln!(
        md,
        "\nThe page floor, without shmkit or MPI (one process, same run, median of {REPS}): filling {} MiB of private memory takes {:.1} ms, of a plain shared-memory file (`memfd_create`, `ftruncate`, `MADV_POPULATE_WRITE`, then the same fill) {:.1} ms: **{:.2}×**, what any shared segment's setup pays over private pages; the last column is the same in each configuration's shape.",
        (elements * 8) >> 20,
        private * 1e3,
        shared * 1e3,
        shared / private
    )
    .unwrap();
    let mib = |text: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with("replicated")).expect("a memory line");
        line.split(": ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).expect("MiB")
    };
    let table_args = |base: bool| {
        let mut a = vec!["--elements".to_string(), "1024".into(), "--replicated-mib".into(), table_mib.to_string()];
        if base {
            a.push("--baseline".into());
        }
        a
    };
    let (shm_mib, base_mib) =
        (mib(&mpirun(&sum, 4, 2, &table_args(false))), mib(&mpirun(&sum, 4, 2, &table_args(true))));
    writeln!(md, "\nA replicated read-only table of {table_mib} MiB on 4 ranks, 2 per node: {shm_mib:.0} MiB per node with shmkit (one copy per node), {base_mib:.0} MiB per node as plain message passing (one copy per rank).").unwrap();
    writeln!(
        md,
        "\nEvery configuration and every side (the views column too) printed the same heat checksum: `{}`.",
        checksums[0]
    )
    .unwrap();
    println!("{md}");
    let dir = shmkit_bench::target_dir().join("bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mpi.md"), &md).unwrap();
    if !quick {
        let header = format!("Measured {} on {}.\n\n", shmkit_bench::today(), shmkit_bench::machine());
        shmkit_bench::update_readme("mpi", &(header + &md)).unwrap();
    }
}

/// The page floor in a configuration's shape: `ranks` processes at once,
/// each filling its share of `bytes`, in private memory or in its part of
/// its node's one shared file (sized, each process reserving and mapping
/// its part, as node segments are); seconds until all have finished, the
/// median of `REPS` alternating runs of each.
fn page_floor_at(bytes: usize, ranks: usize, nodes: usize) -> (f64, f64) {
    let share = bytes / ranks / 4096 * 4096; // mmap offsets are whole pages
    let run = |shared: bool| {
        let per_node = ranks / nodes;
        // SAFETY: fresh memfds sized here; each child maps its node's file,
        // touches only its own share of it, and leaves with `_exit` (no
        // destructor or atexit handler of this process runs twice); this
        // bench has no other thread, so the children inherit no held lock.
        unsafe {
            let fds: Vec<i32> = (0..nodes)
                .map(|_| {
                    let fd = libc::memfd_create(c"page-floor".as_ptr(), libc::MFD_CLOEXEC);
                    assert!(fd >= 0 && libc::ftruncate(fd, (share * per_node) as libc::off_t) == 0, "memfd");
                    fd
                })
                .collect();
            let t = std::time::Instant::now();
            let kids: Vec<i32> = (0..ranks)
                .map(|k| {
                    let pid = libc::fork();
                    assert!(pid >= 0, "fork");
                    if pid == 0 {
                        // A panic here must not unwind into the bench's own code.
                        let file = shared.then(|| (fds[k / per_node], (k % per_node) * share));
                        let filled = std::panic::catch_unwind(|| fill_share(file, share)).is_ok();
                        libc::_exit(if filled { 0 } else { 1 });
                    }
                    pid
                })
                .collect();
            for pid in kids {
                let mut status = 0;
                assert!(libc::waitpid(pid, &mut status, 0) == pid && status == 0, "a page-floor child failed");
            }
            let took = t.elapsed().as_secs_f64();
            for fd in fds {
                libc::close(fd);
            }
            took
        }
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..REPS {
        a.push(run(false));
        b.push(run(true));
    }
    (median(a), median(b))
}

/// A page-floor child's work: `bytes` of private memory filled, or of the
/// shared file `fd` from `offset`, reserved and mapped first.
///
/// # Safety
/// Only in a child of `page_floor_at`, which `_exit`s after it.
unsafe fn fill_share(file: Option<(i32, usize)>, bytes: usize) {
    let fill = |p: &mut [u64]| p.iter_mut().enumerate().for_each(|(i, x)| *x = i as u64);
    match file {
        None => {
            let v: Vec<u64> = (0..bytes as u64 / 8).collect();
            std::hint::black_box(&v);
        }
        // SAFETY: `offset` is a whole number of page-sized shares, within
        // the file `page_floor_at` sized for this node;
        // the mapping is checked and only this process's share is touched.
        Some((fd, offset)) => unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            );
            assert!(p != libc::MAP_FAILED, "mmap");
            libc::madvise(p, bytes, libc::MADV_POPULATE_WRITE);
            fill(std::slice::from_raw_parts_mut(p.cast::<u64>(), bytes / 8));
        },
    }
}
