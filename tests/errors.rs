//! Typed errors: failed and panicking fetches, `NotFound`, per-key results,
//! build validation and the messages errors display.

mod common;

// On wasm32 a plain `#[test]` is skipped without a word.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use anybatch::{BatchFetcher, BuildError, FetcherBuilder, LoadError};
use common::*;

runtime_tests! {
    /// A failed fetch fails every key of its batch with one shared error,
    /// which is not remembered: the next load fetches again and succeeds.
    async fn fetch_error_fails_the_batch_and_is_not_cached(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_batch_size(2).max_delay(FOREVER).build().unwrap();
        probe.fail(1, 1);
        let (one, two) = futures::join!(loader.load(1), loader.load(2));
        assert_eq!(probe.batches().len(), 1, "batches: {:?}", probe.batches());
        let (Err(LoadError::Fetch(one)), Err(LoadError::Fetch(two))) = (one, two) else {
            panic!("expected two fetch errors");
        };
        assert!(Arc::ptr_eq(&one, &two), "each caller got its own error");
        assert_eq!(*one, TestError { key: 1 });
        let error: Error = LoadError::Fetch(one);
        let source = error.source().expect("a fetch error has its cause as source");
        assert_eq!(source.to_string(), TestError { key: 1 }.to_string());

        let (one, two) = futures::join!(loader.load(1), loader.load(2));
        assert_eq!((one, two), (Ok(10), Ok(20)));
        assert_eq!(probe.times_fetched(1), 2);
        assert_eq!(probe.times_fetched(2), 2);
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(probe.batch_count(), 2);
    }

    /// Only the failing batch fails: keys in other batches are answered.
    async fn fetch_error_stays_in_its_batch(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_batch_size(1).build().unwrap();
        probe.fail(1, 1);
        let results = loader.load_each(&[1, 2]).await;
        assert!(matches!(results[0], Err(LoadError::Fetch(_))), "{results:?}");
        assert_eq!(results[1], Ok(20));
    }

    /// A panicking fetch fails its batch with the panic's message; the loader
    /// keeps serving and fetches those keys again.
    #[cfg(not(target_arch = "wasm32"))] // wasm32 aborts on a panic: nothing to catch
    async fn panic_is_isolated_to_its_batch(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_batch_size(2).max_delay(FOREVER).build().unwrap();
        probe.panic(1, 1);
        let (one, two) = futures::join!(loader.load(1), loader.load(2));
        for result in [one, two] {
            match result {
                Err(LoadError::Panicked(message)) => {
                    assert!(message.contains("test fetcher panicked on key 1"), "{message}");
                }
                other => panic!("expected a panic error, got {other:?}"),
            }
        }
        let (one, two) = futures::join!(loader.load(1), loader.load(2));
        assert_eq!((one, two), (Ok(10), Ok(20)));
        assert_eq!(probe.batch_count(), 2);
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(probe.batch_count(), 2);
    }

    /// Many panicking batches in a row do not wear the loader out.
    #[cfg(not(target_arch = "wasm32"))] // wasm32 aborts on a panic: nothing to catch
    async fn loader_survives_repeated_panics(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_in_flight(1).build().unwrap();
        probe.panic(1, 20);
        for _ in 0..20 {
            assert!(matches!(loader.load(1).await, Err(LoadError::Panicked(_))));
        }
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(probe.times_fetched(1), 21);
    }

    /// `load_each` answers each key on its own, in input order.
    async fn load_each_gives_one_result_per_key(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        probe.omit(2);
        let results = loader.load_each(&[3, 2, 1, 2, 3]).await;
        assert_eq!(
            results,
            vec![Ok(30), Err(LoadError::NotFound), Ok(10), Err(LoadError::NotFound), Ok(30)]
        );
        assert_eq!(probe.batch_count(), 1);
        assert_eq!(loader.load_each(&[]).await, vec![]);
    }

    /// `load_many` fails with `NotFound` for an absent key and with the
    /// fetch error for a failed batch.
    async fn load_many_fails_on_any_failed_key(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        probe.omit(2);
        assert_eq!(loader.load_many(&[1, 2, 3]).await, Err(LoadError::NotFound));
        probe.fail(5, 1);
        assert!(matches!(loader.load_many(&[4, 5]).await, Err(LoadError::Fetch(_))));
        assert_eq!(loader.load_many(&[4, 5]).await, Ok(vec![40, 50]));
        assert_eq!(loader.load_many(&[]).await, Ok(vec![]));
    }

    /// `load_many` reports the error of the first failing key in input order.
    async fn load_many_reports_the_first_failure_in_input_order(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_batch_size(1).build().unwrap();
        probe.omit(5);
        probe.fail(6, 2);
        assert_eq!(loader.load_many(&[1, 5, 6]).await, Err(LoadError::NotFound));
        assert!(matches!(loader.load_many(&[1, 6, 5]).await, Err(LoadError::Fetch(_))));
    }

    /// `max_delay` may be as long as one hour.
    async fn one_hour_delay_is_accepted(rt: Rt) {
        let (builder, _probe) = builder(&rt);
        let loader = builder.max_delay(Duration::from_secs(3600)).build().unwrap();
        let load = {
            let loader = loader.clone();
            rt.spawn_polled(async move { loader.load(1).await }).await
        };
        loader.close().await;
        assert_eq!(load.await, Ok(10));
    }
}

