use std::fmt;
use std::sync::Arc;

use super::{BoxFuture, Spawner};

/// Spawns on smol: its global executor, or an executor you run yourself.
///
/// This is the default spawner when the `smol` feature is on.
///
/// ```
/// use std::sync::Arc;
/// use anybatch::SmolSpawner;
///
/// // The global executor (smol starts its threads on first use).
/// let global = SmolSpawner::global();
///
/// // An executor of your own, run by your own threads.
/// let executor = Arc::new(smol::Executor::new());
/// let mine = SmolSpawner::on(executor.clone());
/// # let _ = (global, mine);
/// ```
#[derive(Clone, Default)]
pub struct SmolSpawner {
    executor: Option<Arc<smol::Executor<'static>>>,
}

impl SmolSpawner {
    /// Spawns on smol's global executor (`smol::spawn`).
    pub fn global() -> Self {
        Self { executor: None }
    }

    /// Spawns on `executor`; the application must keep running it
    /// (`executor.run(..)` on some thread) for batches to make progress.
    pub fn on(executor: Arc<smol::Executor<'static>>) -> Self {
        Self {
            executor: Some(executor),
        }
    }
}

impl Spawner for SmolSpawner {
    fn spawn(&self, future: BoxFuture) {
        match &self.executor {
            Some(executor) => executor.spawn(future).detach(),
            None => smol::spawn(future).detach(),
        }
    }
}

impl fmt::Debug for SmolSpawner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = if self.executor.is_some() {
            "executor"
        } else {
            "global"
        };
        f.debug_tuple("SmolSpawner").field(&target).finish()
    }
}
