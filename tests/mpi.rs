//! Distributed and replicated arrays under a real `mpirun` (feature `mpi`).
//!
//! Run by `cargo test --features mpi --test mpi`: started without MPI, this
//! binary launches itself with `mpirun -n 4 --oversubscribe`, as two
//! simulated nodes of two ranks (`SHMKIT_MPI_NODE_SIZE=2`) and as four
//! nodes of one (so that a middle node swaps halos both ways), checks that
//! every rank finished its checks, and then runs the fault cases: a node
//! leader or another rank SIGKILLed mid-run makes `mpirun` end the job
//! within 15 s, and `shmkit gc` then leaves nothing of the job in
//! `/dev/shm`. Last, `mpi_heat` and `heat_diffusion` must print the same
//! checksum, and `mpi_sum` must match its closed form. Needs OpenMPI:
//! plain `cargo test` runs this through `tests/mpi_job.rs`, which installs
//! it when missing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayD, IxDyn};
use shmkit::mpi::rsmpi::traits::*;

use shmkit::mpi::{Cluster, DistArray, MpiError, ReplicatedArray};

const RANKS: usize = 4;

fn main() {
    match std::env::var("OMPI_COMM_WORLD_SIZE") {
        Ok(_) => rank(),
        Err(_) => launcher(),
    }
}

/// `mpirun -n 4 ... EXE ARGS` with `node_size` ranks per simulated node.
fn mpirun(node_size: usize, exe: &std::path::Path, args: &[&str]) -> Command {
    mpirun_n(RANKS, node_size, exe, args)
}

/// `mpirun -n RANKS ... EXE ARGS` with `node_size` ranks per simulated
/// node (the last node takes what is left).
fn mpirun_n(ranks: usize, node_size: usize, exe: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["-n", &ranks.to_string(), "--oversubscribe", "-x", &format!("SHMKIT_MPI_NODE_SIZE={node_size}")]);
    cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    cmd.arg(exe).args(args);
    cmd
}

/// Runs `cmd` to the end and returns its output; kills it (and fails) if
/// it outlives `limit`: a job that hangs fails the test, never hangs it.
fn output_within(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let child = cmd.stdout(Stdio::piped()).spawn().expect("mpirun (OpenMPI) is needed: apt-get install openmpi-bin");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait for mpirun"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("mpirun still running after {limit:?}: killed");
        }
    }
}

fn this_test() -> std::path::PathBuf {
    std::env::current_exe().expect("current_exe")
}

fn shm_entries(prefix: &str) -> Vec<String> {
    let entries = std::fs::read_dir("/dev/shm").expect("/dev/shm").flatten();
    entries.map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(prefix)).collect()
}

/// Runs the checks under mpirun, then the fault cases.
fn launcher() {
    let before = shm_entries("shmkit-mpi-");
    for node_size in [2, 1] {
        let start = Instant::now();
        let out =
            output_within(mpirun(node_size, &this_test(), &[]).stderr(Stdio::inherit()), Duration::from_secs(120));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "the MPI checks failed under mpirun: {}\n{stdout}", out.status);
        for r in 0..RANKS {
            assert!(stdout.contains(&format!("rank {r}: all checks passed")), "rank {r} did not finish:\n{stdout}");
        }
        let nodes = RANKS / node_size;
        println!("mpi: {RANKS} ranks on {nodes} simulated nodes: every check passed in {:?}", start.elapsed());
        let left: Vec<_> = shm_entries("shmkit-mpi-").into_iter().filter(|n| !before.contains(n)).collect();
        assert!(left.is_empty(), "a normal end left segments: {left:?}");
    }
    for (victim, what) in [(2, "a node leader"), (3, "a rank that is not a leader")] {
        kill_case(victim, what, None);
    }
    // Killed inside the collective operations, where others wait on it.
    let inside = [
        (2, "a node leader inside create, its segment made", "mpi-created"),
        (3, "a rank inside create, opening its node's segment", "mpi-opening"),
        (3, "a rank inside create, reserving its rows", "mpi-reserving"),
        (2, "a node leader inside a broadcast", "mpi-broadcast"),
        (0, "the broadcasting root inside a broadcast", "mpi-broadcast"),
        (2, "a node leader inside a halo exchange", "mpi-halo"),
        (3, "a rank starting a sweep, its rows claimed", "mpi-sweep-claimed"),
        (2, "a node's first rank inside a sweep's edge swap", "mpi-sweep"),
        (3, "a rank finishing a sweep, its claims released", "mpi-sweep-finish"),
    ];
    for (victim, what, point) in inside {
        kill_case(victim, what, Some(point));
    }
    a_node_size_bad_on_some_ranks_fails_every_rank();
    same_checksum_as_heat_diffusion();
    mpi_sum_matches_its_closed_form();
}

