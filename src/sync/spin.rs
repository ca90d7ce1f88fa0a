//! Spin, then block: the short busy-wait that keeps round trips fast.
//!
//! On a 2-core test VM a wake-up from a blocking wait costs about 22 µs,
//! so a submit→result round trip through four blocking waits costs ~90 µs;
//! busy-polling gets a process-to-process round trip down to ~4 µs. Each
//! waiter therefore polls for a short window before it sleeps, yielding the
//! CPU after the first iterations so that on a machine with few cores a
//! spinner never starves the thread it is waiting for.

use std::time::{Duration, Instant};

/// How long a waiter polls before it blocks.
pub(crate) const WINDOW: Duration = Duration::from_micros(60);

/// Polls `ready` for up to `window`; `None` if it never returned a value.
pub(crate) fn spin<T>(window: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    for i in 0u32.. {
        if let Some(v) = ready() {
            return Some(v);
        }
        if i < 2 {
            std::hint::spin_loop();
            continue;
        }
        // The clock after every yield, not every few: on a busy CPU one
        // yield lasts until the other thread's turn ends (hundreds of µs),
        // and sixteen of them kept a waiter taking turns with the helper
        // it waited for for milliseconds (measured: ~40 yields per
        // driver during one 30 ms pass). A yield costs far more than the
        // clock (vDSO). A zero window is a poll: no yield (`try_wait`);
        // a loop of polls that must let others run yields itself.
        if start.elapsed() >= window {
            break;
        }
        std::thread::yield_now();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_returns_the_value_or_gives_up_after_the_window() {
        let mut n = 0;
        assert_eq!(
            spin(WINDOW, || {
                n += 1;
                (n == 3).then_some(n)
            }),
            Some(3)
        );
        let start = Instant::now();
        assert_eq!(spin::<()>(Duration::from_millis(2), || None), None);
        assert!(start.elapsed() >= Duration::from_millis(2));
        // A zero window is a poll: three looks, no yield.
        let mut looks = 0;
        assert_eq!(
            spin::<()>(Duration::ZERO, || {
                looks += 1;
                None
            }),
            None
        );
        assert_eq!(looks, 3);
    }
}
