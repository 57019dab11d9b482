//! The builder settings shared by every kind of loader, with their defaults
//! and validation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::spawn::{default_spawner, Spawner};
use crate::BuildError;

/// A batch rarely needs to be larger: 100 keys fit well under every SQL
/// engine's bound-parameter limit and keep one reply small.
pub(crate) const DEFAULT_MAX_BATCH_SIZE: usize = 100;
/// Long enough for loads coming from many freshly spawned tasks to meet in one
/// batch, short next to the backend round trip it saves.
pub(crate) const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(1);
/// Enough concurrency to keep a backend busy, few enough not to exhaust a
/// typical connection pool.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 10;
/// One yield lets the requests polled alongside a lone one (a `join_all`)
/// queue instead of each leading a batch; more did not make bursts faster
/// (measured before the collector left a leader's requests to it).
pub(crate) const DEFAULT_GATHER_YIELDS: usize = 1;
/// Past this many, yields only spin an idle executor.
const GATHER_YIELDS_LIMIT: usize = 1000;
/// A batching window this long is a mistake, and timers would overflow.
const MAX_DELAY_LIMIT: Duration = Duration::from_secs(3600);
/// A bound this large is more likely a typo than a plan, and the queue's
/// room count needs headroom: closing adds a huge number of places to
/// release every waiting pusher (see `core::backlog`).
const MAX_QUEUED_LIMIT: usize = 1 << 20;

/// The builder methods every kind of loader shares, written once: `$item`
/// names what is batched ("key", "value"), `$call` the backend call and
/// `$calls` its plural.
macro_rules! shared_settings {
    ($item:literal, $call:literal, $calls:literal) => {
        #[doc = concat!("The most ", $item, "s one ", $call, " is given (default 100, at least 1).")]
        #[doc = concat!("A batch is dispatched as soon as it holds this many; further ", $item, "s")]
        /// go to the next batch. 100 fits under every SQL engine's
        /// bound-parameter limit and keeps one backend call small.
        ///
        /// The request that completes a batch runs it on its own task when an
        /// in-flight slot is free, so a burst needs no hop to another task.
        /// Fire-and-forget submissions spawn the batch they complete instead.
        pub fn max_batch_size(mut self, items: usize) -> Self {
            self.settings.max_batch_size = items;
            self
        }

        #[doc = concat!("How long a batch that is not full may wait for more ", $item, "s, counted")]
        #[doc = concat!("from its **first** ", $item, "; later ones never extend it (default 1 ms, at")]
        /// most one hour). One millisecond lets requests from many freshly
        /// spawned tasks meet in full batches while staying short next to the
        /// backend round trip it saves.
        ///
        /// `Duration::ZERO` dispatches as soon as what is already queued is
        /// gathered: the lowest latency, with batches only as large as what
        /// arrived together. With `ZERO`, a request on an idle loader runs its
        /// batch on its own task, skipping the hops to the collector and to a
        /// batch task, after yielding as often as
        /// [`gather_yields`](Self::gather_yields) says (once by default), so
        /// that requests polled meanwhile queue instead of each running a
        /// batch of its own; with `max_batch_size(1)` it does not yield. On a
        /// multi-threaded executor with a fast backend, a burst with `ZERO`
        /// can go out in many batches of a few keys each (the loader is idle
        /// again between them); give a small delay when full batches matter
        /// more than the last microseconds. While every in-flight slot is
        /// busy, waiting items are taken as soon as a slot frees; each
        /// batch's delay still counts from its own first item.
        pub fn max_delay(mut self, delay: std::time::Duration) -> Self {
            self.settings.max_delay = delay;
            self
        }

        /// With `max_delay(Duration::ZERO)`: how many times a request that
        /// finds the loader idle yields to its executor before running its
        /// batch on its own task (default 1, at most 1000).
        ///
        /// While it yields, the requests polled meanwhile (the rest of a
        /// `join_all`, other tasks) queue instead of each running a batch of
        /// its own, and the collector leaves them: the leading request takes
        /// them into its batch when it runs (up to `max_batch_size`; a
        /// request that fills a batch meanwhile runs it if an in-flight slot
        /// is free, and the collector takes what is left once the leader has
        /// started). A leading request kept without being polled (the loser
        /// of a `select`) holds up the requests queued behind it for 1 ms at
        /// most while an in-flight slot is free (it holds one): then the
        /// collector takes them. A call that queues many (`load_many`,
        /// `execute_many`) leads the same way when the first of its keys or
        /// values it queues finds the loader idle, unless this is `0` or
        /// `max_batch_size` is 1: its whole batches go as they fill, and it
        /// runs what is left with what the calls polled while it yielded
        /// queued.
        ///
        /// `0` runs the batch at once, in the request's first poll: the
        /// lowest latency for requests made one after another, and the one to
        /// pick when they rarely come together. Single requests polled
        /// together then each run a batch of their own when they find the
        /// loader idle. More yields keep the others queuing for longer,
        /// each yield costing one trip through the executor's queue. Whatever
        /// this is, requests that arrive while every in-flight slot is busy
        /// share the next batch, and without a zero delay it does nothing:
        /// the collector gathers then.
        pub fn gather_yields(mut self, yields: usize) -> Self {
            self.settings.gather_yields = yields;
            self
        }

        #[doc = concat!("The most ", $calls, " of this loader that run at once (default 10, at least")]
        #[doc = concat!("1). While all run, new ", $item, "s queue into the next batches. Ten keeps")]
        /// a backend busy without exhausting a typical connection pool.
        pub fn max_in_flight(mut self, calls: usize) -> Self {
            self.settings.max_in_flight = calls;
            self
        }

        /// A name for this loader, shown by `Debug` and its `label()`.
        pub fn label(mut self, label: impl Into<String>) -> Self {
            self.settings.label = Some(std::sync::Arc::from(label.into()));
            self
        }

        #[doc = concat!("Where the collector and the ", $calls, " run. Defaults to smol's global")]
        /// executor with the `smol` feature; required without it.
        pub fn spawner(mut self, spawner: impl $crate::Spawner) -> Self {
            self.settings.spawner = Some(std::sync::Arc::new(spawner));
            self
        }
    };
}
pub(crate) use shared_settings;

