//! A consumer of `stream_camera`'s frames, in a program of its own: every
//! frame in order, with its per-channel mean, and how many it missed when
//! it fell behind. Started before the camera, it waits for it; when the
//! camera dies it waits for a new one (which numbers on); when the camera
//! ends the stream, it ends.
//!
//! ```text
//! cargo run --release --example stream_stats [-- --name N --frames K]
//! ```

use std::time::Duration;

use shmkit::ndarray::{Axis, Ix3};
use shmkit::stream::{RecvError, Subscriber};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let value = std::env::args().skip_while(|a| a != name).nth(1);
    value.and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> shmkit::Result<()> {
    let name: String = arg("--name", "shmkit-camera".to_owned());
    let most: u64 = arg("--frames", 0); // 0: until the stream ends
    let (mut read, mut missed, mut bad) = (0u64, 0u64, 0u64);
    'streams: loop {
        let frames = Subscriber::<u8, Ix3>::open_timeout(&name, Duration::from_secs(3600))?;
        println!("stats: subscribed to {name}");
        loop {
            match frames.next() {
                Ok(frame) => {
                    read += 1;
                    missed += frame.missed();
                    let shade = (frame.seq() % 256) as u8;
                    if frame[[0, 0, 0]] != shade {
                        bad += 1; // never: a frame is whole or not seen
                    }
                    if read % 30 == 1 {
                        let pixels = (frame.len() / 3) as f64;
                        let means: Vec<f64> = frame
                            .axis_iter(Axis(2))
                            .map(|c| c.iter().map(|&v| f64::from(v)).sum::<f64>() / pixels)
                            .collect();
                        println!("stats: frame {} means {:.1} {:.1} {:.1}", frame.seq(), means[0], means[1], means[2]);
                    }
                    if most > 0 && read >= most {
                        break 'streams;
                    }
                }
                Err(RecvError::PublisherDied) => {
                    println!("stats: the camera died; waiting for a new one");
                    std::thread::sleep(Duration::from_millis(200));
                    continue 'streams;
                }
                Err(RecvError::Ended) => break 'streams,
                Err(e) => {
                    println!("stats: {e}");
                }
            }
        }
    }
    println!("stats: {read} frames read, {missed} missed, {bad} not whole");
    if bad == 0 {
        println!("verified: every frame read was whole");
    }
    Ok(())
}
