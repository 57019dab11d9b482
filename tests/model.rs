//! Model test: random sequences of loads, primes, clears, cancellations,
//! stall releases and closes against a scripted fetcher, checked step by
//! step against a reference model of the identity map.
//!
//! Everything runs on one thread (a `LocalPool`, fed by a closure spawner),
//! so a case is deterministic: after each operation the pool runs until
//! every task waits, and the model is compared with what happened. Cases
//! default to 1,000; `PROPTEST_CASES=100000` raises them.
// The native suite; wasm32 runs tests/wasm.rs.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::Duration;

use anybatch::{BatchFetcher, BoxFuture, Fetcher, LoadError, Values};
use common::quiet_panics::{silence_scripted_panics, SCRIPTED};
use common::LiveTasks;
use futures::channel::oneshot;
use futures::executor::LocalPool;
use futures::future::RemoteHandle;
use futures::task::LocalSpawnExt;
use futures::FutureExt;
use proptest::prelude::*;

/// Keys are `0..KEYS`: few, so that loads meet, join and collide.
const KEYS: u8 = 5;

// ---------------------------------------------------------------------------
// The script: what the fetcher does, batch by batch and key by key
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
enum Fault {
    #[default]
    None,
    Error,
    Panic,
}

/// What the n-th batch does.
#[derive(Debug, Clone, Default)]
struct BatchPlan {
    fault: Fault,
    /// Keys (bit `k`) this batch does not deliver.
    omit: u8,
    /// Waits until the test releases it.
    stall: bool,
}

#[derive(Debug, Clone)]
struct Script {
    /// Batch `n` (from 1, in start order) follows `plans[n - 1]`; later
    /// batches succeed at once.
    plans: Vec<BatchPlan>,
    /// The first batch holding key `k` suffers `first_fetch[k]` as well.
    first_fetch: Vec<Fault>,
    /// Keys never delivered by any batch.
    never: u8,
}

/// What a batch did, as the fetcher recorded it.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Delivered { omitted: u8 },
    Failed,
    Panicked,
}

#[derive(Debug, Clone)]
enum Event {
    Start { batch: u32, keys: Vec<u8> },
    End { batch: u32, ending: Ending },
}

/// Why a scripted batch failed: names the batch, so a caller's error says
/// which fetch answered it.
#[derive(Debug)]
struct Refused {
    batch: u32,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scripted failure of batch {}", self.batch)
    }
}

impl std::error::Error for Refused {}

/// The value batch `batch` delivers for `key`: tells which fetch answered.
fn fetched_value(key: u8, batch: u32) -> u64 {
    u64::from(key) * 100_000 + u64::from(batch)
}

/// The value primed at step `step`: never equal to a fetched one.
fn primed_value(key: u8, step: usize) -> u64 {
    u64::from(key) * 100_000 + 50_000 + step as u64
}

struct Shared {
    script: Script,
    events: Mutex<Vec<Event>>,
    started: AtomicUsize,
    fetched_before: Mutex<HashSet<u8>>,
    /// Releases of stalled batches, in stall order.
    stalled: Mutex<Vec<(u32, oneshot::Sender<()>)>>,
}

struct ScriptedFetcher {
    shared: Arc<Shared>,
    /// The probe's `Weak` to this shows when the loader dropped the fetcher.
    _alive: Arc<()>,
}

impl Fetcher for ScriptedFetcher {
    type Key = u8;
    type Value = u64;
    type Error = Refused;