/// The setting `configure` sets that `build` rejects (failing if it builds
/// or fails otherwise).
fn rejected_setting(
    configure: impl FnOnce(FetcherBuilder<TestFetcher>) -> FetcherBuilder<TestFetcher>,
) -> &'static str {
    let (fetcher, _probe) = TestFetcher::new();
    match configure(BatchFetcher::builder(fetcher)).build() {
        Err(BuildError::InvalidSetting { setting, .. }) => setting,
        Err(error) => panic!("expected an invalid setting, got {error:?}"),
        Ok(_) => panic!("expected an invalid setting, but the loader was built"),
    }
}

#[test]
fn zero_batch_size_is_rejected() {
    assert_eq!(rejected_setting(|b| b.max_batch_size(0)), "max_batch_size");
}

#[test]
fn zero_in_flight_is_rejected() {
    assert_eq!(rejected_setting(|b| b.max_in_flight(0)), "max_in_flight");
}

#[test]
fn delay_over_an_hour_is_rejected() {
    assert_eq!(
        rejected_setting(|b| b.max_delay(Duration::from_secs(7200))),
        "max_delay"
    );
    assert_eq!(
        rejected_setting(|b| b.max_delay(Duration::from_secs(3600) + Duration::from_nanos(1))),
        "max_delay"
    );
}

#[test]
fn more_than_a_thousand_gather_yields_are_rejected() {
    assert_eq!(rejected_setting(|b| b.gather_yields(1001)), "gather_yields");
}

#[test]
fn load_errors_display_lowercase_phrases() {
    let closed: Error = LoadError::Closed;
    assert_eq!(closed.to_string(), "loader is closed");
    let not_found: Error = LoadError::NotFound;
    assert_eq!(not_found.to_string(), "key not found");
    let fetch: Error = LoadError::Fetch(Arc::new(TestError { key: 1 }));
    assert_eq!(fetch.to_string(), "batch fetch failed");
    let panicked: Error = LoadError::Panicked(Arc::from("boom"));
    assert_eq!(panicked.to_string(), "fetcher panicked: boom");
    assert!(closed.source().is_none());
    assert!(not_found.source().is_none());
}

#[test]
fn build_errors_display_lowercase_phrases() {
    let error = BuildError::InvalidSetting {
        setting: "max_batch_size",
        reason: "must be at least 1",
    };
    assert_eq!(
        error.to_string(),
        "invalid setting `max_batch_size`: must be at least 1"
    );
    let message = BuildError::NoSpawner.to_string();
    assert!(message.starts_with("no spawner"), "{message}");
}

#[test]
fn load_errors_compare_fetch_errors_by_identity() {
    let shared = Arc::new(TestError { key: 1 });
    let a: Error = LoadError::Fetch(shared.clone());
    let b: Error = LoadError::Fetch(shared);
    let c: Error = LoadError::Fetch(Arc::new(TestError { key: 1 }));
    assert_eq!(a, b);
    assert_eq!(a.clone(), a);
    assert_ne!(a, c, "distinct errors compared equal");
    assert_ne!(a, LoadError::NotFound);
    assert_eq!(
        Error::Panicked(Arc::from("x")),
        Error::Panicked(Arc::from("x"))
    );
}
