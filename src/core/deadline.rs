//! The collector's batching deadline: one timer, kept from batch to batch.
//!
//! futures-timer wakes its timer thread whenever a `Delay` is created, reset
//! or dropped. A fresh timer per batch therefore cost two thread wake-ups
//! (and their context switches) for every batch that filled before its
//! deadline, which is most batches of a burst. The collector keeps one timer
//! instead: a batch due later than the running timer waits on it as it is,
//! and re-arms it for the remainder only if it fires first.

use std::task::Context;
use std::time::Duration;

use futures::FutureExt;
use futures_timer::Delay;

use crate::clock::since_origin;

pub(super) struct Deadline {
    timer: Option<Delay>,
    /// When `timer` fires, on `since_origin`'s clock; zero once it has fired
    /// (or before it is first armed), so it is re-armed before the next wait.
    fires_at: Duration,
}

impl Deadline {
    pub(super) fn new() -> Self {
        Self {
            timer: None,
            fires_at: Duration::ZERO,
        }
    }

    /// The time `delay` from now, to pass to [`until`](Self::until).
    pub(super) fn after(delay: Duration) -> Duration {
        since_origin().saturating_add(delay)
    }

    /// Returns once `due` (on `since_origin`'s clock) has passed. Dropping
    /// the future early leaves the timer armed for the next batch.
    pub(super) async fn until(&mut self, due: Duration) {
        loop {
            let now = since_origin();
            if now >= due {
                return;
            }
            let timer = match &mut self.timer {
                // Still armed, and fires no later than `due`: wait for it.
                Some(timer) if now < self.fires_at && self.fires_at <= due => timer,
                Some(timer) => {
                    timer.reset(due - now);
                    self.fires_at = due;
                    timer
                }
                None => {
                    self.fires_at = due;
                    self.timer.insert(Delay::new(due - now))
                }
            };
            timer.await;
            self.fires_at = Duration::ZERO;
        }
    }

    /// Stops the armed timer from waking the task that last waited on it,
    /// once its batch is gathered. Without this, a timer kept past its
    /// batch wakes the collector for nothing, and on a runtime whose workers
    /// are idle that wake starts a parked worker, which then takes work from
    /// the busy one.
    pub(super) fn unwatch(&mut self) {
        let Some(timer) = &mut self.timer else {
            return;
        };
        let mut nobody = Context::from_waker(futures::task::noop_waker_ref());
        if timer.poll_unpin(&mut nobody).is_ready() {
            self.fires_at = Duration::ZERO;
        }
    }
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests {
    // Native only: these read `std::time::Instant`, which panics on wasm32.
    use std::future::Future;
    use std::time::Instant;

    use super::*;

    #[test]
    fn waits_until_it_is_due() {
        let mut deadline = Deadline::new();
        let start = Instant::now();
        futures::executor::block_on(deadline.until(Deadline::after(Duration::from_millis(30))));
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_timer_kept_from_an_earlier_batch_fires_then_is_rearmed() {
        let mut deadline = Deadline::new();
        // An earlier batch arms the timer for 20 ms, then fills and stops
        // waiting: the timer stays armed.
        assert!(deadline
            .until(Deadline::after(Duration::from_millis(20)))
            .now_or_never()
            .is_none());
        let start = Instant::now();
        // The next batch is due later: the kept timer fires first, and the
        // wait goes on until the later time.
        futures::executor::block_on(deadline.until(Deadline::after(Duration::from_millis(60))));
        assert!(start.elapsed() >= Duration::from_millis(60));
    }

    /// Counts the wakes of the task it stands for.
    #[derive(Default)]
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl futures::task::ArcWake for Wakes {
        fn wake_by_ref(wakes: &std::sync::Arc<Self>) {
            wakes.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Arms a timer for 10 ms with a counting waker and stops waiting on it,
    /// as a batch that fills early does; `unwatch` as the collector does.
    fn wakes_of_a_kept_timer(unwatch: bool) -> usize {
        let wakes = std::sync::Arc::new(Wakes::default());
        let waker = futures::task::waker(wakes.clone());
        let mut context = Context::from_waker(&waker);
        let mut deadline = Deadline::new();
        let due = Deadline::after(Duration::from_millis(10));
        let mut wait = Box::pin(deadline.until(due));
        assert!(wait.as_mut().poll(&mut context).is_pending());
        drop(wait);
        if unwatch {
            deadline.unwatch();
        }
        // Watched: until the wake comes. Unwatched: well past due (this can
        // only pass falsely if the timer thread is later still).
        let patience = Duration::from_millis(if unwatch { 200 } else { 5_000 });
        let limit = Instant::now() + patience;
        while wakes.0.load(std::sync::atomic::Ordering::SeqCst) == 0 && Instant::now() < limit {
            std::thread::sleep(Duration::from_millis(5));
        }
        wakes.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[test]
    fn an_unwatched_timer_wakes_nobody() {
        assert_eq!(
            wakes_of_a_kept_timer(false),
            1,
            "a kept timer wakes its last waiter"
        );
        assert_eq!(wakes_of_a_kept_timer(true), 0);
    }

    #[test]
    fn a_past_due_time_returns_at_once() {
        let mut deadline = Deadline::new();
        let past = Deadline::after(Duration::ZERO);
        assert_eq!(deadline.until(past).now_or_never(), Some(()));
        assert!(deadline.timer.is_none(), "no timer armed for nothing");
    }
}