    async fn fetch(&self, keys: &[u8], values: &mut Values<u8, u64>) -> Result<(), Refused> {
        let shared = &*self.shared;
        let batch = shared.started.fetch_add(1, Ordering::SeqCst) as u32 + 1;
        let plan = shared
            .script
            .plans
            .get(batch as usize - 1)
            .cloned()
            .unwrap_or_default();
        shared.events.lock().unwrap().push(Event::Start {
            batch,
            keys: keys.to_vec(),
        });
        let mut fault = plan.fault;
        {
            let mut before = shared.fetched_before.lock().unwrap();
            for &key in keys {
                if before.insert(key) {
                    fault = fault.max(shared.script.first_fetch[usize::from(key)]);
                }
            }
        }
        if plan.stall {
            count(|f| f.stalled += 1);
            let (release, released) = oneshot::channel();
            shared.stalled.lock().unwrap().push((batch, release));
            let _ = released.await;
        }
        let omitted = plan.omit | shared.script.never;
        let ending = match fault {
            Fault::None => Ending::Delivered { omitted },
            Fault::Error => Ending::Failed,
            Fault::Panic => Ending::Panicked,
        };
        shared
            .events
            .lock()
            .unwrap()
            .push(Event::End { batch, ending });
        match fault {
            Fault::Panic => panic!("{SCRIPTED} in batch {batch}"),
            Fault::Error => Err(Refused { batch }),
            Fault::None => {
                let found = keys.iter().filter(|&&key| omitted & (1 << key) == 0);
                values.extend(found.map(|&key| (key, fetched_value(key, batch))));
                Ok(())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Operations and cases
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Load(u8),
    LoadMany(Vec<u8>),
    LoadEach(Vec<u8>),
    Prime(u8),
    Clear(u8),
    ClearAll,
    /// Drops the n-th (modulo) caller still waiting.
    Cancel(usize),
    /// Lets the n-th (modulo) stalled batch finish.
    Release(usize),
    Close,
}

/// `max_delay`: zero (dispatch at once, callers may lead their batch) or
/// an hour that never passes in a case (dispatch when full or on close).
/// Both keep a case free of timers firing, so it stays deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delay {
    Zero,
    Forever,
}

#[derive(Debug, Clone)]
struct Case {
    max_batch_size: usize,
    delay: Delay,
    /// `gather_yields`: only matters with a zero delay.
    gather_yields: usize,
    max_in_flight: usize,
    cache: bool,
    script: Script,
    ops: Vec<Op>,
}

fn key() -> impl Strategy<Value = u8> {
    0..KEYS
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![6 => Just(Fault::None), 2 => Just(Fault::Error), 1 => Just(Fault::Panic)]
}

fn plan() -> impl Strategy<Value = BatchPlan> {
    let omit = prop_oneof![3 => Just(0u8), 1 => 0u8..(1 << KEYS)];
    (fault(), omit, prop::bool::weighted(0.3)).prop_map(|(fault, omit, stall)| BatchPlan {
        fault,
        omit,
        stall,
    })
}

fn op() -> impl Strategy<Value = Op> {
    let keys = || prop::collection::vec(key(), 1..5);
    // Weights: mostly loads; a close about once in every other case.
    prop_oneof![
        16 => key().prop_map(Op::Load),
        6 => keys().prop_map(Op::LoadMany),
        6 => keys().prop_map(Op::LoadEach),
        4 => key().prop_map(Op::Prime),
        4 => key().prop_map(Op::Clear),
        2 => Just(Op::ClearAll),
        4 => any::<usize>().prop_map(Op::Cancel),
        8 => any::<usize>().prop_map(Op::Release),
        1 => Just(Op::Close),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let script = (
        prop::collection::vec(plan(), 0..12),
        prop::collection::vec(
            prop_oneof![8 => Just(Fault::None), 1 => Just(Fault::Error), 1 => Just(Fault::Panic)],
            usize::from(KEYS),
        ),
        prop_oneof![4 => Just(0u8), 1 => 0u8..(1 << KEYS)],
    )
        .prop_map(|(plans, first_fetch, never)| Script {
            plans,
            first_fetch,
            never,
        });
    let delay = prop_oneof![Just(Delay::Zero), Just(Delay::Forever)];
    let gather_yields = prop_oneof![Just(0usize), Just(1), Just(3)];
    (
        (1usize..=4, delay, gather_yields),
        1usize..=3,
        prop::bool::weighted(0.8),
        script,
        prop::collection::vec(op(), 1..40),
    )
        .prop_map(
            |((max_batch_size, delay, gather_yields), max_in_flight, cache, script, ops)| Case {
                max_batch_size,
                delay,
                gather_yields,
                max_in_flight,
                cache,
                script,
                ops,
            },
        )
}

// ---------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------

/// What a caller is told, with fetch errors named by their batch.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Value(u64),
    NotFound,
    Failed { batch: u32 },
    Panicked,
    Closed,
}

fn answer_of(result: Result<u64, LoadError<Refused>>) -> Answer {
    match result {
        Ok(value) => Answer::Value(value),
        Err(LoadError::NotFound) => Answer::NotFound,
        Err(LoadError::Fetch(error)) => Answer::Failed { batch: error.batch },
        Err(LoadError::Panicked(message)) => {
            assert!(message.starts_with(SCRIPTED), "unexpected panic {message}");
            Answer::Panicked
        }
        Err(LoadError::Closed) => Answer::Closed,
    }
}

/// Where a key stands in the identity map, as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Unknown,
    /// Remembered: a hit answers this.
    Known(Known),
    /// Claimed by a caller, waiting for a batch to start.
    Queued,
    /// Carried by a running batch that later loads join.
    Fetching(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Value(u64),
    NotFound,
}

/// What one key of a call must receive.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Now(Answer),
    /// The answer of the next batch holding this key to start.
    NextBatch(u8),
    /// The answer of this batch for this key.
    Batch(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    One,
    Many,
    Each,
}

/// What a call returned.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    One(Answer),
    Many(Result<Vec<u64>, Answer>),
    Each(Vec<Answer>),
}

struct Call {
    kind: Kind,
    keys: Vec<u8>,
    expect: Vec<Expect>,
    /// Dropping it cancels the call's task.
    handle: Option<RemoteHandle<()>>,
    checked: bool,
}

struct Model {
    standing: Vec<Standing>,
    keep: bool,
    closed: bool,
    max_batch_size: usize,
    max_in_flight: usize,
    running: usize,
    /// How each finished batch answered each of its keys.
    answers: HashMap<u32, HashMap<u8, Answer>>,
    keys_of: HashMap<u32, Vec<u8>>,
}

impl Model {
    /// Nothing known yet, for a loader with these settings.
    fn new(max_batch_size: usize, max_in_flight: usize, keep: bool) -> Self {
        Model {
            standing: vec![Standing::Unknown; usize::from(KEYS)],
            keep,
            closed: false,
            max_batch_size,
            max_in_flight,
            running: 0,
            answers: HashMap::new(),
            keys_of: HashMap::new(),
        }
    }

