//! Optional `tracing` instrumentation: one span per batch, named
//! `anybatch.batch`, with the loader's label, the batch size and its outcome.
//! Without the `tracing` feature every function here compiles to nothing.

#[cfg(feature = "tracing")]
pub(crate) fn instrument<F: std::future::Future>(
    batch: F,
    label: Option<&str>,
    size: usize,
) -> tracing::instrument::Instrumented<F> {
    let span = tracing::info_span!(
        "anybatch.batch",
        label = label.unwrap_or(""),
        size,
        outcome = tracing::field::Empty,
    );
    tracing::Instrument::instrument(batch, span)
}

#[cfg(not(feature = "tracing"))]
pub(crate) fn instrument<F: std::future::Future>(
    batch: F,
    _label: Option<&str>,
    _size: usize,
) -> F {
    batch
}

/// Records how the current batch ended: `"ok"`, `"error"`, `"panicked"` or
/// `"result_count"`.
pub(crate) fn outcome(outcome: &'static str) {
    #[cfg(feature = "tracing")]
    tracing::Span::current().record("outcome", outcome);
    #[cfg(not(feature = "tracing"))]
    let _ = outcome;
}
