//! With the `tracing` feature, every batch is one `anybatch.batch` span
//! carrying the loader's label, the batch size and the outcome.
#![cfg(all(feature = "tracing", not(target_arch = "wasm32")))]

mod common;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// The fields of every span named `anybatch.batch`, by span id.
#[derive(Default)]
struct Spans {
    next_id: AtomicU64,
    fields: Mutex<HashMap<u64, HashMap<String, String>>>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for &'static Spans {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.name() == "anybatch.batch"
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let mut fields = HashMap::new();
        span.record(&mut Fields(&mut fields));
        self.fields.lock().unwrap().insert(id, fields);
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some(fields) = self.fields.lock().unwrap().get_mut(&span.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn spans() -> &'static Spans {
    static SPANS: OnceLock<&'static Spans> = OnceLock::new();
    SPANS.get_or_init(|| {
        let spans: &'static Spans = Box::leak(Box::default());
        tracing::subscriber::set_global_default(spans).expect("the only subscriber");
        spans
    })
}

/// The spans of the loader labelled `label`.
fn spans_of(label: &str) -> Vec<HashMap<String, String>> {
    let fields = spans().fields.lock().unwrap();
    fields
        .values()
        .filter(|span| span.get("label").map(String::as_str) == Some(label))
        .cloned()
        .collect()
}

runtime_tests! {
    async fn one_span_per_batch_with_label_size_and_outcome(rt: Rt) {
        spans();
        let label = format!("traced-{}", rt.name());
        let (builder, probe) = builder(&rt);
        probe.fail(9, 1);
        let loader = builder.label(label.clone()).max_batch_size(2).max_delay(FOREVER).build().unwrap();
        loader.load_many(&[1, 2]).await.unwrap();
        assert!(loader.load_many(&[9, 10]).await.is_err());
        loader.close().await;
        eventually(Duration::from_secs(10), "both spans recorded", || spans_of(&label).len() == 2).await;
        let mut outcomes: Vec<(String, String)> = spans_of(&label)
            .into_iter()
            .map(|span| (span["size"].clone(), span.get("outcome").cloned().unwrap_or_default()))
            .collect();
        outcomes.sort();
        assert_eq!(outcomes, [("2".to_owned(), "error".to_owned()), ("2".to_owned(), "ok".to_owned())]);
    }
}