/// `mpi_sum` on 2 nodes, with and without a replicated table, and as
/// message passing: each checks its sum against n(n-1)/2 on every rank.
fn mpi_sum_matches_its_closed_form() {
    let exe = example("mpi_sum");
    for extra in [&[][..], &["--replicated-mib", "4"], &["--baseline"]] {
        let args = [&["--elements", "1048576"][..], extra].concat();
        let out = output_within(&mut mpirun(2, &exe, &args), Duration::from_secs(120));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "mpi_sum {args:?}: {}\n{stdout}", out.status);
        assert!(stdout.contains("matches the closed form"), "mpi_sum {args:?}:\n{stdout}");
    }
    println!("mpi: mpi_sum matches n(n-1)/2 on 2 nodes, with a replicated table, and as message passing");
}

/// Rank `victim` SIGKILLs itself while its node's segments exist: between
/// operations, or at fault point `point` inside one.
fn kill_case(victim: usize, what: &str, point: Option<&str>) {
    let job_file = std::env::temp_dir().join(format!("shmkit-mpi-job-{}-{victim}", std::process::id()));
    let args = ["--kill", &victim.to_string(), job_file.to_str().unwrap(), point.unwrap_or("between")];
    let mut job = mpirun(2, &this_test(), &args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !job_file.exists() {
        if Instant::now() > deadline {
            let _ = job.kill();
            panic!("the job never reached its kill");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = Instant::now(); // the victim writes the file, then kills itself
    let job_id = std::fs::read_to_string(&job_file).unwrap();
    std::fs::remove_file(&job_file).unwrap();
    let prefix = format!("shmkit-mpi-{}", job_id.trim());
    let status = loop {
        if let Some(s) = job.try_wait().unwrap() {
            break s;
        }
        if killed.elapsed() > Duration::from_secs(15) {
            let _ = job.kill();
            panic!("mpirun still running 15 s after {what} was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "mpirun should report the killed rank");
    let missed = job_file.with_extension("missed");
    let never_fired = std::fs::remove_file(&missed).is_ok();
    let took = killed.elapsed();
    let left = shm_entries(&prefix);
    if victim % 2 == 0 && point.is_none() {
        assert!(!left.is_empty(), "a killed leader cannot remove its segments: the kill landed too late");
    }
    let removed = shmkit::admin::Gc::new().prefix(&prefix).run().unwrap();
    assert!(shm_entries(&prefix).is_empty(), "gc left {:?} (it removed {removed:?})", shm_entries(&prefix));
    assert!(!never_fired, "{what}: the fault point {point:?} never fired");
    println!(
        "mpi: {what} SIGKILLed mid-run: mpirun ended {took:?} later; {} segments were left, gc removed them",
        left.len()
    );
}

/// `target/PROFILE/examples/NAME`, built with the `mpi` feature.
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(std::path::Path::parent).expect("target/PROFILE");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", "shmkit", "--features", "mpi", "--example", name]);
    if profile.ends_with("release") {
        cmd.arg("--release");
    }
    assert!(cmd.status().is_ok_and(|s| s.success()), "could not build example {name}");
    profile.join("examples").join(name)
}

/// `mpi_heat` (on 2 nodes, and as plain message passing) and
/// `heat_diffusion` (helpers on one machine) print the same last line.
fn same_checksum_as_heat_diffusion() {
    let args = ["--size", "96", "--steps", "150"];
    let last = |out: std::process::Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_owned()
    };
    let limit = Duration::from_secs(120);
    let single = last(output_within(Command::new(example("heat_diffusion")).args(args), limit));
    assert!(single.starts_with("checksum "), "{single}");
    let mpi_heat = example("mpi_heat");
    for node_size in [2, 1] {
        let across = last(output_within(&mut mpirun(node_size, &mpi_heat, &args), limit));
        assert_eq!(across, single, "mpi_heat on {} nodes", RANKS / node_size);
    }
    // Nodes of different sizes: 2 ranks and 1 (a one-rank node swaps both
    // ways next to one whose boundary ranks swap once each).
    let uneven = last(output_within(&mut mpirun_n(3, 2, &mpi_heat, &args), limit));
    assert_eq!(uneven, single, "mpi_heat on nodes of 2 ranks and 1");
    let views = last(output_within(&mut mpirun(2, &mpi_heat, &[&args[..], &["--views"]].concat()), limit));
    assert_eq!(views, single, "mpi_heat through views and exchange_halos");
    let messages = last(output_within(&mut mpirun(2, &mpi_heat, &[&args[..], &["--baseline"]].concat()), limit));
    assert_eq!(messages, single, "mpi_heat as message passing");
    println!("mpi: heat_diffusion, mpi_heat on 2 and 4 nodes, on nodes of 2 ranks and 1, through views, and as message passing all print `{single}`");
}

/// `SHMKIT_MPI_NODE_SIZE` good on two ranks and bad on two (mpirun's
/// MPMD form): every rank gets an error from `Cluster::init` and the job
/// ends, instead of two ranks waiting for the others forever.
fn a_node_size_bad_on_some_ranks_fails_every_rank() {
    let exe = this_test().to_string_lossy().into_owned();
    let apps = ["2", "two"].map(|size| {
        let var = format!("SHMKIT_MPI_NODE_SIZE={size}");
        ["-n", "2", "--oversubscribe", "-x", &var, &exe, "--node-size-case"].map(String::from).join(" ")
    });
    let mut cmd = Command::new("mpirun");
    cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    cmd.args(apps.join(" : ").split(' '));
    let out = output_within(cmd.stderr(Stdio::inherit()), Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("is not a positive whole number").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("differs between ranks").count(), 2, "{stdout}");
    println!("mpi: SHMKIT_MPI_NODE_SIZE bad on 2 of 4 ranks: every rank got an error, the job ended");
}

/// Under mpirun: every check, on every rank; or the fault case's job.
fn rank() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--node-size-case") {
        match Cluster::init() {
            Ok(_) => println!("rank: Cluster::init succeeded"),
            Err(e) => println!("rank: {e}"),
        }
        return;
    }
    let (_universe, cluster) = Cluster::init().expect("MPI initialises");
    if let Some(i) = args.iter().position(|a| a == "--kill") {
        return kill_one(&cluster, args[i + 1].parse().unwrap(), &args[i + 2], &args[i + 3]);
    }
    topology(&cluster);
    distributed(&cluster);
    halos(&cluster);
    sweeps(&cluster);
    sweep_misuse(&cluster);
    replicated(&cluster);
    misuse(&cluster);
    cluster.world().barrier();
    let prefix = format!("shmkit-mpi-{:016x}-", cluster.job_id());
    assert!(shm_entries(&prefix).is_empty(), "rank {}: left {:?}", cluster.world_rank(), shm_entries(&prefix));
    println!("rank {}: all checks passed", cluster.world_rank());
}

fn topology(c: &Cluster) {
    let r = c.world_rank();
    let m: usize = std::env::var("SHMKIT_MPI_NODE_SIZE").unwrap().parse().unwrap();
    assert_eq!((c.world_size(), c.nodes(), c.node_size()), (RANKS, RANKS / m, m));
    assert_eq!((c.node_index(), c.node_rank(), c.is_leader()), (r / m, r % m, r % m == 0));
    let mut ids = vec![0u64; RANKS];
    c.world().all_gather_into(&c.job_id(), &mut ids[..]);
    assert!(ids.iter().all(|&id| id == c.job_id()), "one job id for all: {ids:?}");
}

/// Global row `g`, column `j` of the test arrays.
fn value(g: usize, j: usize, row_len: usize) -> f64 {
    (g * row_len + j) as f64
}

fn distributed(c: &Cluster) {
    let (rows, cols) = (11, 3); // 11 rows: blocks of unequal size
    let mut a = DistArray::<f64>::create(c, "dist", &[rows, cols], 0).unwrap();
    let mine = a.rank_rows();
    for (k, mut row) in a.my_rows_mut().unwrap().rows_mut().into_iter().enumerate() {
        row.iter_mut().enumerate().for_each(|(j, x)| *x = value(mine.start + k, j, cols));
    }
    // One segment per node, shared by its ranks: not one per rank.
    c.world().barrier();
    let prefix = format!("shmkit-mpi-{:016x}-", c.job_id());
    assert_eq!(shm_entries(&prefix).len(), c.nodes(), "{:?}", shm_entries(&prefix));
    let n = (rows * cols) as f64;
    assert_eq!(a.sum().unwrap(), n * (n - 1.0) / 2.0);
    assert_eq!((a.min().unwrap(), a.max().unwrap()), (Some(0.0), Some(n - 1.0)));
    let count = a.reduce(|v| Some(v.len() as u64), |x, y| x + y).unwrap();
    assert_eq!(count, Some((rows * cols) as u64));
    let order = a.reduce(|_| Some(c.world_rank() as u64 + 1), |x, y| x * 10 + y).unwrap();
    assert_eq!(order, Some(1234), "partial results are combined in row order");
    let expect = Array2::from_shape_fn((rows, cols), |(g, j)| value(g, j, cols));
    match a.gather().unwrap() {
        Some(all) => assert_eq!((c.world_rank(), all), (0, expect.clone())),
        None => assert_ne!(c.world_rank(), 0),
    }
    let negated = expect.mapv(|x| -x);
    a.scatter((c.world_rank() == 0).then(|| negated.view())).unwrap();
    let got = a.my_rows().unwrap().to_owned();
    assert_eq!(got, negated.slice(ndarray::s![mine.clone(), ..]), "rank {} after scatter", c.world_rank());
}

fn halos(c: &Cluster) {
    let (rows, cols, h) = (12, 4, 2);
    let mut a = DistArray::<f64>::create(c, "halo", &[rows, cols], h).unwrap();
    let mine = a.rank_rows();
    for (k, mut row) in a.my_rows_mut().unwrap().rows_mut().into_iter().enumerate() {
        row.iter_mut().enumerate().for_each(|(j, x)| *x = value(mine.start + k, j, cols));
    }
    a.exchange_halos().unwrap();
    let block = a.node_rows();
    let view = a.node_view().unwrap();
    let first = c.node_index() == 0;
    let last = c.node_index() + 1 == c.nodes();
    for g in block.start.saturating_sub(h)..(block.end + h).min(rows) {
        let is_halo = !block.contains(&g);
        if is_halo && ((g < block.start && first) || (g >= block.end && last)) {
            continue;
        }
        let row = view.row(a.local_row(g).expect("a row this node holds"));
        let want: Vec<f64> = (0..cols).map(|j| value(g, j, cols)).collect();
        assert_eq!(row.to_vec(), want, "node {} global row {g} (halo: {is_halo})", c.node_index());
    }
}

/// The stencil `next[g] = sum of cur[g-h..=g+h]` (rows past the edges
/// count as zeros), `steps` times, on one process: the reference.
fn serial_sweep(mut cur: Array2<u64>, h: usize, steps: usize) -> Array2<u64> {
    let rows = cur.nrows();
    for _ in 0..steps {
        let mut next = Array2::<u64>::zeros(cur.dim());
        for g in 0..rows {
            for d in g.saturating_sub(h)..(g + h + 1).min(rows) {
                let add = cur.row(d).to_owned();
                next.row_mut(g).zip_mut_with(&add, |x, y| *x = x.wrapping_add(*y));
            }
        }
        cur = next;
    }
    cur
}

/// Sweeps give what the serial stencil gives, whether the node's first
/// and last rank hold the edge rows (they send at once) or not (a node
/// barrier first), on 2 and 4 nodes, with halos of 1 to 5 rows.
fn sweeps(c: &Cluster) {
    let mut cases = vec![(12, 3, 1, 7), (12, 3, 2, 4), (13, 2, 3, 5), (4, 2, 1, 3)];
    if c.nodes() == 2 {
        cases.push((16, 2, 5, 3)); // 4 rows per rank, 8 per node: edges span two ranks
        cases.push((3, 3, 1, 4)); // the second node's last rank holds no row
    }
    for (rows, cols, h, steps) in cases {
        let start = Array2::from_shape_fn((rows, cols), |(g, j)| (g * cols + j + 1) as u64);
        let tag = format!("sweep-{rows}-{h}");
        let mut a = DistArray::<u64>::create(c, &format!("{tag}-a"), &[rows, cols], h).unwrap();
        let mut b = DistArray::<u64>::create(c, &format!("{tag}-b"), &[rows, cols], h).unwrap();
        let mine = a.rank_rows();
        a.my_rows_mut().unwrap().assign(&start.slice(ndarray::s![mine.clone(), ..]));
        let mut sweep = a.sweep(&mut b).unwrap();
        for _ in 0..steps {
            sweep.step(|mut s| {
                for (i, mut out) in s.next.outer_iter_mut().enumerate() {
                    let l = s.at + i;
                    out.fill(0);
                    for d in l - h..=l + h {
                        out.zip_mut_with(&s.current.row(d), |x, y| *x = x.wrapping_add(*y));
                    }
                }
            });
        }
        assert_eq!(sweep.steps(), steps);
        let latest = sweep.finish();
        let want = serial_sweep(start, h, steps);
        // Views work again once every rank has finished: the claims are gone.
        let got = latest.my_rows().unwrap().to_owned();
        assert_eq!(got, want.slice(ndarray::s![mine, ..]), "rank {}: {rows} rows, halo {h}", c.world_rank());
        if let Some(all) = latest.gather().unwrap() {
            assert_eq!(all, want, "{rows} rows, halo {h}, {steps} steps");
        }
    }
}

/// A sweep that cannot start fails on every rank together; while one
/// runs, no other view of its arrays can be taken, anywhere.
fn sweep_misuse(c: &Cluster) {
    let mut a = DistArray::<f64>::create(c, "sw-a", &[8, 2], 1).unwrap();
    let mut wide = DistArray::<f64>::create(c, "sw-wide", &[8, 3], 1).unwrap();
    let e = a.sweep(&mut wide).map(drop).unwrap_err();
    assert!(
        matches!(&e, MpiError::Segment { source: shmkit::Error::InvalidArgument(m), .. } if m.contains("one shape")),
        "{e}"
    );
    let mut b = DistArray::<f64>::create(c, "sw-b", &[8, 2], 1).unwrap();
    // Another handle's view of rank 1's rows, on rank 1: its claim is
    // refused, and every rank gets an error.
    let other = shmkit::SharedArray::<f64, ndarray::Ix2>::open(&c.segment_name("sw-b")).unwrap();
    let own = b.rank_rows();
    let own = b.local_row(own.start).unwrap()..b.local_row(own.end - 1).unwrap() + 1;
    let held = (c.world_rank() == 1).then(|| other.rows(own).unwrap());
    let e = a.sweep(&mut b).map(drop).unwrap_err();
    match c.world_rank() {
        1 => assert!(matches!(&e, MpiError::Segment { source: shmkit::Error::Busy { .. }, .. }), "{e}"),
        _ => assert!(matches!(e, MpiError::OtherNode), "{e}"),
    }
    drop(held);
    // Ranks that sweep the arrays in different orders would read what the
    // others write: refused on every rank.
    let e = match c.world_rank() {
        1 => b.sweep(&mut a).map(drop).unwrap_err(),
        _ => a.sweep(&mut b).map(drop).unwrap_err(),
    };
    assert!(matches!(&e, MpiError::Invalid(m) if m.contains("same two arrays")), "{e}");
    let mut sweep = a.sweep(&mut b).expect("usable once the view is gone");
    sweep.step(|_| {
        // Every byte of both node blocks is claimed by some rank of the sweep.
        assert!(matches!(other.view(), Err(shmkit::Error::Busy { .. })), "a view during a sweep");
        assert!(matches!(other.rows(0..1), Err(shmkit::Error::Busy { .. })), "the top halo during a sweep");
    });
    sweep.finish();
    other.view().expect("free after finish");
}

fn replicated(c: &Cluster) {
    let shape = [3, 5];
    let data = ArrayD::from_shape_fn(IxDyn(&shape), |i| (i[0] * 10 + i[1]) as u32);
    let r = ReplicatedArray::<u32>::broadcast(c, "table", &shape, (c.world_rank() == 0).then(|| data.view())).unwrap();
    assert_eq!(*r.view().unwrap(), data);
    assert!(r.name().contains(&format!("-n{}-", c.node_index())), "{}", r.name());
    c.world().barrier();
    let copies = shm_entries(&format!("shmkit-mpi-{:016x}-", c.job_id())).into_iter().filter(|n| n.ends_with("-table"));
    assert_eq!(copies.count(), c.nodes(), "one copy per node");
    let node = c.node_index() as u64;
    let w = ReplicatedArray::<u64>::create_with(c, "computed", &[4], |mut v| v.fill(node * 100)).unwrap();
    assert!(w.view().unwrap().iter().all(|&x| x == node * 100));
}

/// Misuse is an error on every rank together, never a hang or a crash.
fn misuse(c: &Cluster) {
    let too_thin = DistArray::<f64>::create(c, "thin", &[3, 2], 2);
    assert!(matches!(too_thin, Err(MpiError::Invalid(_))), "halo deeper than a node's rows");
    // Shapes whose size overflows are refused as SharedArray refuses them,
    // on every rank, before any segment is made (they wrapped around).
    for shape in [&[2, 3, 6_148_914_691_236_517_206][..], &[4, 1 << 32, 1 << 32], &[1, usize::MAX]] {
        let e = DistArray::<f64>::create(c, "huge", shape, 0).map(drop).unwrap_err();
        assert!(matches!(&e, MpiError::Segment { source: shmkit::Error::SizeOverflow { .. }, .. }), "{shape:?}: {e}");
    }
    // More than /dev/shm holds: each rank's rows are refused before any
    // page is taken, on every rank.
    let total = rustix::fs::statvfs("/dev/shm").map(|s| s.f_blocks * s.f_frsize).unwrap() as usize;
    assert!(total > 0, "/dev/shm has no size limit here: this check needs one");
    let e = DistArray::<u64>::create(c, "too-big", &[total / 8 * 2 * RANKS], 0).map(drop).unwrap_err();
    assert!(matches!(&e, MpiError::Segment { source: shmkit::Error::NoSpace { .. }, .. }), "{e}");
    let e = DistArray::<u8>::create(c, "halo-huge", &[8, 2], usize::MAX / 2).map(drop).unwrap_err();
    assert!(matches!(e, MpiError::Segment { .. } | MpiError::Invalid(_)), "{e}");
    // A shape that differs between ranks is an error on every rank, not a hang.
    let rows = if c.world_rank() == 1 { 9 } else { 8 };
    let e = DistArray::<f64>::create(c, "lopsided", &[rows, 2], 0).map(drop).unwrap_err();
    assert!(matches!(&e, MpiError::Invalid(m) if m.contains("differs between ranks")), "{e}");
    let e = ReplicatedArray::<u8>::create_with(c, "lopsided-r", &[rows], |_| {}).map(drop).unwrap_err();
    assert!(matches!(&e, MpiError::Invalid(_)), "{e}");
    let mut a = DistArray::<f64>::create(c, "badscatter", &[8, 2], 0).unwrap();
    let wrong = Array2::<f64>::zeros((7, 2));
    let e = a.scatter((c.world_rank() == 0).then(|| wrong.view())).unwrap_err();
    match c.world_rank() {
        0 => assert!(matches!(e, MpiError::Segment { .. }), "{e}"),
        _ => assert!(matches!(e, MpiError::OtherNode), "{e}"),
    }
    let taken = DistArray::<f64>::create(c, "dist-twice", &[4], 0).unwrap();
    let again = DistArray::<f64>::create(c, "dist-twice", &[4], 0);
    assert!(again.is_err(), "a tag in use is refused on every rank");
    drop(taken);
    let ones = Array2::<f64>::ones((8, 2));
    a.scatter((c.world_rank() == 0).then(|| ones.view())).expect("usable after a refused call");
    assert_eq!(a.sum().unwrap(), 16.0);
    integer_sums(c);
}

/// Integer sums are exact (past 2^53, where an f64 sum rounds) and an
/// overflow is an error on every rank, as `Pool::sum`.
fn integer_sums(c: &Cluster) {
    let mut a = DistArray::<u64>::create(c, "exact", &[8], 0).unwrap();
    let big = (1u64 << 53) + 1;
    let mine = a.rank_rows();
    a.my_rows_mut().unwrap().iter_mut().zip(mine.clone()).for_each(|(x, g)| *x = if g == 0 { big } else { 1 });
    assert_eq!(a.sum().unwrap(), big + 7);
    a.my_rows_mut().unwrap().fill(u64::MAX / 4);
    let e = a.sum().unwrap_err();
    assert!(matches!(e, MpiError::Overflow { dtype: "<u8" }), "{e}");
    let mut i = DistArray::<i8>::create(c, "wide", &[8], 0).unwrap();
    i.my_rows_mut().unwrap().fill(-100);
    assert_eq!(i.sum().unwrap(), -800, "summed wider than i8, as numpy does");
}

/// The fault case: rank `victim` is SIGKILLed while its node's segments
/// exist, between operations (`point` "between"; the others then wait in a
/// barrier that never completes) or at fault point `point` inside create,
/// broadcast or a halo exchange, where the others wait on it; mpirun ends
/// the job either way.
fn kill_one(c: &Cluster, victim: usize, job_file: &str, point: &str) {
    if c.world_rank() == victim {
        let tmp = format!("{job_file}.tmp");
        std::fs::write(&tmp, format!("{:016x}", c.job_id())).unwrap();
        std::fs::rename(&tmp, job_file).unwrap();
        // Read at the first fault point, which comes after this.
        std::env::set_var("SHMKIT_FAULT_INJECT", point);
    }
    let mut a = DistArray::<f64>::create(c, "victim", &[64, 64], 1).unwrap();
    let _r = ReplicatedArray::<u8>::create_with(c, "victim-table", &[1 << 20], |mut v| v.fill(7)).unwrap();
    let data = ArrayD::from_elem(IxDyn(&[1 << 20]), 3u8);
    let _b =
        ReplicatedArray::<u8>::broadcast(c, "victim-bcast", &[1 << 20], (c.world_rank() == 0).then(|| data.view()));
    a.exchange_halos().unwrap();
    let mut b = DistArray::<f64>::create(c, "victim-b", &[64, 64], 1).unwrap();
    let mut sweep = a.sweep(&mut b).unwrap();
    sweep.step(|_| {});
    sweep.finish();
    c.world().barrier();
    if c.world_rank() == victim {
        if point != "between" {
            // The fault point never fired: the launcher fails on this file.
            std::fs::write(format!("{job_file}.missed"), point).unwrap();
        }
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL).unwrap();
    }
    c.world().barrier(); // never completes
    unreachable!("the job should have been ended by mpirun");
}