    /// What a load of `key` issued now must receive, updating the map as
    /// the loader does.
    fn issue(&mut self, key: u8) -> Expect {
        let standing = &mut self.standing[usize::from(key)];
        match *standing {
            Standing::Known(Known::Value(value)) => Expect::Now(Answer::Value(value)),
            Standing::Known(Known::NotFound) => Expect::Now(Answer::NotFound),
            Standing::Fetching(batch) => Expect::Batch(batch),
            Standing::Queued => Expect::NextBatch(key),
            Standing::Unknown if self.closed => Expect::Now(Answer::Closed),
            Standing::Unknown => {
                *standing = Standing::Queued;
                Expect::NextBatch(key)
            }
        }
    }

    fn prime(&mut self, key: u8, value: u64) -> bool {
        let standing = &mut self.standing[usize::from(key)];
        let stored = self.keep && *standing == Standing::Unknown;
        if stored {
            *standing = Standing::Known(Known::Value(value));
        }
        stored
    }

    /// A queued key stays: its fetch has not started.
    fn clear(&mut self, key: u8) {
        let standing = &mut self.standing[usize::from(key)];
        if *standing != Standing::Queued {
            *standing = Standing::Unknown;
        }
    }

    fn start(&mut self, batch: u32, keys: &[u8], calls: &mut [Call]) -> Result<(), String> {
        if keys.is_empty() || keys.len() > self.max_batch_size {
            return Err(format!(
                "batch {batch} holds {keys:?}: over the cap or empty"
            ));
        }
        let distinct: HashSet<_> = keys.iter().collect();
        if distinct.len() != keys.len() {
            return Err(format!("batch {batch} repeats a key: {keys:?}"));
        }
        self.running += 1;
        if self.running > self.max_in_flight {
            return Err(format!("batch {batch}: {} fetches at once", self.running));
        }
        for &key in keys {
            let standing = &mut self.standing[usize::from(key)];
            if *standing != Standing::Queued {
                return Err(format!(
                    "batch {batch} fetches key {key}, which no caller waits for ({standing:?})"
                ));
            }
            *standing = Standing::Fetching(batch);
        }
        for call in calls.iter_mut() {
            for (expect, &key) in call.expect.iter_mut().zip(&call.keys) {
                if *expect == Expect::NextBatch(key) && keys.contains(&key) {
                    *expect = Expect::Batch(batch);
                }
            }
        }
        self.keys_of.insert(batch, keys.to_vec());
        Ok(())
    }

