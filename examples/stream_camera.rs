//! A camera: 1920x1080 RGB frames published on a stream at a fixed rate,
//! for any number of separate consumer programs (`stream_stats`, and
//! `python/examples/stream_viewer.py`), started before or after it and
//! killed and restarted at will: a consumer that dies gives its place
//! and its frames back, and the camera never waits for one (`Overwrite`).
//!
//! ```text
//! cargo run --release --example stream_camera [-- --name N --fps F --frames K]
//! ```
//!
//! Each frame is a moving gradient whose pixel (0, 0) holds the frame's
//! number (mod 256) in all three channels, so consumers can check what
//! they read.

use std::time::{Duration, Instant};

use shmkit::ndarray::Ix3;
use shmkit::stream::{Policy, Publisher};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let value = std::env::args().skip_while(|a| a != name).nth(1);
    value.and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> shmkit::Result<()> {
    let name: String = arg("--name", "shmkit-camera".to_owned());
    let (fps, frames): (f64, u64) = (arg("--fps", 30.0), arg("--frames", 0));
    let camera = Publisher::<u8, Ix3>::builder(&name, (1080, 1920, 3))
        .slots(8)
        .subscribers(4)
        .policy(Policy::Overwrite)
        .create()?;
    println!(
        "camera: publishing {name} at {fps} fps{}",
        if frames > 0 { format!(", {frames} frames") } else { String::new() }
    );
    let period = Duration::from_secs_f64(1.0 / fps);
    let start = Instant::now();
    for n in 1.. {
        let mut frame = camera.loan().expect("Overwrite: a slot is always free");
        let shade = (n % 256) as u8;
        // A gradient down the rows, moving with the frame number: a row at
        // a time, as plain slices (a sample is one C-order block).
        let pixels = frame.as_slice_mut().expect("a slot is contiguous");
        for (y, row) in pixels.chunks_mut(1920 * 3).enumerate() {
            row.fill((y as u8).wrapping_add(shade));
        }
        frame[[0, 0, 0]] = shade;
        frame[[0, 0, 1]] = shade;
        frame[[0, 0, 2]] = shade;
        let seq = camera.publish(frame).expect("our own loan");
        if seq % 30 == 0 {
            println!("camera: frame {seq}");
        }
        if frames > 0 && n >= frames {
            break;
        }
        // A fixed rate: sleep until the next frame's time.
        let next = start + period.mul_f64(n as f64);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    println!("camera: done");
    Ok(())
}
