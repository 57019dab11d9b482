//! The collector's batching deadline: how long a batch may wait for more
//! items, counted from its first.
//!
//! On native targets one timer is kept from batch to batch. futures-timer
//! wakes its timer thread whenever a `Delay` is created, reset or dropped, so
//! a fresh timer per batch cost two thread wake-ups per batch (creating it and
//! dropping it), most of them for batches that filled long before their
//! deadline. A batch due later than the kept timer waits on it as it is, and
//! re-arms it for the remainder only if it fires first. While batches keep
//! coming, the timer thread then wakes at most twice per window: when the
//! kept timer expires, and when a batch still gathering re-arms it.
//!
//! On wasm32 there is no timer thread (a timer is a JavaScript timeout) and
//! the crate's clock there is the wall clock, so each batch gets a fresh
//! timer, as before.

use std::time::Duration;

use futures_timer::Delay;

pub(super) struct Deadline {
    timer: Option<Delay>,
    /// When the current batch is due, on `since_origin`'s clock.
    due: Duration,
    /// When `timer` fires, on the same clock. Zero before it is first armed
    /// and once a poll has seen it fire, so that it is re-armed (never polled
    /// again as it is) before the next wait.
    #[cfg(not(target_arch = "wasm32"))]
    fires_at: Duration,
}

impl Deadline {
    pub(super) fn new() -> Self {
        Self {
            timer: None,
            due: Duration::ZERO,
            #[cfg(not(target_arch = "wasm32"))]
            fires_at: Duration::ZERO,
        }
    }

    /// Opens the window of the batch whose oldest item arrived at
    /// `first_at` (on `since_origin`'s clock): it lasts `delay` from then.
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn start_at(&mut self, first_at: Duration, delay: Duration) {
        self.due = first_at.saturating_add(delay);
    }

    /// Opens the window of the batch whose oldest item arrived at
    /// `first_at`; a new window gets a new timer. The clock here is the wall
    /// clock, so what is left is capped at `delay`: a clock set back cannot
    /// make a batch wait longer than that from now.
    #[cfg(target_arch = "wasm32")]
    pub(super) fn start_at(&mut self, first_at: Duration, delay: Duration) {
        let due = first_at.saturating_add(delay);
        if self.timer.is_none() || due != self.due {
            self.due = due;
            let left = due.saturating_sub(crate::clock::since_origin());
            self.timer = Some(Delay::new(left.min(delay)));
        }
    }

