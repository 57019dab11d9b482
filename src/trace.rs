//! Optional `tracing` instrumentation: one span per batch, named
//! `anybatch.batch`, with the loader's label, the batch size and its outcome.
//! Without the `tracing` feature this is a zero-sized no-op.

use std::future::Future;

/// The span of one batch, handed to the layer so it can record the outcome.
#[derive(Clone, Debug)]
pub(crate) struct BatchSpan {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl BatchSpan {
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn new(label: Option<&str>, size: usize) -> Self {
        Self {
            #[cfg(feature = "tracing")]
            span: tracing::info_span!(
                "anybatch.batch",
                label = label.unwrap_or(""),
                size,
                outcome = tracing::field::Empty,
            ),
        }
    }

    /// Runs `batch` inside this span.
    pub(crate) fn instrument<F: Future>(&self, batch: F) -> impl Future<Output = F::Output> {
        #[cfg(feature = "tracing")]
        return tracing::Instrument::instrument(batch, self.span.clone());
        #[cfg(not(feature = "tracing"))]
        batch
    }

    /// Records how the batch ended: `"ok"`, `"error"`, `"panicked"` or
    /// `"result_count"`.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn outcome(&self, outcome: &'static str) {
        #[cfg(feature = "tracing")]
        self.span.record("outcome", outcome);
    }
}
