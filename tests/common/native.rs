//! Running a test body on the native runtimes: each body is a task of a
//! multi-threaded runtime, watched from the test thread.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{select, Either};
use futures::FutureExt;
use futures_timer::Delay;

use super::{Rt, HANG_LIMIT};

/// Wraps a test body: catches its panic so the test thread can resume it.
fn guarded<Fut>(body: Fut) -> impl Future<Output = std::thread::Result<()>> + Send + 'static
where
    Fut: Future<Output = ()> + Send + 'static,
{
    AssertUnwindSafe(body).catch_unwind()
}

/// Waits for the body's task on the test thread, failing after `limit`, and
/// resumes the body's panic.
async fn finish<J>(runtime: &str, limit: Duration, task: J)
where
    J: Future<Output = std::thread::Result<()>>,
{
    match select(pin!(task), Delay::new(limit)).await {
        Either::Left((Ok(()), _)) => {}
        Either::Left((Err(panic), _)) => std::panic::resume_unwind(panic),
        Either::Right(_) => panic!("test hung on {runtime} (no end after {limit:?})"),
    }
}

/// Runs `body` as a task of a dedicated smol executor driven by two threads.
pub fn run_smol<Fut>(body: impl FnOnce(Rt) -> Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    run_smol_within(HANG_LIMIT, body);
}

/// [`run_smol`] with a hang limit of `limit` instead of [`HANG_LIMIT`].
pub fn run_smol_within<Fut>(limit: Duration, body: impl FnOnce(Rt) -> Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let executor = Arc::new(smol::Executor::<'static>::new());
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let threads: Vec<_> = (0..2)
        .map(|index| {
            let executor = executor.clone();
            let stopped = stopped.clone();
            std::thread::Builder::new()
                .name(format!("smol-test-{index}"))
                .spawn(move || smol::block_on(executor.run(stopped.recv())))
                .expect("start an executor thread")
        })
        .collect();
    let rt = Rt::Smol(anybatch::SmolSpawner::on(executor.clone()));
    let task = executor.spawn(guarded(body(rt)));
    smol::block_on(finish("smol", limit, task));
    drop(stop);
    for thread in threads {
        let _ = thread.join();
    }
}

/// Runs `body` as a task of a two-worker tokio runtime.
#[cfg(feature = "tokio")]
pub fn run_tokio<Fut>(body: impl FnOnce(Rt) -> Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    run_tokio_within(HANG_LIMIT, body);
}

/// [`run_tokio`] with a hang limit of `limit` instead of [`HANG_LIMIT`].
#[cfg(feature = "tokio")]
pub fn run_tokio_within<Fut>(limit: Duration, body: impl FnOnce(Rt) -> Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("build a tokio runtime");
    let rt = Rt::Tokio(anybatch::TokioSpawner::from_handle(
        runtime.handle().clone(),
    ));
    let task = runtime.spawn(guarded(body(rt)));
    let task = task.map(|joined| match joined {
        Ok(outcome) => outcome,
        Err(error) if error.is_panic() => Err(error.into_panic()),
        Err(error) => panic!("the test body's task failed: {error}"),
    });
    runtime.block_on(finish("tokio", limit, task));
    runtime.shutdown_background();
}

/// Runs `body` as a task of async-std's global executor.
#[cfg(feature = "async-std")]
pub fn run_async_std<Fut>(body: impl FnOnce(Rt) -> Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let rt = Rt::AsyncStd(anybatch::AsyncStdSpawner);
    let task = async_std::task::spawn(guarded(body(rt)));
    async_std::task::block_on(finish("async-std", HANG_LIMIT, task));
}