    fn end(&mut self, batch: u32, ending: Ending) {
        self.running -= 1;
        let mut answers = HashMap::new();
        for &key in &self.keys_of[&batch] {
            let answer = match ending {
                Ending::Delivered { omitted } if omitted & (1 << key) != 0 => Answer::NotFound,
                Ending::Delivered { .. } => Answer::Value(fetched_value(key, batch)),
                Ending::Failed => Answer::Failed { batch },
                Ending::Panicked => Answer::Panicked,
            };
            let standing = &mut self.standing[usize::from(key)];
            // A key cleared while this batch ran is no longer its to store.
            if *standing == Standing::Fetching(batch) {
                *standing = match (&answer, self.keep) {
                    (Answer::Value(value), true) => Standing::Known(Known::Value(*value)),
                    (Answer::NotFound, true) => Standing::Known(Known::NotFound),
                    _ => Standing::Unknown,
                };
            }
            answers.insert(key, answer);
        }
        self.answers.insert(batch, answers);
    }

    /// The answer a key of a call must have got, once it is decided.
    fn decided(&self, expect: &Expect, key: u8) -> Option<Answer> {
        match expect {
            Expect::Now(answer) => Some(answer.clone()),
            Expect::NextBatch(_) => None,
            Expect::Batch(batch) => Some(self.answers.get(batch)?[&key].clone()),
        }
    }

