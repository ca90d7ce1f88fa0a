use std::time::Instant;
fn square(x: u64) -> u64 {
    x * x
}
fn tasks(r: &mut shmkit::Registry) {
    r.add(square);
}
fn main() {
    shmkit::init(tasks);
    let big = std::env::var_os("BIG").map(|_| {
        let mut a = shmkit::SharedArray::<f64, ndarray::Ix1>::create_unique(1 << 27).unwrap();
        a.as_slice_mut().unwrap().fill(1.0);
        a
    });
    let n: usize = std::env::args().nth(1).map_or(21, |a| a.parse().unwrap());
    let mut t: Vec<f64> = (0..n)
        .map(|_| {
            let s = Instant::now();
            let p = shmkit::Pool::builder().tasks(tasks).helpers(2).build().unwrap();
            let e = s.elapsed().as_secs_f64() * 1e3;
            drop(p);
            e
        })
        .collect();
    t.sort_by(f64::total_cmp);
    drop(big);
    println!("pool of 2 ready: median {:.2} ms (min {:.2})", t[t.len() / 2], t[0]);
}
