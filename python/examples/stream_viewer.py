"""A live viewer of ``stream_camera``'s frames (the Rust example), in a
program of its own: only the newest frame, a few times a second, so it
never holds the camera back. Started before the camera, it waits for it;
when the camera dies it waits for a new one; when the camera ends the
stream, it ends.

    python stream_viewer.py [--name shmkit-camera] [--frames N]
"""

import argparse
import time

import numpy as np

import shmkit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", default="shmkit-camera")
    ap.add_argument("--frames", type=int, default=0, help="stop after this many (0: at the end of the stream)")
    ap.add_argument("--every", type=float, default=0.2, help="seconds between looks")
    a = ap.parse_args()
    shown = 0
    while True:
        frames = shmkit.Subscriber(a.name, timeout=3600)
        print(f"viewer: watching {a.name} {frames.shape} {frames.dtype}", flush=True)
        try:
            while True:
                with frames.latest() as frame:
                    image = np.asarray(frame)
                    means = image.reshape(-1, image.shape[-1]).mean(axis=0)
                    print(f"viewer: frame {frame.seq} means {' '.join(f'{m:.1f}' for m in means)}", flush=True)
                    del image
                shown += 1
                if a.frames and shown >= a.frames:
                    return
                time.sleep(a.every)
        except shmkit.PublisherDied:
            print("viewer: the camera died; waiting for a new one", flush=True)
            time.sleep(0.2)
        except shmkit.ShutDown:
            print("viewer: the stream ended", flush=True)
            return


if __name__ == "__main__":
    main()
