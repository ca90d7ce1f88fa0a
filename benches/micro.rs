//! Criterion micro-benchmarks: segment create and open (1 GiB), a
//! submit→result round trip on a warm pool, pool start-up, the shared
//! queue's throughput (items/s), and a shared map's insert and get rates
//! and a shared list's push rate from one thread.
//!
//! ```text
//! cargo bench --bench micro
//! ```

use std::time::Duration;

use criterion::{Criterion, Throughput};
use ndarray::Ix1;
use shmkit::{Pool, SharedArray};

fn square(x: u64) -> u64 {
    x * x
}

fn tasks(r: &mut shmkit::Registry) {
    r.add(square);
}

const GIB_F64: usize = 1 << 27;

fn segments(c: &mut Criterion) {
    let mut g = c.benchmark_group("segment");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));
    // Create reserves (fallocate) and maps (populate) every page; drop unlinks.
    g.bench_function("create 1 GiB (reserve + populate), then unlink", |b| {
        b.iter(|| SharedArray::<f64, Ix1>::create_unique(GIB_F64).expect("create"))
    });
    let owner = SharedArray::<f64, Ix1>::create_unique(GIB_F64).expect("create");
    g.sample_size(100).measurement_time(Duration::from_secs(3));
    g.bench_function("open 1 GiB by name (no page touched)", |b| {
        b.iter(|| SharedArray::<f64, Ix1>::open(owner.name()).expect("open"))
    });
    g.finish();
}

fn pool(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool");
    g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    let pool = Pool::builder().tasks(tasks).build().expect("pool");
    g.bench_function("submit -> result round trip", |b| b.iter(|| pool.submit(square, 3).wait().expect("task")));
    g.sample_size(30);
    g.bench_function("start a pool of N helpers until all are ready", |b| {
        b.iter_with_large_drop(|| Pool::builder().tasks(tasks).build().expect("pool"))
    });
    g.finish();
}

fn queue(c: &mut Criterion) {
    const N: u64 = 100_000;
    let mut g = c.benchmark_group("queue");
    g.throughput(Throughput::Elements(N)).sample_size(20).measurement_time(Duration::from_secs(5));
    let q = shmkit::sync::ShmQueue::<u64>::create_unique(4096).expect("queue");
    let (tx, rx) = (q.sender().expect("sender"), q.receiver().expect("receiver"));
    g.bench_function("send then receive, one thread", |b| {
        b.iter(|| {
            for i in 0..N {
                tx.send(i).expect("send");
                rx.recv().expect("recv");
            }
        })
    });
    g.bench_function("one sender thread -> one receiver thread", |b| {
        b.iter(|| {
            let name = q.name().to_owned();
            let producer = std::thread::spawn(move || {
                let tx = shmkit::sync::ShmQueue::<u64>::open(&name).expect("open").sender().expect("sender");
                (0..N).for_each(|i| tx.send(i).expect("send"));
            });
            (0..N).for_each(|_| {
                std::hint::black_box(rx.recv().expect("recv"));
            });
            producer.join().expect("producer");
        })
    });
    g.finish();
}

fn collections(c: &mut Criterion) {
    use shmkit::collections::{ShmMap, ShmVec};
    const N: u64 = 100_000;
    let mut g = c.benchmark_group("collections");
    g.throughput(Throughput::Elements(N)).sample_size(20).measurement_time(Duration::from_secs(4));
    let map = ShmMap::<u64, u64>::create_unique(N as usize).expect("map");
    g.bench_function("ShmMap<u64, u64> insert (overwriting after the first pass)", |b| {
        b.iter(|| (0..N).for_each(|k| _ = std::hint::black_box(map.insert(k, 2 * k).expect("insert"))))
    });
    g.bench_function("ShmMap<u64, u64> get (all present)", |b| {
        b.iter(|| (0..N).for_each(|k| _ = std::hint::black_box(map.get(&k).expect("get"))))
    });
    g.bench_function("ShmMap<u64, u64> modify (+1)", |b| {
        b.iter(|| (0..N).for_each(|k| _ = std::hint::black_box(map.modify(k, |v| v.map(|v| v + 1)).expect("modify"))))
    });
    g.bench_function("ShmVec<u64> push (a fresh list per pass, made untimed)", |b| {
        let fresh = || ShmVec::<u64>::create_unique(N as usize).expect("list");
        let fill = |list: ShmVec<u64>| {
            (0..N).for_each(|x| _ = list.push(x).expect("push"));
            list
        };
        b.iter_batched(fresh, fill, criterion::BatchSize::PerIteration)
    });
    g.finish();
}

fn main() {
    shmkit::init(tasks); // benchmark helpers are this binary again
    let mut c = Criterion::default().configure_from_args();
    segments(&mut c);
    pool(&mut c);
    queue(&mut c);
    collections(&mut c);
    c.final_summary();
}
