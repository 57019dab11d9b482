//! Starting a batch: counted, traced, holding its in-flight slot. Used by the
//! collector, and by a caller that runs a batch on its own task (a [`Lead`]).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use async_channel::Sender;
use async_lock::{Semaphore, SemaphoreGuardArc};
use futures::FutureExt;

use super::backlog::Backlog;
use super::{BatchLimits, RunBatch};
use crate::spawn::{BoxFuture, Spawner};
use crate::stats::Counters;
use crate::trace::BatchSpan;

/// What starting a batch takes, shared by the collector and by callers
/// that run a batch themselves.
pub(super) struct Dispatch<R: RunBatch> {
    pub(super) runner: Arc<R>,
    pub(super) limits: BatchLimits,
    pub(super) spawner: Arc<dyn Spawner>,
    pub(super) counters: Arc<Counters>,
    pub(super) label: Option<Arc<str>>,
    pub(super) in_flight: Arc<Semaphore>,
    /// Set while a caller gathers a batch it will run itself.
    pub(super) leading: AtomicBool,
    /// The queue, for a leading caller to gather from.
    pub(super) queued: Arc<Backlog<R::Item>>,
}

impl<R: RunBatch> Dispatch<R> {
    /// The future of one batch: counted, traced, holding its in-flight slot
    /// and the loader's liveness until it ends. A panic the layer did not
    /// catch (a value's `Clone`, say) stays inside; the items it dropped
    /// answer their callers.
    pub(super) fn batch(
        &self,
        batch: Vec<R::Item>,
        permit: SemaphoreGuardArc,
        alive: Sender<()>,
    ) -> BoxFuture {
        self.counters.record_batch(batch.len());
        let span = BatchSpan::new(self.label.as_deref(), batch.len());
        let run = span.instrument(self.runner.clone().run(batch, span.clone()));
        // Built whole, then boxed: an `async` block would move `run` once
        // more, into the unwinding guard, at its first poll.
        Box::pin(
            AssertUnwindSafe(run)
                .catch_unwind()
                .map(move |_| drop((permit, alive))),
        )
    }
}

/// A batch run on the caller's task: the batch of a lone request on an idle
/// loader (see `Queue::try_lead`), or a full batch its last request took
/// (see `Queue::push`).
pub(crate) struct Lead<R: RunBatch> {
    pub(super) dispatch: Arc<Dispatch<R>>,
    pub(super) state: LeadState<R::Item>,
    /// Holds `dispatch.leading`, and gathers what queues until it starts.
    pub(super) idle: bool,
}

pub(super) enum LeadState<T> {
    Gathering {
        batch: Vec<T>,
        permit: SemaphoreGuardArc,
        alive: Sender<()>,
        /// Yields still to make before running (see `gather_yields`).
        yields_left: usize,
    },
    Running(BoxFuture),
    Done,
}

impl<R: RunBatch> Lead<R> {
    /// A batch for a caller to run: an idle lead (see `Queue::try_lead`)
    /// yields `gather_yields` times and gathers what queued meanwhile; a
    /// full batch taken by its last request starts at once.
    #[inline]
    pub(super) fn gathering(
        dispatch: &Arc<Dispatch<R>>,
        batch: Vec<R::Item>,
        permit: SemaphoreGuardArc,
        alive: Sender<()>,
        idle: bool,
    ) -> Self {
        let yields_left = if idle {
            dispatch.limits.gather_yields
        } else {
            0
        };
        Lead {
            dispatch: dispatch.clone(),
            state: LeadState::Gathering {
                batch,
                permit,
                alive,
                yields_left,
            },
            idle,
        }
    }

    /// Takes what queued meanwhile into the batch and starts it; `None`
    /// once started, or when nothing is left to run (a lead of many items
    /// whose items all went in whole batches).
    fn start(&mut self) -> Option<BoxFuture> {
        let LeadState::Gathering {
            mut batch,
            permit,
            alive,
            ..
        } = std::mem::replace(&mut self.state, LeadState::Done)
        else {
            return None;
        };
        let dispatch = &self.dispatch;
        if self.idle {
            // The collector left what queued meanwhile to this batch; what
            // did not fit is its again once the flag is down.
            dispatch
                .queued
                .fill_and_release(&mut batch, dispatch.limits.max_batch_size, || {
                    dispatch.leading.store(false, Ordering::Release)
                });
        }
        // Empty: the slot and the liveness are let go of here.
        (!batch.is_empty()).then(|| dispatch.batch(batch, permit, alive))
    }
}

// Nothing in a `Lead` relies on being pinned: the batch future is boxed.
impl<R: RunBatch> Unpin for Lead<R> {}

impl<R: RunBatch> Future for Lead<R> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let max_batch_size = this.dispatch.limits.max_batch_size;
        if let LeadState::Gathering {
            batch, yields_left, ..
        } = &mut this.state
        {
            // Yield so that loads polled meanwhile queue rather than lead,
            // unless the batch is already full and nobody could join it.
            if *yields_left > 0 && batch.len() < max_batch_size {
                *yields_left -= 1;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            match this.start() {
                Some(run) => this.state = LeadState::Running(run),
                None => return Poll::Ready(()),
            }
        }
        let LeadState::Running(run) = &mut this.state else {
            return Poll::Ready(());
        };
        ready!(run.as_mut().poll(cx));
        this.state = LeadState::Done;
        Poll::Ready(())
    }
}

/// Runs the batches one caller completed (`load_many`, `execute_many`), side
/// by side on its task, so that they overlap as the collector's would.
pub(crate) async fn run_side_by_side<R: RunBatch>(leads: Vec<Lead<R>>) {
    if !leads.is_empty() {
        futures::future::join_all(leads).await;
    }
}

impl<R: RunBatch> Drop for Lead<R> {
    fn drop(&mut self) {
        // The caller gave up: the batch still answers everyone in it.
        let run = match std::mem::replace(&mut self.state, LeadState::Done) {
            LeadState::Running(run) => Some(run),
            gathering @ LeadState::Gathering { .. } => {
                self.state = gathering;
                self.start()
            }
            LeadState::Done => None,
        };
        if let Some(run) = run {
            self.dispatch.spawner.spawn(run);
        }
    }
}
