//! What a key's value can be beyond "what the fetcher delivered": a default
//! for undelivered keys, and one-to-many rows collected per key.

mod common;

use std::sync::{Arc, Mutex};

use anybatch::{BatchFetcher, LoadError, OneToMany, RowFetcher, Rows};
use common::*;

/// Rows of `key`: `key % 3` of them, `(key, 0)`, `(key, 1)`, ...; a batch
/// holding `fail_on` fails. Records the keys of every call.
struct Comments {
    calls: Calls,
    fail_on: Option<u64>,
}

type Calls = Arc<Mutex<Vec<Vec<u64>>>>;

impl Comments {
    fn new(fail_on: Option<u64>) -> (Self, Calls) {
        let calls = Calls::default();
        (
            Self {
                calls: calls.clone(),
                fail_on,
            },
            calls,
        )
    }
}

impl RowFetcher for Comments {
    type Key = u64;
    type Row = (u64, u64);
    type Error = TestError;

    async fn fetch(&self, keys: &[u64], rows: &mut Rows<u64, (u64, u64)>) -> Result<(), TestError> {
        self.calls.lock().unwrap().push(keys.to_vec());
        if let Some(key) = self.fail_on.filter(|key| keys.contains(key)) {
            return Err(TestError { key });
        }
        // Interleaved across keys, as a `ORDER BY id` result would be.
        for index in 0..2 {
            for &key in keys.iter().filter(|&&key| key % 3 > index) {
                rows.push(key, (key, index));
            }
        }
        rows.push(999, (999, 0)); // a row of a key not asked for: ignored
        Ok(())
    }
}

fn rows_of(key: u64) -> Vec<(u64, u64)> {
    (0..key % 3).map(|index| (key, index)).collect()
}

runtime_tests! {
    /// An undelivered key gets the default value, which is remembered like
    /// a fetched one; delivered keys are unaffected.
    async fn default_value_answers_undelivered_keys(rt: Rt) {
        let (builder, probe) = builder(&rt);
        probe.omit(2);
        let loader = builder.default_value(7).build().unwrap();
        let (one, two) = futures::join!(loader.load(1), loader.load(2));
        assert_eq!((one, two), (Ok(10), Ok(7)));
        assert_eq!(loader.load(2).await, Ok(7));
        assert_eq!(loader.load_each(&[2, 3]).await, vec![Ok(7), Ok(30)]);
        assert_eq!(probe.times_fetched(2), 1, "the default is cached");
        assert_eq!(loader.stats().not_found, 1);
    }

    /// `default_with` makes the value from the key.
    async fn default_with_uses_the_key(rt: Rt) {
        let (builder, probe) = builder(&rt);
        probe.omit(4);
        probe.omit(5);
        let loader = builder.default_with(|key: &u64| key + 1000).build().unwrap();
        assert_eq!(loader.load_many(&[4, 5, 6]).await, Ok(vec![1004, 1005, 60]));
    }

    /// A failed batch is an error, never the default, and is not cached.
    async fn default_is_not_used_for_failures(rt: Rt) {
        let (builder, probe) = builder(&rt);
        probe.fail(3, 1);
        let loader = builder.default_value(0).build().unwrap();
        assert!(matches!(loader.load(3).await, Err(LoadError::Fetch(_))));
        assert_eq!(loader.load(3).await, Ok(30));
    }

    /// Without caching, the default answers each fetch and is not kept.
    async fn default_without_cache_is_not_kept(rt: Rt) {
        let (builder, probe) = builder(&rt);
        probe.omit(8);
        let loader = builder.cache(false).default_value(1).build().unwrap();
        assert_eq!(loader.load(8).await, Ok(1));
        assert_eq!(loader.load(8).await, Ok(1));
        assert_eq!(probe.times_fetched(8), 2);
    }

    /// A key cleared while its fetch runs still gets the default, and it is
    /// not stored.
    async fn default_for_a_key_cleared_in_flight(rt: Rt) {
        let (builder, probe) = builder(&rt);
        probe.omit(9);
        let loader = builder.default_value(5).build().unwrap();
        let gate = probe.close_gate().await;
        let pending = {
            let loader = loader.clone();
            rt.spawn(async move { loader.load(9).await })
        };
        assert_eq!(probe.started().await, [9]);
        loader.clear(&9).await;
        drop(gate);
        assert_eq!(pending.await, Ok(5));
        assert_eq!(loader.load(9).await, Ok(5));
        assert_eq!(probe.times_fetched(9), 2, "the cleared key was not stored");
    }

    /// A panicking `default_with` fails the keys it was making a value for
    /// with `Panicked` (not `Closed`); delivered keys keep their values, and
    /// the loader goes on.
    #[cfg(not(target_arch = "wasm32"))] // wasm32 aborts on a panic: nothing to catch
    async fn panicking_default_fails_its_keys(rt: Rt) {
        let (builder, probe) = builder(&rt);
        probe.omit(2);
        let loader = builder
            .default_with(|key: &u64| if *key == 2 { panic!("no default for 2") } else { 0 })
            .build()
            .unwrap();
        let results = loader.load_each(&[1, 2]).await;
        assert_eq!(results[0], Ok(10));
        assert!(matches!(&results[1], Err(LoadError::Panicked(message)) if message.contains("no default for 2")), "{results:?}");
        assert_eq!(loader.stats().panicked_batches, 1);
        assert_eq!(loader.stats().closed, 0);
        assert_eq!(loader.load(3).await, Ok(30));
    }

    /// One call serves a whole batch of one-to-many keys; each key gets all
    /// its rows in delivery order, a key without rows the empty `Vec`.
    async fn one_to_many_collects_rows_per_key(rt: Rt) {
        let (comments, calls) = Comments::new(None);
        let loader = BatchFetcher::builder(OneToMany::new(comments))
            .spawner(rt.spawner())
            .max_batch_size(6)
            .max_delay(FOREVER)
            .build()
            .unwrap();
        let keys = [1, 2, 3, 4, 5, 6];
        let loads = keys.map(|key| loader.load(key));
        let answers = futures::future::join_all(loads).await;
        for (key, answer) in keys.into_iter().zip(answers) {
            assert_eq!(answer, Ok(rows_of(key)), "rows of {key}");
        }
        assert_eq!(*calls.lock().unwrap(), [vec![1, 2, 3, 4, 5, 6]]);
        // Cached, including the empty ones.
        assert_eq!(loader.load_many(&[3, 5]).await, Ok(vec![vec![], rows_of(5)]));
        assert_eq!(loader.stats().batches, 1);
        assert_eq!(loader.stats().not_found, 0);
    }

    /// A failed one-to-many batch fails its callers and is fetched again.
    async fn one_to_many_failure_is_an_error(rt: Rt) {
        let (comments, calls) = Comments::new(Some(4));
        let loader = BatchFetcher::builder(OneToMany::new(comments))
            .spawner(rt.spawner())
            .build()
            .unwrap();
        assert!(matches!(loader.load(4).await, Err(LoadError::Fetch(error)) if error.key == 4));
        assert!(matches!(loader.load(4).await, Err(LoadError::Fetch(_))));
        assert_eq!(calls.lock().unwrap().len(), 2);
    }
}