    /// Compares what a call got with what it must have got. `load_many`
    /// returns at its first failure (in input order), so keys after it
    /// may still be undecided.
    fn check(&self, call: &Call, got: &Got) -> Result<(), String> {
        let mut expected = Vec::new();
        for (expect, &key) in call.expect.iter().zip(&call.keys) {
            let Some(answer) = self.decided(expect, key) else {
                return Err(format!(
                    "{:?} of {:?} answered before key {key} was ({expect:?}): {got:?}",
                    call.kind, call.keys
                ));
            };
            let failed = !matches!(answer, Answer::Value(_));
            expected.push(answer);
            if failed && call.kind == Kind::Many {
                break;
            }
        }
        let wanted = match call.kind {
            Kind::One => Got::One(expected[0].clone()),
            Kind::Each => Got::Each(expected),
            Kind::Many => Got::Many(
                expected
                    .into_iter()
                    .map(|answer| match answer {
                        Answer::Value(value) => Ok(value),
                        failure => Err(failure),
                    })
                    .collect(),
            ),
        };
        count(|f| {
            for answer in call
                .expect
                .iter()
                .zip(&call.keys)
                .filter_map(|(e, &k)| self.decided(e, k))
            {
                match answer {
                    Answer::Value(_) => f.values += 1,
                    Answer::NotFound => f.not_found += 1,
                    Answer::Failed { .. } => f.fetch_errors += 1,
                    Answer::Panicked => f.panics += 1,
                    Answer::Closed => f.closed += 1,
                }
            }
        });
        if wanted != *got {
            return Err(format!(
                "{:?} of {:?}: got {got:?}, expected {wanted:?}",
                call.kind, call.keys
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------

struct Driver {
    pool: LocalPool,
    spawned: mpsc::Receiver<BoxFuture>,
    live_tasks: LiveTasks,
    loader: Option<BatchFetcher<ScriptedFetcher>>,
    shared: Arc<Shared>,
    fetcher_alive: Weak<()>,
    seen_events: usize,
    model: Model,
    calls: Vec<Call>,
    results: Rc<RefCell<HashMap<usize, Got>>>,
    closes: Vec<RemoteHandle<()>>,
}

impl Driver {
    fn new(case: &Case) -> Self {
        let (to_pool, spawned) = mpsc::channel::<BoxFuture>();
        let live_tasks = LiveTasks::default();
        let counter = live_tasks.clone();
        let spawner = move |task: BoxFuture| {
            // A closed pool drops the task, which answers its callers.
            let _ = to_pool.send(counter.track(task));
        };
        let shared = Arc::new(Shared {
            script: case.script.clone(),
            events: Mutex::default(),
            started: AtomicUsize::new(0),
            fetched_before: Mutex::default(),
            stalled: Mutex::default(),
        });
        let alive = Arc::new(());
        let fetcher_alive = Arc::downgrade(&alive);
        let fetcher = ScriptedFetcher {
            shared: shared.clone(),
            _alive: alive,
        };
        let loader = BatchFetcher::builder(fetcher)
            .max_batch_size(case.max_batch_size)
            .max_in_flight(case.max_in_flight)
            .max_delay(match case.delay {
                Delay::Zero => Duration::ZERO,
                Delay::Forever => Duration::from_secs(3600),
            })
            .gather_yields(case.gather_yields)
            .cache(case.cache)
            .spawner(spawner)
            .build()
            .expect("valid settings");
        Self {
            pool: LocalPool::new(),
            spawned,
            live_tasks,
            loader: Some(loader),
            shared,
            fetcher_alive,
            seen_events: 0,
            model: Model::new(case.max_batch_size, case.max_in_flight, case.cache),
            calls: Vec::new(),
            results: Rc::default(),
            closes: Vec::new(),
        }
    }

    fn loader(&self) -> &BatchFetcher<ScriptedFetcher> {
        self.loader.as_ref().expect("loader alive until the end")
    }

    /// Runs every task, including those spawned meanwhile, until all wait;
    /// then brings the model up to date and checks every finished call.
    fn settle(&mut self) -> Result<(), String> {
        loop {
            self.pool.run_until_stalled();
            let mut spawned_any = false;
            while let Ok(task) = self.spawned.try_recv() {
                self.pool.spawner().spawn_local(task).unwrap();
                spawned_any = true;
            }
            if !spawned_any {
                break;
            }
        }
        let events: Vec<Event> = self.shared.events.lock().unwrap()[self.seen_events..].to_vec();
        self.seen_events += events.len();
        for event in events {
            match event {
                Event::Start { batch, keys } => {
                    count(|f| f.batches += 1);
                    self.model.start(batch, &keys, &mut self.calls)?
                }
                Event::End { batch, ending } => {
                    let keys = &self.model.keys_of[&batch];
                    count(|f| match ending {
                        Ending::Failed => f.failed += 1,
                        Ending::Panicked => f.panicked += 1,
                        Ending::Delivered { omitted } => {
                            let omitted = keys.iter().filter(|&&k| omitted & (1 << k) != 0);
                            f.omitted_keys += omitted.count() as u64;
                        }
                    });
                    self.model.end(batch, ending)
                }
            }
        }
        let results = std::mem::take(&mut *self.results.borrow_mut());
        for (index, got) in results {
            let call = &mut self.calls[index];
            self.model.check(call, &got)?;
            call.checked = true;
            call.handle = None;
        }
        Ok(())
    }

    fn call(&mut self, kind: Kind, keys: Vec<u8>) {
        let expect = keys.iter().map(|&key| self.model.issue(key)).collect();
        let index = self.calls.len();
        count(|f| f.calls += 1);
        let loader = self.loader().clone();
        let results = self.results.clone();
        let task_keys = keys.clone();
        let task = async move {
            let got = match kind {
                Kind::One => Got::One(answer_of(loader.load(task_keys[0]).await)),
                Kind::Many => Got::Many(
                    loader
                        .load_many(&task_keys)
                        .await
                        .map_err(|error| answer_of(Err(error))),
                ),
                Kind::Each => Got::Each(
                    loader
                        .load_each(&task_keys)
                        .await
                        .into_iter()
                        .map(answer_of)
                        .collect(),
                ),
            };
            results.borrow_mut().insert(index, got);
        };
        let handle = self.pool.spawner().spawn_local_with_handle(task).unwrap();
        self.calls.push(Call {
            kind,
            keys,
            expect,
            handle: Some(handle),
            checked: false,
        });
    }

    fn apply(&mut self, step: usize, op: &Op) -> Result<(), String> {
        match op {
            Op::Load(key) => self.call(Kind::One, vec![*key]),
            Op::LoadMany(keys) => self.call(Kind::Many, keys.clone()),
            Op::LoadEach(keys) => self.call(Kind::Each, keys.clone()),
            Op::Prime(key) => {
                let value = primed_value(*key, step);
                let stored = self
                    .loader()
                    .prime(*key, value)
                    .now_or_never()
                    .ok_or("prime waited on an idle loader")?;
                let expected = self.model.prime(*key, value);
                if stored != expected {
                    return Err(format!(
                        "prime({key}) returned {stored}, expected {expected}"
                    ));
                }
            }
            Op::Clear(key) => {
                self.loader()
                    .clear(key)
                    .now_or_never()
                    .ok_or("clear waited on an idle loader")?;
                self.model.clear(*key);
            }
            Op::ClearAll => {
                self.loader()
                    .clear_all()
                    .now_or_never()
                    .ok_or("clear_all waited on an idle loader")?;
                for key in 0..KEYS {
                    self.model.clear(key);
                }
            }
            Op::Cancel(n) => {
                let waiting: Vec<usize> = (0..self.calls.len())
                    .filter(|&i| self.calls[i].handle.is_some())
                    .collect();
                if !waiting.is_empty() {
                    let call = &mut self.calls[waiting[n % waiting.len()]];
                    call.handle = None; // drops the task: the call is cancelled
                    count(|f| f.cancelled += 1);
                }
            }
            Op::Release(n) => {
                let mut stalled = self.shared.stalled.lock().unwrap();
                if !stalled.is_empty() {
                    let index = n % stalled.len();
                    let _ = stalled.remove(index).1.send(());
                }
            }
            Op::Close => {
                // Closed from its first poll, which is the next one.
                let loader = self.loader().clone();
                let close = async move { loader.close().await };
                self.closes
                    .push(self.pool.spawner().spawn_local_with_handle(close).unwrap());
                self.model.closed = true;
                count(|f| f.closes += 1);
            }
        }
        self.settle()
    }

    /// Lets every stalled batch finish, then checks that nobody is left
    /// waiting, that close and dropping the loader end everything, and
    /// that the fetcher is dropped.
    fn finish(mut self, delay: Delay) -> Result<(), String> {
        self.release_all()?;
        // Without a delay nothing waits for more keys: every call is
        // answered by now. With one, queued keys wait for close.
        if delay == Delay::Zero {
            self.all_answered()?;
        }
        let loader = self.loader.take().unwrap();
        let mut close = self
            .pool
            .spawner()
            .spawn_local_with_handle(async move {
                loader.close().await;
                drop(loader);
            })
            .unwrap();
        self.model.closed = true;
        self.settle()?;
        self.release_all()?;
        if (&mut close).now_or_never().is_none() {
            return Err("close() did not finish with nothing stalled".into());
        }
        for earlier in std::mem::take(&mut self.closes) {
            if earlier.now_or_never().is_none() {
                return Err("an earlier close() never finished".into());
            }
        }
        self.all_answered()?;
        self.settle()?;
        if self.fetcher_alive.strong_count() != 0 {
            return Err("the fetcher outlived the closed, dropped loader".into());
        }
        let live = self.live_tasks.count();
        if live != 0 {
            return Err(format!("{live} loader tasks still alive after close"));
        }
        Ok(())
    }

    /// Lets every stalled batch finish, and those that stall after them.
    fn release_all(&mut self) -> Result<(), String> {
        loop {
            let stalled = std::mem::take(&mut *self.shared.stalled.lock().unwrap());
            if stalled.is_empty() {
                return Ok(());
            }
            for (_, release) in stalled {
                let _ = release.send(());
            }
            self.settle()?;
        }
    }

    /// Every call not cancelled got its answer, and no key waits for a batch.
    fn all_answered(&self) -> Result<(), String> {
        for call in &self.calls {
            if call.handle.is_some() && !call.checked {
                return Err(format!("{:?} of {:?} never answered", call.kind, call.keys));
            }
        }
        let standing = &self.model.standing;
        if let Some(key) = (0..KEYS).find(|&k| standing[usize::from(k)] == Standing::Queued) {
            return Err(format!("key {key} was queued and never fetched"));
        }
        Ok(())
    }
}

fn run_case(case: &Case) -> Result<(), String> {
    count(|f| {
        f.cases += 1;
        f.ops += case.ops.len() as u64;
    });
    let mut driver = Driver::new(case);
    for (step, op) in case.ops.iter().enumerate() {
        driver
            .apply(step, op)
            .map_err(|failure| format!("step {step} ({op:?}): {failure}"))?;
    }
    driver.finish(case.delay)
}

/// What the cases did, summed over a run: printed so that a report can
/// say how many faults were injected and what callers got.
#[derive(Debug, Default)]
struct Figures {
    cases: u64,
    ops: u64,
    calls: u64,
    cancelled: u64,
    batches: u64,
    stalled: u64,
    failed: u64,
    panicked: u64,
    omitted_keys: u64,
    closes: u64,
    /// Answers checked, by kind.
    values: u64,
    not_found: u64,
    fetch_errors: u64,
    panics: u64,
    closed: u64,
}

static FIGURES: Mutex<Option<Figures>> = Mutex::new(None);

fn count(figures: impl FnOnce(&mut Figures)) {
    figures(FIGURES.lock().unwrap().get_or_insert_with(Figures::default));
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(1_000)
}

/// Every caller gets exactly what the model says; no key is fetched unless
/// a caller waits for it and it is neither remembered nor in flight;
/// batches respect the cap and the in-flight limit; close ends everything,
/// no loader task is left, and the fetcher is dropped.
#[test]
fn loader_matches_the_model() {
    silence_scripted_panics();
    let config = ProptestConfig {
        cases: cases(),
        max_shrink_iters: 10_000,
        // A failure prints its minimal case; nothing is written to disk.
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let started = std::time::Instant::now();
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let outcome = runner.run(&case(), |case| {
        run_case(&case).map_err(TestCaseError::fail)?;
        Ok(())
    });
    let figures = FIGURES.lock().unwrap().take().unwrap_or_default();
    println!("model: {figures:?} in {:.2?}", started.elapsed());
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

/// The model itself must be able to fail: a loader that fetched a
/// remembered key again would be caught.
#[test]
fn model_rejects_a_refetch_of_a_remembered_key() {
    let mut model = Model::new(4, 1, true);
    model.standing = vec![Standing::Known(Known::Value(1)); usize::from(KEYS)];
    assert!(model.start(1, &[0], &mut []).is_err());
    model.standing[1] = Standing::Queued;
    assert!(model.start(2, &[1, 1], &mut []).is_err(), "a repeated key");
    model.running = 0;
    assert!(model.start(3, &[1], &mut []).is_ok());
    model.standing[2] = Standing::Queued;
    assert!(model.start(4, &[2], &mut []).is_err(), "over max_in_flight");
}
