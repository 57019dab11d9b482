//! Measuring backend time where `std` has a clock: `Instant::now` panics on
//! wasm32-unknown-unknown, so there the measurement is skipped.

use std::time::Duration;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) struct Stopwatch(std::time::Instant);

#[cfg(not(target_arch = "wasm32"))]
impl Stopwatch {
    pub(crate) fn start() -> Self {
        Self(std::time::Instant::now())
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

#[cfg(target_arch = "wasm32")]
pub(crate) struct Stopwatch;

#[cfg(target_arch = "wasm32")]
impl Stopwatch {
    pub(crate) fn start() -> Self {
        Self
    }

    pub(crate) fn elapsed(&self) -> Duration {
        Duration::ZERO
    }
}
