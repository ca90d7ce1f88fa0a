#!/usr/bin/env bash
# Tiny tasks through a pool of 2, this tree against an earlier commit,
# built side by side and run alternately in one go: issue 22's "tiny
# tasks chunk 1 and chunk 1000 no worse than before this change".
#
#   benches/tiny_ab.sh [BASE [RUNS]]    # defaults: 9a33895 (main before issue 22), 9
#
# Each run of each build times `map_chunked(square, 0..200000, c)` for
# c = 1 and 1000 (5 times each after a warm-up, median) in a fresh
# process; the table gives the median over RUNS runs per build, in
# thousands of tasks per second (higher is better); "this tree" is the
# working tree, uncommitted changes included (the table says which). A
# committed tree's table replaces the tiny-ab section of benches/README.md
# (which leaves the tree dirty until that is committed: a second run then
# only prints).
# Needs cargo, git, tar and python3; writes under target/tiny-ab.
set -euo pipefail
base=${1:-9a33895}
runs=${2:-9}
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cd "$root" # the repository's .cargo/config.toml applies to both builds
work=$root/target/tiny-ab
base_src=$work/src-$(git -C "$root" rev-parse --short "$base")
if [ ! -d "$base_src" ]; then
    mkdir -p "$base_src.part"
    git -C "$root" archive "$base" | tar -x -C "$base_src.part"
    mv "$base_src.part" "$base_src"
fi

probe() { # $1: probe crate dir, $2: shmkit's path
    mkdir -p "$1/src"
    cat >"$1/Cargo.toml" <<EOF
[package]
name = "tiny-ab"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
shmkit = { path = "$2" }

[workspace]
EOF
    cat >"$1/src/main.rs" <<'EOF'
use std::time::Instant;

fn square(x: u64) -> u64 {
    x * x
}

fn tasks(r: &mut shmkit::Registry) {
    r.add(square);
}

fn main() {
    shmkit::init(tasks);
    let pool = shmkit::Pool::builder().tasks(tasks).helpers(2).build().expect("pool");
    let n = 200_000u64;
    let _ = pool.map_chunked(square, 0..n, 1000); // warm-up
    let rate = |chunk: usize| {
        let mut t: Vec<f64> = (0..5)
            .map(|_| {
                let start = Instant::now();
                let done = pool.map_chunked(square, 0..n, chunk);
                assert!(done.iter().all(Result::is_ok), "a tiny task failed");
                start.elapsed().as_secs_f64()
            })
            .collect();
        t.sort_by(f64::total_cmp);
        n as f64 / t[2] / 1e3
    };
    println!("{:.0} {:.0}", rate(1), rate(1000));
}
EOF
    cp "$2/Cargo.lock" "$1/Cargo.lock" # the versions each tree pinned
    cargo build --release --quiet --manifest-path "$1/Cargo.toml" --target-dir "$1/target"
}

probe "$base_src-probe" "$base_src"
probe "$work/head-probe" "$root"
one() { # $1: base or head; fails the script if the run fails
    local bin=$work/head-probe/target/release/tiny-ab
    [ "$1" = base ] && bin=$base_src-probe/target/release/tiny-ab
    local got
    got=$("$bin")
    echo "$1 $got"
}
for i in $(seq "$runs"); do # alternating which goes first
    if [ $((i % 2)) = 1 ]; then one base; one head; else one head; one base; fi
done >"$work/runs.txt"
python3 -c '
import os, sys, statistics as st
base, tree, readme = sys.argv[1:4]
runs = {}
for line in open(sys.argv[4]):
    side, one, thousand = line.split()
    runs.setdefault(side, []).append((float(one), float(thousand)))
b, h = runs["base"], runs["head"]
med = lambda rows, k: st.median(r[k] for r in rows)
md = f"Tiny tasks through a pool of 2 (`map_chunked(square, 0..200000, chunk)`), `{tree}` against `{base}`, built side by side and run alternately, median of {len(h)} runs per build (each the median of 5 maps):\n\n"
md += f"| chunk | `{base}` (k tasks/s) | `{tree}` (k tasks/s) | `{tree}` / `{base}` |\n|---|---|---|---|\n"
for k, c in ((0, 1), (1, 1000)):
    md += f"| {c} | {med(b, k):.0f} | {med(h, k):.0f} | {med(h, k) / med(b, k):.2f}× |\n"
print(md)
if not tree.endswith("-dirty"):  # numbers of a committed tree only go in the README
    text = open(readme, encoding="utf-8").read()
    begin, end = "<!-- BEGIN tiny-ab -->\n", "<!-- END tiny-ab -->"
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        sys.exit(f"{readme}: no tiny-ab section (its BEGIN and END markers, in order)")
    tmp = readme + ".tmp"
    open(tmp, "w", encoding="utf-8").write(text[: i + len(begin)] + md + text[j:])
    os.replace(tmp, readme)
' "$base" "$(git describe --always --dirty)" "$root/benches/README.md" "$work/runs.txt"
