//! The seam between anybatch and whatever executor the application runs.
//!
//! A loader starts two kinds of detached work: one collector task that forms
//! batches, and one task per batch it dispatches. Both go through
//! [`Spawner`], so the crate itself never names a runtime. A batch completed
//! by a request (its `max_batch_size`-th) runs on that request's task
//! instead when an in-flight slot is free (a `submit` spawns it), as does,
//! with `max_delay(ZERO)`, the batch of a request on an idle loader.

#[cfg(feature = "async-std")]
mod async_std;
#[cfg(all(feature = "smol", not(target_arch = "wasm32")))]
mod smol;
#[cfg(feature = "tokio")]
mod tokio;
#[cfg(target_arch = "wasm32")]
mod wasm;

#[cfg(feature = "async-std")]
#[cfg_attr(docsrs, doc(cfg(feature = "async-std")))]
pub use self::async_std::AsyncStdSpawner;
#[cfg(all(feature = "smol", not(target_arch = "wasm32")))]
#[cfg_attr(docsrs, doc(cfg(feature = "smol")))]
pub use self::smol::SmolSpawner;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use self::tokio::TokioSpawner;
#[cfg(target_arch = "wasm32")]
pub use self::wasm::WasmSpawner;

use std::sync::Arc;

use crate::{MaybeSend, MaybeSync};

/// A boxed `'static` future producing `()`: the unit of work a [`Spawner`]
/// starts. `Send` on native targets; on wasm32 it need not be.
#[cfg(not(target_arch = "wasm32"))]
pub type BoxFuture = futures::future::BoxFuture<'static, ()>;
/// A boxed `'static` future producing `()`: the unit of work a [`Spawner`]
/// starts. `Send` on native targets; on wasm32 it need not be.
#[cfg(target_arch = "wasm32")]
pub type BoxFuture = futures::future::LocalBoxFuture<'static, ()>;

/// Starts a future detached on some executor.
///
/// The future must be driven to completion (or dropped, if the executor shuts
/// down: every caller waiting on dropped work is answered with
/// [`LoadError::Closed`](crate::LoadError::Closed), never left hanging).
///
/// Any `Fn(BoxFuture)` closure is a spawner, so an executor anybatch does not
/// know takes one line:
///
/// ```
/// use anybatch::{BoxFuture, Spawner};
/// use futures::executor::ThreadPool;
///
/// let pool = ThreadPool::new().unwrap();
/// let spawner = move |task: BoxFuture| pool.spawn_ok(task);
///
/// let (tx, rx) = futures::channel::oneshot::channel();
/// spawner.spawn(Box::pin(async move { tx.send(42).unwrap() }));
/// assert_eq!(futures::executor::block_on(rx), Ok(42));
/// ```
pub trait Spawner: MaybeSend + MaybeSync + 'static {
    /// Starts `future` and returns at once without waiting for it.
    fn spawn(&self, future: BoxFuture);
}

impl<F> Spawner for F
where
    F: Fn(BoxFuture) + MaybeSend + MaybeSync + 'static,
{
    fn spawn(&self, future: BoxFuture) {
        self(future)
    }
}

/// The spawner a loader uses when the builder was given none: smol's global
/// executor when the `smol` feature is on (native targets), the JavaScript
/// event loop on wasm32, otherwise none.
pub(crate) fn default_spawner() -> Option<Arc<dyn Spawner>> {
    #[cfg(all(feature = "smol", not(target_arch = "wasm32")))]
    {
        Some(Arc::new(SmolSpawner::global()))
    }
    #[cfg(target_arch = "wasm32")]
    {
        Some(Arc::new(WasmSpawner))
    }
    #[cfg(not(any(feature = "smol", target_arch = "wasm32")))]
    {
        None
    }
}
