//! The batch core under shuttle's randomized scheduler: the loader's
//! collector and batch tasks are shuttle tasks (anybatch takes any closure
//! as its spawner), so every run polls them and the test's own tasks in a
//! different order, including orders real executors rarely produce.
//!
//! Shuttle switches tasks where one waits or yields; the fetchers below
//! yield inside a fetch to widen the windows. Timers run on a thread
//! shuttle cannot control, so every loader here uses `max_delay(ZERO)`:
//! batches are triggered by the queue, never by a timer. And with
//! `gather_yields(0)` where others may queue behind a leader: a zero-delay
//! request that leads and yields makes the collector arm a 1 ms grace timer
//! for the requests queued behind it, and a schedule that outlasted it had
//! that timer's thread wake a shuttle task (shuttle then panics; seen once
//! in the deep run); a leader that does not yield starts before any other
//! task runs, so the collector never sees it gathering.
//!
//! Each scenario runs under shuttle's random scheduler and under PCT;
//! `ANYBATCH_SHUTTLE_ITERATIONS` sets the schedules each tries (default
//! 1,000, so 2,000 a scenario).
// The native suite; wasm32 runs tests/wasm.rs.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anybatch::{
    BatchExecutor, BatchFetcher, BoxFuture, ExecuteError, Executor, Fetcher, LoadError, Values,
};
use shuttle::future::{block_on, spawn, yield_now};
use shuttle::rand::RngCore;

fn iterations() -> usize {
    std::env::var("ANYBATCH_SHUTTLE_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000)
}

/// Runs `scenario` under shuttle's uniformly random scheduler, then under
/// PCT, which favours schedules where a few tasks are held back at chosen
/// points (depth 3): `iterations` schedules each.
fn explore<F>(scenario: F, iterations: usize)
where
    F: Fn() + Send + Sync + Clone + 'static,
{
    shuttle::check_random(scenario.clone(), iterations);
    shuttle::check_pct(scenario, iterations, 3);
}

/// Runs the loader's tasks as shuttle tasks.
fn shuttle_spawner(task: BoxFuture) {
    drop(spawn(task)); // detached: the loader answers through its promises
}

/// `key * 10`, after yielding twice mid-fetch; records every batch.
struct Tens {
    batches: Arc<Mutex<Vec<Vec<u64>>>>,
    _alive: Arc<()>,
}

impl Fetcher for Tens {
    type Key = u64;
    type Value = u64;
    type Error = std::io::Error;

    async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
        self.batches.lock().unwrap().push(keys.to_vec());
        yield_now().await;
        yield_now().await;
        values.extend(keys.iter().map(|&key| (key, key * 10)));
        Ok(())
    }
}

struct Probe {
    batches: Arc<Mutex<Vec<Vec<u64>>>>,
    alive: Weak<()>,
}

impl Probe {
    fn times_fetched(&self, key: u64) -> usize {
        let batches = self.batches.lock().unwrap();
        batches.iter().flatten().filter(|&&k| k == key).count()
    }

    fn batch_count(&self) -> usize {
        self.batches.lock().unwrap().len()
    }

    /// Every batch within the cap, each key once.
    fn check_batches(&self, cap: usize) {
        for batch in self.batches.lock().unwrap().iter() {
            let distinct: HashSet<_> = batch.iter().collect();
            assert!(
                batch.len() <= cap && distinct.len() == batch.len(),
                "bad batch {batch:?}"
            );
        }
    }
}

fn loader(max_batch_size: usize, max_in_flight: usize) -> (BatchFetcher<Tens>, Probe) {
    loader_with(Duration::ZERO, 0, max_batch_size, max_in_flight)
}

fn loader_with(
    max_delay: Duration,
    gather_yields: usize,
    max_batch_size: usize,
    max_in_flight: usize,
) -> (BatchFetcher<Tens>, Probe) {
    let batches = Arc::default();
    let alive = Arc::new(());
    let probe = Probe {
        batches: Arc::clone(&batches),
        alive: Arc::downgrade(&alive),
    };
    let loader = BatchFetcher::builder(Tens {
        batches,
        _alive: alive,
    })
    .max_delay(max_delay)
    .gather_yields(gather_yields)
    .max_batch_size(max_batch_size)
    .max_in_flight(max_in_flight)
    .spawner(shuttle_spawner)
    .build()
    .unwrap();
    (loader, probe)
}