    /// Returns once the current batch's window has passed. Dropping the
    /// future early (the batch filled) leaves the timer armed.
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) async fn wait(&mut self) {
        let due = self.due;
        loop {
            let now = crate::clock::since_origin();
            if now >= due {
                return;
            }
            let timer = match &mut self.timer {
                // Armed, not yet fired, and firing no later than `due`.
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

    /// Returns once the current batch's window has passed.
    #[cfg(target_arch = "wasm32")]
    pub(super) async fn wait(&mut self) {
        if let Some(timer) = &mut self.timer {
            timer.await;
        }
        // Fired: a JavaScript timeout must not be polled again.
        self.timer = None;
    }

    /// The batch was gathered before its window passed, or no window is
    /// open. On native targets the kept timer stops waking the task that
    /// last waited on it: that wake would come for nothing, and on a runtime
    /// whose workers are idle it would start a parked worker, which then
    /// takes work from the busy one.
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn finish(&mut self) {
        use futures::FutureExt;

        let Some(timer) = &mut self.timer else {
            return;
        };
        if self.fires_at.is_zero() {
            return; // seen to fire already: nothing will wake
        }
        let mut nobody = std::task::Context::from_waker(futures::task::noop_waker_ref());
        if timer.poll_unpin(&mut nobody).is_ready() {
            self.fires_at = Duration::ZERO;
        }
    }

    /// The batch was gathered before its window passed, or no window is
    /// open: its timer, if any, goes.
    #[cfg(target_arch = "wasm32")]
    pub(super) fn finish(&mut self) {
        self.timer = None;
    }
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests {
    // Native only: these read `std::time::Instant`, which panics on wasm32,
    // and test the kept timer, which wasm32 does not keep.
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Context;
    use std::time::Instant;

    use futures::FutureExt;

    use super::*;
    use crate::clock::since_origin;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    /// Opens a window of `delay` from now.
    fn open(deadline: &mut Deadline, delay: Duration) {
        deadline.start_at(since_origin(), delay);
    }

    /// Polls the current wait once, as the collector does before the batch
    /// fills, and drops it. `false` if the window had already passed (the
    /// machine stalled): the caller then has nothing to conclude.
    fn wait_once(deadline: &mut Deadline, context: &mut Context<'_>) -> bool {
        let mut wait = Box::pin(deadline.wait());
        wait.as_mut().poll(context).is_pending()
    }

    fn nobody() -> Context<'static> {
        Context::from_waker(futures::task::noop_waker_ref())
    }

    /// Opens a window of `window` from now and waits it out: the wait must
    /// last at least that long (a lower bound the code guarantees; a slow
    /// machine only makes it longer).
    fn wait_out(deadline: &mut Deadline, window: Duration) {
        let start = Instant::now();
        open(deadline, window);
        futures::executor::block_on(deadline.wait());
        assert!(start.elapsed() >= window);
    }

    #[test]
    fn waits_until_the_window_has_passed() {
        wait_out(&mut Deadline::new(), ms(30));
    }

    #[test]
    fn a_kept_timer_firing_before_the_next_window_ends_is_reused() {
        let mut deadline = Deadline::new();
        open(&mut deadline, ms(1_000));
        if !wait_once(&mut deadline, &mut nobody()) {
            return;
        }
        let first = deadline.fires_at;
        open(&mut deadline, ms(2_000));
        if since_origin() >= first || !wait_once(&mut deadline, &mut nobody()) {
            return; // the machine stalled for a second: nothing to check
        }
        assert_eq!(deadline.fires_at, first, "the kept timer was reset");
    }

    #[test]
    fn a_kept_timer_that_fires_early_is_rearmed_for_the_rest() {
        let mut deadline = Deadline::new();
        open(&mut deadline, ms(20));
        // Whether or not a stall let the 20 ms pass first, the next window
        // must last its full 60 ms.
        wait_once(&mut deadline, &mut nobody());
        wait_out(&mut deadline, ms(60));
    }

    #[test]
    fn a_timer_seen_to_fire_is_rearmed_not_polled_again() {
        let mut deadline = Deadline::new();
        open(&mut deadline, ms(5));
        futures::executor::block_on(deadline.wait());
        open(&mut deadline, ms(5_000));
        // Reusing the fired timer would spin until due, then be ready; no
        // stall between these two lines lasts five seconds.
        assert!(wait_once(&mut deadline, &mut nobody()), "spun until due");
        assert_eq!(deadline.fires_at, deadline.due);
    }

    #[test]
    fn a_window_of_zero_arms_nothing() {
        let mut deadline = Deadline::new();
        open(&mut deadline, Duration::ZERO);
        assert_eq!(deadline.wait().now_or_never(), Some(()));
        assert!(deadline.timer.is_none());
    }

    /// Counts the wakes of the task it stands for.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl futures::task::ArcWake for Wakes {
        fn wake_by_ref(wakes: &Arc<Self>) {
            wakes.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// How often a batch's timer wakes the collector after the batch filled
    /// early: `finish`ed as the collector does, or not. `None` if the machine
    /// stalled past the window before `finish` ran (nothing to conclude).
    fn wakes_after_an_early_batch(finish: bool) -> Option<usize> {
        let wakes = Arc::new(Wakes::default());
        let waker = futures::task::waker(wakes.clone());
        let mut deadline = Deadline::new();
        open(&mut deadline, ms(200));
        if !wait_once(&mut deadline, &mut Context::from_waker(&waker)) {
            return None;
        }
        if finish {
            deadline.finish();
        }
        if since_origin() >= deadline.due {
            return None;
        }
        // Finished: well past the window. Not: until the wake comes.
        let patience = ms(if finish { 500 } else { 5_000 });
        let limit = Instant::now() + patience;
        while wakes.0.load(Ordering::SeqCst) == 0 && Instant::now() < limit {
            std::thread::sleep(ms(5));
        }
        Some(wakes.0.load(Ordering::SeqCst))
    }

    #[test]
    fn a_finished_batch_s_timer_wakes_nobody() {
        if let Some(wakes) = wakes_after_an_early_batch(false) {
            assert_eq!(wakes, 1, "an unfinished timer wakes its last waiter");
        }
        if let Some(wakes) = wakes_after_an_early_batch(true) {
            assert_eq!(wakes, 0);
        }
    }
}