/// What every loader builder collects, before validation.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) max_batch_size: usize,
    pub(crate) max_delay: Duration,
    pub(crate) gather_yields: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) max_queued: Option<usize>,
    pub(crate) label: Option<Arc<str>>,
    pub(crate) spawner: Option<Arc<dyn Spawner>>,
}

/// The validated batching triggers the collector works with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchLimits {
    pub(crate) max_batch_size: usize,
    pub(crate) max_delay: Duration,
    /// Yields of a caller leading a zero-delay batch before running it.
    pub(crate) gather_yields: usize,
    pub(crate) max_in_flight: usize,
    /// Bound of the queue in front of the collector; `None`: unbounded.
    pub(crate) max_queued: Option<usize>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            max_delay: DEFAULT_MAX_DELAY,
            gather_yields: DEFAULT_GATHER_YIELDS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_queued: None,
            label: None,
            spawner: None,
        }
    }
}

impl Settings {
    /// Checks every setting and picks the spawner.
    pub(crate) fn validate(&self) -> Result<(BatchLimits, Arc<dyn Spawner>), BuildError> {
        if self.max_batch_size == 0 {
            return Err(BuildError::InvalidSetting {
                setting: "max_batch_size",
                reason: "must be at least 1",
            });
        }
        if self.max_in_flight == 0 {
            return Err(BuildError::InvalidSetting {
                setting: "max_in_flight",
                reason: "must be at least 1",
            });
        }
        if self.max_delay > MAX_DELAY_LIMIT {
            return Err(BuildError::InvalidSetting {
                setting: "max_delay",
                reason: "must be at most one hour",
            });
        }
        if self.gather_yields > GATHER_YIELDS_LIMIT {
            return Err(BuildError::InvalidSetting {
                setting: "gather_yields",
                reason: "must be at most 1000",
            });
        }
        if self.max_queued == Some(0) {
            return Err(BuildError::InvalidSetting {
                setting: "max_queued",
                reason: "must be at least 1",
            });
        }
        if self
            .max_queued
            .is_some_and(|queued| queued > MAX_QUEUED_LIMIT)
        {
            return Err(BuildError::InvalidSetting {
                setting: "max_queued",
                reason: "must be at most 1048576",
            });
        }
        let spawner = match &self.spawner {
            Some(spawner) => spawner.clone(),
            None => default_spawner().ok_or(BuildError::NoSpawner)?,
        };
        let limits = BatchLimits {
            max_batch_size: self.max_batch_size,
            max_delay: self.max_delay,
            gather_yields: self.gather_yields,
            max_in_flight: self.max_in_flight,
            max_queued: self.max_queued,
        };
        Ok((limits, spawner))
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("max_batch_size", &self.max_batch_size)
            .field("max_delay", &self.max_delay)
            .field("gather_yields", &self.gather_yields)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_queued", &self.max_queued)
            .field("label", &self.label)
            .field("spawner", &self.spawner.as_ref().map(|_| ".."))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(settings: Settings) -> &'static str {
        match settings.validate() {
            Err(BuildError::InvalidSetting { setting, .. }) => setting,
            other => panic!(
                "expected an invalid setting, got {:?}",
                other.map(|(limits, _)| limits)
            ),
        }
    }

    #[test]
    fn out_of_range_settings_are_named() {
        let base = Settings {
            spawner: Some(Arc::new(|_| {})),
            ..Settings::default()
        };
        let zero_batch = Settings {
            max_batch_size: 0,
            ..base.clone()
        };
        let zero_in_flight = Settings {
            max_in_flight: 0,
            ..base.clone()
        };
        let long_delay = Settings {
            max_delay: MAX_DELAY_LIMIT + Duration::from_nanos(1),
            ..base.clone()
        };
        assert_eq!(rejected(zero_batch), "max_batch_size");
        assert_eq!(rejected(zero_in_flight), "max_in_flight");
        let huge_queue = Settings {
            max_queued: Some(MAX_QUEUED_LIMIT + 1),
            ..base.clone()
        };
        let many_yields = Settings {
            gather_yields: GATHER_YIELDS_LIMIT + 1,
            ..base.clone()
        };
        assert_eq!(rejected(long_delay), "max_delay");
        assert_eq!(rejected(many_yields), "gather_yields");
        assert_eq!(rejected(huge_queue), "max_queued");
        assert!(base.validate().is_ok());
    }

    #[cfg(not(all(feature = "smol", not(target_arch = "wasm32"))))]
    #[test]
    fn no_spawner_is_a_typed_error() {
        let error = Settings::default().validate().map(|_| ()).unwrap_err();
        assert_eq!(error, BuildError::NoSpawner);
    }
}
