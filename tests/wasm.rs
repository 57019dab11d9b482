//! anybatch on wasm32, in Node and in a browser: batching with `!Send`
//! fetchers whose backend is a JavaScript promise, timers, dedup, errors and
//! the executor. Run by `.ci/wasm.sh` through `wasm-bindgen-test-runner`.
#![cfg(target_arch = "wasm32")]

mod common;

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use anybatch::{BatchExecutor, BatchFetcher, Executor, Fetcher, LoadError, Values};
use common::{js_sleep, run_wasm};
use futures::future::join_all;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test as test;

#[derive(Debug)]
struct BackendDown;

impl fmt::Display for BackendDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("backend is down")
    }
}

impl std::error::Error for BackendDown {}

/// Squares keys after a JavaScript timeout. Holds `Rc`s, so it is `!Send`:
/// only possible because the bounds vanish on wasm32.
#[derive(Clone, Default)]
struct JsSquares {
    batches: Rc<RefCell<Vec<Vec<u32>>>>,
}

impl Fetcher for JsSquares {
    type Key = u32;
    type Value = Rc<u32>;
    type Error = BackendDown;

    async fn fetch(
        &self,
        keys: &[u32],
        values: &mut Values<u32, Rc<u32>>,
    ) -> Result<(), BackendDown> {
        self.batches.borrow_mut().push(keys.to_vec());
        js_sleep(5).await;
        if keys.contains(&666) {
            return Err(BackendDown);
        }
        values.extend(
            keys.iter()
                .filter(|&&key| key != 13)
                .map(|&key| (key, Rc::new(key * key))),
        );
        Ok(())
    }
}

fn squares(fetcher: &JsSquares) -> BatchFetcher<JsSquares> {
    BatchFetcher::builder(fetcher.clone())
        .build()
        .expect("the default spawner on wasm32")
}

#[test]
async fn concurrent_loads_share_one_js_backed_fetch() {
    run_wasm(|_| async {
        let fetcher = JsSquares::default();
        let loader = squares(&fetcher);
        let values = join_all([3, 4, 3, 5].map(|key| loader.load(key))).await;
        let values: Vec<u32> = values.into_iter().map(|value| *value.unwrap()).collect();
        assert_eq!(values, [9, 16, 9, 25]);
        assert_eq!(*fetcher.batches.borrow(), [vec![3, 4, 5]]);
        // Known now: no further fetch.
        assert_eq!(*loader.load(4).await.unwrap(), 16);
        assert_eq!(fetcher.batches.borrow().len(), 1);
    })
    .await;
}

#[test]
async fn a_load_joins_the_fetch_already_running() {
    run_wasm(|_| async {
        let fetcher = JsSquares::default();
        // Without a cache, a load that came too late to join would fetch
        // again.
        let loader = BatchFetcher::builder(fetcher.clone())
            .cache(false)
            .build()
            .unwrap();
        let late = async {
            // Until the first fetch runs (it then waits on its timeout).
            while fetcher.batches.borrow().is_empty() {
                js_sleep(0).await;
            }
            loader.load(7).await
        };
        let (first, second) = futures::join!(loader.load(7), late);
        assert_eq!((*first.unwrap(), *second.unwrap()), (49, 49));
        assert_eq!(*fetcher.batches.borrow(), [vec![7]]);
    })
    .await;
}

#[test]
async fn delay_timers_fire_on_wasm() {
    run_wasm(|_| async {
        let fetcher = JsSquares::default();
        let loader = BatchFetcher::builder(fetcher.clone())
            .max_delay(Duration::from_millis(20))
            .max_batch_size(100)
            .build()
            .unwrap();
        // A partial batch is dispatched when its delay ends: the timer fired.
        let values = join_all([1, 2].map(|key| loader.load(key))).await;
        assert!(values.iter().all(Result::is_ok));
        assert_eq!(fetcher.batches.borrow().len(), 1);
    })
    .await;
}

#[test]
async fn errors_and_missing_keys_are_typed() {
    run_wasm(|_| async {
        let fetcher = JsSquares::default();
        let loader = squares(&fetcher);
        let results = loader.load_each(&[13, 2]).await;
        assert_eq!(results[0], Err(LoadError::NotFound));
        assert_eq!(results[1].as_deref(), Ok(&4));
        match loader.load(666).await {
            Err(LoadError::Fetch(error)) => assert_eq!(error.to_string(), "backend is down"),
            other => panic!("expected the batch error, got {other:?}"),
        }
    })
    .await;
}

/// Appends values to a JavaScript array (`!Send`), returning their index.
struct JsLog {
    array: js_sys::Array,
}

impl Executor for JsLog {
    type Value = String;
    type Output = u32;
    type Error = BackendDown;

    async fn execute(&self, lines: &[String]) -> Result<Vec<u32>, BackendDown> {
        js_sleep(1).await;
        Ok(lines
            .iter()
            .map(|line| self.array.push(&JsValue::from_str(line)) - 1)
            .collect())
    }
}

#[test]
async fn executor_batches_and_drains_on_close() {
    run_wasm(|_| async {
        let array = js_sys::Array::new();
        let log = BatchExecutor::builder(JsLog {
            array: array.clone(),
        })
        .build()
        .unwrap();
        let (a, b) = futures::join!(log.execute("a".into()), log.execute("b".into()));
        assert_eq!((a.unwrap(), b.unwrap()), (0, 1));
        for line in ["c", "d", "e"] {
            log.submit(line.into()).await.unwrap();
        }
        log.close().await;
        assert_eq!(array.length(), 5);
        assert_eq!(log.stats().queued, 5);
    })
    .await;
}
