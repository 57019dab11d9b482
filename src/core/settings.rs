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
/// A batching window this long is a mistake, and timers would overflow.
const MAX_DELAY_LIMIT: Duration = Duration::from_secs(3600);

/// What every loader builder collects, before validation.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) max_batch_size: usize,
    pub(crate) max_delay: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) label: Option<Arc<str>>,
    pub(crate) spawner: Option<Arc<dyn Spawner>>,
}

/// The validated batching triggers the collector works with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchLimits {
    pub(crate) max_batch_size: usize,
    pub(crate) max_delay: Duration,
    pub(crate) max_in_flight: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            max_delay: DEFAULT_MAX_DELAY,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
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
        let spawner = match &self.spawner {
            Some(spawner) => spawner.clone(),
            None => default_spawner().ok_or(BuildError::NoSpawner)?,
        };
        let limits = BatchLimits {
            max_batch_size: self.max_batch_size,
            max_delay: self.max_delay,
            max_in_flight: self.max_in_flight,
        };
        Ok((limits, spawner))
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("max_batch_size", &self.max_batch_size)
            .field("max_delay", &self.max_delay)
            .field("max_in_flight", &self.max_in_flight)
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
        assert_eq!(rejected(long_delay), "max_delay");
        assert!(base.validate().is_ok());
    }

    #[cfg(not(all(feature = "smol", not(target_arch = "wasm32"))))]
    #[test]
    fn no_spawner_is_a_typed_error() {
        let error = Settings::default().validate().map(|_| ()).unwrap_err();
        assert_eq!(error, BuildError::NoSpawner);
    }
}
