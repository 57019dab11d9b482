use tokio::runtime::Handle;

use super::{BoxFuture, Spawner};
use crate::SpawnerError;

/// Spawns on a tokio runtime through its [`Handle`].
///
/// The handle works from any thread, so a loader built inside a runtime can be
/// used from outside it.
///
/// ```
/// use anybatch::{SpawnerError, TokioSpawner};
///
/// // Outside a runtime there is no current handle: a typed error, not a panic.
/// assert!(matches!(TokioSpawner::current(), Err(SpawnerError::NoRuntime { .. })));
///
/// let runtime = tokio::runtime::Builder::new_multi_thread().build().unwrap();
/// let spawner = TokioSpawner::from_handle(runtime.handle().clone());
/// let inside = runtime.block_on(async { TokioSpawner::current() });
/// assert!(inside.is_ok());
/// # drop(spawner);
/// ```
#[derive(Clone, Debug)]
pub struct TokioSpawner {
    handle: Handle,
}

impl TokioSpawner {
    /// The runtime the caller is running in.
    ///
    /// # Errors
    /// [`SpawnerError::NoRuntime`] when called outside a tokio runtime.
    pub fn current() -> Result<Self, SpawnerError> {
        Handle::try_current()
            .map(Self::from_handle)
            .map_err(|_| SpawnerError::NoRuntime { runtime: "tokio" })
    }

    /// Spawns through `handle`.
    pub fn from_handle(handle: Handle) -> Self {
        Self { handle }
    }
}

impl Spawner for TokioSpawner {
    fn spawn(&self, future: BoxFuture) {
        // Detached: dropping the JoinHandle does not cancel the task.
        drop(self.handle.spawn(future));
    }
}
