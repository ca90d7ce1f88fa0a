//! The run's tables: printed, written to `target/bench/stream.{json,md}`
//! and (a full run) into `benches/README.md`.

use anyhow::Result;

use crate::{Samples, Sizes, FRAME};

/// What a run measured.
pub struct Report {
    pub latency: Samples,
    pub throughput: Samples,
    pub python: String,
    pub sizes: Sizes,
}

/// The `q` quantile of `v` (0 if empty).
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0)
}

fn yes(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

impl Report {
    fn median(&self, key: &str) -> f64 {
        quantile(self.latency.get(key).map_or(&[][..], |v| v), 0.5)
    }

    /// `median (p99)` in µs.
    fn cell(&self, key: &str) -> String {
        let v = self.latency.get(key).map_or(&[][..], |v| v);
        format!("{:.1} ({:.1})", quantile(v, 0.5), quantile(v, 0.99))
    }

    fn fps(&self, key: &str) -> (f64, f64, f64) {
        let v = self.throughput.get(key).map_or(&[][..], |v| v);
        (quantile(v, 0.5), quantile(v, 0.0), quantile(v, 1.0))
    }

    fn latency_table(&self) -> String {
        let mut t = String::from(
            "| subscriber | shmkit | iceoryx2 | shmkit ÷ iceoryx2 | shmkit, Python | `multiprocessing.Queue` | Queue ÷ shmkit | a futex wake alone |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for (wait, what) in [("busy", "busy-polling"), ("sleep", "asleep between frames")] {
            let k = |side: &str| format!("{side}/{wait}");
            let (us, iox, queue) = (self.median(&k("shmkit")), self.median(&k("iceoryx2")), self.median(&k("queue")));
            t += &format!(
                "| {what} | {} | {} | {:.2}× | {} | {} | {:.0}× | {} |\n",
                self.cell(&k("shmkit")),
                self.cell(&k("iceoryx2")),
                us / iox,
                self.cell(&k("shmkit-python")),
                self.cell(&k("queue")),
                queue / us,
                if wait == "sleep" { self.cell("futex/sleep") } else { "—".to_owned() }
            );
        }
        t
    }

    fn targets(&self) -> String {
        let (busy, sleep) = (self.median("shmkit/busy"), self.median("shmkit/sleep"));
        let ratio = |wait: &str| self.median(&format!("shmkit/{wait}")) / self.median(&format!("iceoryx2/{wait}"));
        let queue = |wait: &str| self.median(&format!("queue/{wait}")) / self.median(&format!("shmkit/{wait}"));
        let (r_busy, r_sleep, q_busy, q_sleep) = (ratio("busy"), ratio("sleep"), queue("busy"), queue("sleep"));
        format!(
            "| target | here | |\n|---|---|---|\n\
             | busy-polling ≤ 2 µs | {busy:.1} µs | {} |\n\
             | asleep (futex) ≤ 20 µs | {sleep:.1} µs | {} |\n\
             | within 2× of iceoryx2 | {r_busy:.2}× busy, {r_sleep:.2}× asleep | {} |\n\
             | ≥ 100× `multiprocessing.Queue` | {q_busy:.0}× busy, {q_sleep:.0}× asleep | {} |\n",
            yes(busy <= 2.0),
            yes(sleep <= 20.0),
            yes(r_busy <= 2.0 && r_sleep <= 2.0),
            yes(q_busy >= 100.0 && q_sleep >= 100.0)
        )
    }

    fn throughput_table(&self) -> String {
        let (memory, _, _) = self.fps("memory2");
        let gb = |fps: f64| fps * FRAME as f64 / 1e9;
        let mut t = String::from("| | frames/s, median (range) | GB/s written | of the bound |\n|---|---|---|---|\n");
        let rows = [
            ("memory2", "the same writes into 2 buffers in turn, one process (the bound)"),
            ("memory8", "the same writes into 8 buffers in turn, one process"),
            ("shmkit", "shmkit"),
            ("iceoryx2", "iceoryx2"),
            ("shmkit-python", "shmkit, Python"),
            ("queue", "`multiprocessing.Queue`, one per consumer"),
        ];
        for (key, what) in rows {
            let (fps, lo, hi) = self.fps(key);
            t += &format!("| {what} | {fps:.0} ({lo:.0}–{hi:.0}) | {:.1} | {:.0}% |\n", gb(fps), 100.0 * fps / memory);
        }
        t
    }

    fn markdown(&self) -> String {
        let s = &self.sizes;
        format!(
            "Measured {} on {}; {}. {} rounds; per round and side {} frames a period apart \
             (1 ms busy, 3 ms asleep; {} for Python) and {} frames of throughput ({} for Python).\n\n\
             **Publish → seen**, one {} MiB frame to one subscriber in another process; median (p99), µs:\n\n{}\n{}\n\
             **Throughput**, {} MiB frames to 2 subscribers, each frame written whole once and checked at both ends \
             by both, none lost:\n\n{}",
            shmkit_bench::today(),
            shmkit_bench::machine(),
            self.python,
            s.rounds,
            s.frames,
            s.python_frames,
            s.bulk,
            (s.bulk / 4).max(20),
            FRAME >> 20,
            self.latency_table(),
            self.targets(),
            FRAME >> 20,
            self.throughput_table()
        )
    }

    /// Prints the tables and writes them out.
    pub fn write(&self, quick: bool) -> Result<()> {
        let md = self.markdown();
        println!("{md}");
        let dir = shmkit_bench::target_dir().join("bench");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("stream.md"), &md)?;
        let json = serde_json::json!({ "latency_us": self.latency, "frames_per_s": self.throughput });
        std::fs::write(dir.join("stream.json"), serde_json::to_string(&json)?)?;
        if !quick {
            shmkit_bench::update_readme("stream", &md)?;
        }
        Ok(())
    }
}