/// How often each outcome of a race was seen, so a run can show that both
/// sides of it were explored.
static RACES: Mutex<Vec<(&'static str, u64)>> = Mutex::new(Vec::new());

fn seen(outcome: &'static str) {
    let mut races = RACES.lock().unwrap();
    match races.iter_mut().find(|(name, _)| *name == outcome) {
        Some((_, count)) => *count += 1,
        None => races.push((outcome, 1)),
    }
}

fn seen_count(outcome: &str) -> u64 {
    let races = RACES.lock().unwrap();
    let count = races.iter().find(|(name, _)| *name == outcome);
    let count = count.map_or(0, |(_, n)| *n);
    println!(
        "shuttle: {outcome}: {count} of {} schedules",
        2 * iterations()
    );
    count
}

/// Loads of one key from three tasks, one of which clears it first: every
/// load gets the value, the key is fetched at most twice (once more only
/// because of the clear), and afterwards it is remembered.
#[test]
fn concurrent_loads_joins_and_clears() {
    explore(
        || {
            block_on(async {
                let (loader, probe) = loader(2, 2);
                let each = {
                    let loader = loader.clone();
                    spawn(async move { loader.load_each(&[1, 2]).await })
                };
                let one = {
                    let loader = loader.clone();
                    spawn(async move { loader.load(1).await })
                };
                let cleared = {
                    let loader = loader.clone();
                    spawn(async move {
                        yield_now().await;
                        loader.clear(&1).await;
                        loader.load(1).await
                    })
                };
                assert_eq!(each.await.unwrap(), vec![Ok(10), Ok(20)]);
                assert_eq!(one.await.unwrap(), Ok(10));
                assert_eq!(cleared.await.unwrap(), Ok(10));
                let fetches = probe.times_fetched(1);
                assert!((1..=2).contains(&fetches), "key 1 fetched {fetches} times");
                seen(if fetches == 2 {
                    "refetched after clear"
                } else {
                    "one fetch"
                });
                assert_eq!(probe.times_fetched(2), 1);
                probe.check_batches(2);
                let batches = probe.batch_count();
                assert_eq!(loader.load(1).await, Ok(10));
                assert_eq!(probe.batch_count(), batches, "remembered afterwards");
                // Ends the loader's tasks before the schedule ends.
                loader.close().await;
            })
        },
        iterations(),
    );
    assert!(seen_count("one fetch") > 0);
    seen_count("refetched after clear");
}

/// `close` racing a load: the load gets its value or `Closed`, never
/// hangs; close returns; the fetch ran only for a load that got a value;
/// dropping the loader drops the fetcher.
#[test]
fn close_races_an_in_flight_load() {
    explore(
        || {
            block_on(async {
                let (loader, probe) = loader(4, 1);
                let load = {
                    let loader = loader.clone();
                    spawn(async move { loader.load(1).await })
                };
                let closer = {
                    let loader = loader.clone();
                    spawn(async move { loader.close().await })
                };
                let answer = load.await.unwrap();
                closer.await.unwrap();
                match answer {
                    Ok(10) => {
                        assert_eq!(probe.times_fetched(1), 1);
                        seen("load before close");
                    }
                    Err(LoadError::Closed) => {
                        assert_eq!(probe.times_fetched(1), 0);
                        seen("close before load");
                    }
                    other => panic!("unexpected answer {other:?}"),
                }
                // Closed: known keys still answer, unknown ones are refused.
                assert_eq!(loader.load(2).await, Err(LoadError::Closed));
                // `close` returned, so every task of the loader has ended:
                // the handle is the fetcher's last owner.
                drop(loader);
                assert_eq!(probe.alive.strong_count(), 0, "fetcher outlived the loader");
            })
        },
        iterations(),
    );
    assert!(seen_count("load before close") > 0 && seen_count("close before load") > 0);
}

/// A load that leads its batch (idle loader, no delay) is dropped after a
/// random number of polls while another task loads the same key: that
/// load is answered, and the key is fetched exactly once. The leader
/// yields once, so it can be dropped while gathering; nothing queues behind
/// it (the other load joins), so the collector arms no timer.
#[test]
fn dropped_leader_still_answers_the_joiner() {
    explore(
        || {
            block_on(async {
                let (loader, probe) = loader_with(Duration::ZERO, 1, 4, 2);
                let polls = shuttle::rand::thread_rng().next_u64() % 4 + 1;
                let leader = {
                    let loader = loader.clone();
                    spawn(async move {
                        let mut load = Box::pin(loader.load(1));
                        for _ in 0..polls {
                            if futures::poll!(load.as_mut()).is_ready() {
                                return "leader answered";
                            }
                            yield_now().await;
                        }
                        // Dropped while leading, gathering, fetching or joined.
                        "leader dropped unanswered"
                    })
                };
                let joiner = {
                    let loader = loader.clone();
                    spawn(async move { loader.load(1).await })
                };
                seen(leader.await.unwrap());
                assert_eq!(joiner.await.unwrap(), Ok(10));
                assert_eq!(probe.times_fetched(1), 1);
                loader.close().await;
            })
        },
        iterations(),
    );
    assert!(seen_count("leader dropped unanswered") > 0);
    seen_count("leader answered");
}

/// Full batches only: with an hour's delay, 15 tasks load a key each
/// (batches of 3, one slot in flight). Whoever takes each batch, the
/// collector or the load completing it, every batch is full and every load
/// answered: a batch left short would wait an hour, which shuttle reports
/// as a deadlock. (The hour's timer is armed, never fired.) Shuttle switches
/// tasks only where they wait, never inside a std mutex section or between a
/// push and its take, so races on those (a collector cutting a batch short
/// after a load took the one it counted) are left to the batching suite on
/// real threads.
#[test]
fn full_batches_are_taken_whole_by_the_collector_or_a_load() {
    const KEYS: u64 = 15;
    explore(
        || {
            block_on(async {
                let (loader, probe) = loader_with(Duration::from_secs(3600), 0, 3, 1);
                let loads: Vec<_> = (0..KEYS)
                    .map(|key| {
                        let loader = loader.clone();
                        spawn(async move {
                            for _ in 0..shuttle::rand::thread_rng().next_u64() % 3 {
                                yield_now().await;
                            }
                            loader.load(key).await
                        })
                    })
                    .collect();
                for (key, load) in (0..KEYS).zip(loads) {
                    assert_eq!(load.await.unwrap(), Ok(key * 10));
                }
                let batches = probe.batches.lock().unwrap().clone();
                assert!(batches.iter().all(|batch| batch.len() == 3), "{batches:?}");
                probe.check_batches(3);
                loader.close().await;
            })
        },
        iterations(),
    );
}

/// Doubles values and records each one it ran.
struct Doubler(Arc<Mutex<Vec<u64>>>);

impl Executor for Doubler {
    type Value = u64;
    type Output = u64;
    type Error = std::io::Error;

    async fn execute(&self, values: &[u64]) -> Result<Vec<u64>, Self::Error> {
        self.0.lock().unwrap().extend_from_slice(values);
        yield_now().await;
        Ok(values.iter().map(|v| v * 2).collect())
    }
}

/// `shutdown_now` racing executes and a submit: no value both runs and is
/// handed back, none is lost, none runs twice; a caller gets its output
/// exactly when its value ran, `Closed` otherwise.
#[test]
fn shutdown_now_races_queued_values() {
    explore(
        || {
            block_on(async {
                let ran = Arc::new(Mutex::new(Vec::new()));
                let executor = BatchExecutor::builder(Doubler(ran.clone()))
                    .max_delay(Duration::ZERO)
                    .gather_yields(0)
                    .max_batch_size(1)
                    .max_in_flight(1)
                    .spawner(shuttle_spawner)
                    .build()
                    .unwrap();
                let executes: Vec<_> = [1u64, 2]
                    .into_iter()
                    .map(|value| {
                        let executor = executor.clone();
                        spawn(async move { (value, executor.execute(value).await) })
                    })
                    .collect();
                let submitted = {
                    let executor = executor.clone();
                    spawn(async move { executor.submit(3).await.is_ok() })
                };
                let stopper = {
                    let executor = executor.clone();
                    spawn(async move {
                        yield_now().await;
                        executor.shutdown_now().await
                    })
                };
                let handed_back = stopper.await.unwrap();
                let mut answers = Vec::new();
                for execute in executes {
                    answers.push(execute.await.unwrap());
                }
                let accepted = submitted.await.unwrap();
                // Batches already running finish on their own; close waits
                // for them.
                executor.close().await;
                let ran = ran.lock().unwrap().clone();
                let ran_set: HashSet<u64> = ran.iter().copied().collect();
                assert_eq!(ran_set.len(), ran.len(), "a value ran twice: {ran:?}");
                for &value in &handed_back {
                    assert!(!ran_set.contains(&value), "{value} ran and was handed back");
                }
                for (value, answer) in answers {
                    match answer {
                        Ok(output) => {
                            assert_eq!(output, value * 2);
                            assert!(ran_set.contains(&value));
                        }
                        Err(ExecuteError::Closed) => assert!(!ran_set.contains(&value)),
                        Err(other) => panic!("unexpected {other:?}"),
                    }
                }
                let placed = ran_set.contains(&3) || handed_back.contains(&3);
                assert_eq!(placed, accepted, "submitted value 3 lost or invented");
                seen(match handed_back.len() {
                    0 => "nothing handed back",
                    _ => "values handed back",
                });
            })
        },
        iterations(),
    );
    assert!(seen_count("nothing handed back") > 0 && seen_count("values handed back") > 0);
}

/// The checks are live: a wrong expectation fails under shuttle too.
#[test]
#[should_panic(expected = "key 1 fetched")]
fn a_wrong_expectation_fails_under_shuttle() {
    explore(
        || {
            block_on(async {
                let (loader, probe) = loader(2, 2);
                assert_eq!(loader.load(1).await, Ok(10));
                let fetches = probe.times_fetched(1);
                assert_eq!(fetches, 0, "key 1 fetched {fetches} times");
            })
        },
        10,
    );
}
