//! Time where `std` has a clock and where it does not: `Instant::now` panics
//! on wasm32-unknown-unknown, so there backend time is not measured and
//! store expiry reads JavaScript's clock.

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

/// Monotonic time since a fixed origin (the first call in the process).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn since_origin() -> Duration {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(std::time::Instant::now).elapsed()
}

/// Wall-clock time since the Unix epoch, from JavaScript's `Date.now()`.
#[cfg(target_arch = "wasm32")]
pub(crate) fn since_origin() -> Duration {
    Duration::from_secs_f64(js_sys::Date::now() / 1000.0)
}
