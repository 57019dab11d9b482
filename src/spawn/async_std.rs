use super::{BoxFuture, Spawner};

/// Spawns on async-std's global executor.
///
/// async-std is deprecated upstream (RUSTSEC-2025-0052) and no longer
/// maintained; this adapter exists for applications that still run on it.
/// New code should prefer smol, which async-std's maintainers recommend.
///
/// ```
/// use anybatch::{AsyncStdSpawner, Spawner};
///
/// let (tx, rx) = futures::channel::oneshot::channel();
/// AsyncStdSpawner.spawn(Box::pin(async move { tx.send(7).unwrap() }));
/// assert_eq!(async_std::task::block_on(rx), Ok(7));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStdSpawner;

impl Spawner for AsyncStdSpawner {
    fn spawn(&self, future: BoxFuture) {
        // Dropping async-std's JoinHandle detaches the task.
        drop(async_std::task::spawn(future));
    }
}
