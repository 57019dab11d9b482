//! The cheap, cloneable handle callers load through.

use std::fmt;
use std::sync::{Arc, Weak};

use super::runner::{FetchRunner, Map};
use super::{Fetcher, FetcherBuilder};
use crate::cache::{Known, Lookup, Outcome, Reader};
use crate::core::{run_side_by_side, Lead, Queue, Refused};
use crate::promise::Promise;
use crate::stats::Counters;
use crate::{LoadError, Stats};

/// Batches concurrent loads into one [`Fetcher::fetch`] call per batch and
/// remembers what was fetched.
///
/// A cheap handle: clones share one identity map and one collector. When the
/// last clone is dropped, the collector fetches what is still queued and
/// exits.
///
/// ```
/// use anybatch::{BatchFetcher, Fetcher, Values};
///
/// struct Doubles;
///
/// impl Fetcher for Doubles {
///     type Key = u64;
///     type Value = u64;
///     type Error = std::convert::Infallible;
///
///     async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
///         values.extend(keys.iter().map(|&key| (key, key * 2)));
///         Ok(())
///     }
/// }
///
/// # smol::block_on(async {
/// let loader = BatchFetcher::builder(Doubles).build().unwrap();
/// // Three loads from one task: one fetch of [1, 2, 3].
/// let (a, b, c) = futures::join!(loader.load(1), loader.load(2), loader.load(3));
/// assert_eq!((a.unwrap(), b.unwrap(), c.unwrap()), (2, 4, 6));
/// # });
/// ```
pub struct BatchFetcher<F: Fetcher> {
    inner: Arc<Inner<F>>,
}

struct Inner<F: Fetcher> {
    map: Arc<Map<F>>,
    queue: Queue<FetchRunner<F>>,
    counters: Arc<Counters>,
    label: Option<Arc<str>>,
}

/// How many keys of a `load_many` are looked up, at most, per hold of the
/// in-flight table's lock.
const KEYS_PER_LOCK: usize = 32;

/// What [`BatchFetcher::load`] awaits once it has looked: a fetch to wait
/// for, or one of its boxed slow paths.
enum Next<P, L, C> {
    Wait(P),
    Lead(L),
    Contended(C),
}

type Answer<F> = Known<<F as Fetcher>::Value, <F as Fetcher>::Error>;
type Result<F> = Outcome<<F as Fetcher>::Value, <F as Fetcher>::Error>;
/// A claimed key's answer, and the batch to run if the caller leads it.
type Queued<F> = (Answer<F>, Option<Lead<FetchRunner<F>>>);

/// How a key that is neither stored nor in flight is queued.
enum Queueing<'a, F: Fetcher> {
    /// By a single load, which may lead a lone batch.
    Single,
    /// By a `load_many`, whose first queued key may make it lead: `None`
    /// until that key offered to, then the lead, if it got one.
    Many(&'a mut Option<Option<Lead<FetchRunner<F>>>>),
}

impl<F: Fetcher> BatchFetcher<F> {
    /// Starts configuring a loader over `fetcher`; see [`FetcherBuilder`] for
    /// the settings and their defaults.
    pub fn builder(fetcher: F) -> FetcherBuilder<F> {
        FetcherBuilder::new(fetcher)
    }

    pub(crate) fn from_parts(
        map: Arc<Map<F>>,
        queue: Queue<FetchRunner<F>>,
        counters: Arc<Counters>,
        label: Option<Arc<str>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                map,
                queue,
                counters,
                label,
            }),
        }
    }

    /// Loads one key: from the identity map when it is known, by joining the
    /// fetch already queued or running for it, or in the next batch.
    ///
    /// Dropping the returned future never cancels the fetch for other callers.
    /// A load that completes a batch runs that batch's fetch while it is
    /// polled: poll it to the end or drop it (dropped, the batch goes on as a
    /// task of its own). Kept without being polled, it holds that batch and
    /// its in-flight slot, so other batches of the loader (of every group,
    /// in a grouped loader) may wait for the slot: awaiting another load
    /// while keeping such a future (say, the loser of a `select`) can wait
    /// forever.
    ///
    /// # Errors
    /// [`LoadError::NotFound`] when the fetcher did not deliver the key,
    /// [`LoadError::Fetch`] or [`LoadError::Panicked`] when its batch failed,
    /// [`LoadError::Closed`] when the loader closed first.
    pub async fn load(&self, key: F::Key) -> Result<F> {
        // The hot path: the shared lock taken without waiting, no channel. A
        // miss joins or claims and queues its key under that same lock. What
        // waits for the lock or runs a batch is boxed, so the future of every
        // load stays small (`join_all` and spawned tasks move it); it is
        // built here, before any await, so that nothing larger than a pointer
        // is kept across one.
        let next = match self.inner.map.try_lookup(&key) {
            Lookup::Stored(outcome) => {
                self.inner.counters.hit();
                return outcome;
            }
            Lookup::Missing(mut reader) => {
                // Off the hit path, which must not call (see `hot_counter`).
                crate::hot_counter::enroll();
                match self.join_or_queue(&mut reader, &key, Queueing::Single) {
                    (Known::Done(outcome), _) => return outcome,
                    (Known::Join(promise), None) => Next::Wait(promise),
                    // The lone load of an idle loader runs its batch here,
                    // once the lock is released.
                    (Known::Join(promise), Some(lead)) => {
                        drop(reader);
                        Next::Lead(Box::pin(self.lead(&key, lead, promise)))
                    }
                }
            }
            Lookup::Busy => Next::Contended(Box::pin(self.load_contended(&key))),
        };
        match next {
            Next::Wait(promise) => self.wait(&key, promise).await,
            Next::Lead(lead) => lead.await,
            Next::Contended(contended) => contended.await,
        }
    }

    /// Runs the batch of a lone key on this task, then answers from it.
    async fn lead(
        &self,
        key: &F::Key,
        lead: Lead<FetchRunner<F>>,
        promise: Promise<Result<F>>,
    ) -> Result<F> {
        lead.await;
        self.wait(key, promise).await
    }

    /// [`load`](Self::load) when a writer held or awaited the shared lock.
    async fn load_contended(&self, key: &F::Key) -> Result<F> {
        // Off the hit path, which must not call (see `hot_counter`).
        crate::hot_counter::enroll();
        let queued = {
            let mut reader = self.inner.map.read().await;
            match reader.stored(key) {
                Some(outcome) => {
                    self.inner.counters.hit();
                    return outcome;
                }
                None => self.join_or_queue(&mut reader, key, Queueing::Single),
            }
        };
        match queued {
            // Run outside the map's lock: the batch takes it to deliver.
            (Known::Join(promise), Some(lead)) => self.lead(key, lead, promise).await,
            (answer, _) => self.finish(key, answer).await,
        }
    }

    /// Loads several keys and returns their values in input order. Unknown
    /// keys are queued back to back, so they share batches as far as
    /// `max_batch_size` allows; with `max_delay(ZERO)` on an idle loader
    /// the call leads like a lone [`load`](Self::load): it yields, then runs
    /// what is left of its keys, with those of calls polled meanwhile, once
    /// whole batches have gone (see `gather_yields` on the builder). Like
    /// `load`, it runs the batches it completes or leads while polled; kept
    /// without being polled, it holds them and their in-flight slots, so
    /// awaiting another load while keeping it can wait forever. Duplicates
    /// are allowed.
    ///
    /// # Errors
    /// The error of the first key, in input order, that failed; see
    /// [`load`](Self::load). Use [`load_each`](Self::load_each) for one result
    /// per key.
    ///
    /// ```
    /// # use anybatch::{BatchFetcher, Fetcher, Values};
    /// # struct Doubles;
    /// # impl Fetcher for Doubles {
    /// #     type Key = u64; type Value = u64; type Error = std::convert::Infallible;
    /// #     async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
    /// #         values.extend(keys.iter().map(|&key| (key, key * 2))); Ok(())
    /// #     }
    /// # }
    /// # smol::block_on(async {
    /// let loader = BatchFetcher::builder(Doubles).build().unwrap();
    /// assert_eq!(loader.load_many(&[3, 1, 3]).await.unwrap(), vec![6, 2, 6]);
    /// # });
    /// ```
    pub async fn load_many(
        &self,
        keys: &[F::Key],
    ) -> std::result::Result<Vec<F::Value>, LoadError<F::Error>> {
        let answers = self.lookup_all(keys).await;
        let mut values = Vec::with_capacity(keys.len());
        for (key, answer) in keys.iter().zip(answers) {
            values.push(self.finish(key, answer).await?);
        }
        Ok(values)
    }

    /// Loads several keys like [`load_many`](Self::load_many), returning one
    /// result per key in input order.
    ///
    /// ```
    /// # use anybatch::{BatchFetcher, Fetcher, LoadError, Values};
    /// struct EvenOnly;
    ///
    /// impl Fetcher for EvenOnly {
    ///     type Key = u64;
    ///     type Value = u64;
    ///     type Error = std::convert::Infallible;
    ///
    ///     async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
    ///         values.extend(keys.iter().filter(|&&key| key % 2 == 0).map(|&key| (key, key)));
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # smol::block_on(async {
    /// let loader = BatchFetcher::builder(EvenOnly).build().unwrap();
    /// let results = loader.load_each(&[2, 3]).await;
    /// assert_eq!(results, vec![Ok(2), Err(LoadError::NotFound)]);
    /// # });
    /// ```
    pub async fn load_each(&self, keys: &[F::Key]) -> Vec<Result<F>> {
        let answers = self.lookup_all(keys).await;
        let mut results = Vec::with_capacity(keys.len());
        for (key, answer) in keys.iter().zip(answers) {
            results.push(self.finish(key, answer).await);
        }
        results
    }

    /// Stores `value` for `key` unless the key is already known or being
    /// fetched. Returns whether it was stored (never when caching is off).
    ///
    /// ```
    /// # use anybatch::{BatchFetcher, Fetcher, Values};
    /// # struct Doubles;
    /// # impl Fetcher for Doubles {
    /// #     type Key = u64; type Value = u64; type Error = std::convert::Infallible;
    /// #     async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
    /// #         values.extend(keys.iter().map(|&key| (key, key * 2))); Ok(())
    /// #     }
    /// # }
    /// # smol::block_on(async {
    /// let loader = BatchFetcher::builder(Doubles).build().unwrap();
    /// assert!(loader.prime(5, 500).await);
    /// assert!(!loader.prime(5, 0).await); // never overwrites
    /// assert_eq!(loader.load(5).await.unwrap(), 500);
    /// # });
    /// ```
    pub async fn prime(&self, key: F::Key, value: F::Value) -> bool {
        crate::hot_counter::enroll();
        self.inner.map.prime(key, value).await
    }

    /// Forgets `key`, so the next load fetches it again. A fetch already
    /// running for it still answers its current callers, but its value is not
    /// stored and later loads do not join it.
    ///
    /// ```
    /// # use anybatch::{BatchFetcher, Fetcher, Values};
    /// # struct Doubles;
    /// # impl Fetcher for Doubles {
    /// #     type Key = u64; type Value = u64; type Error = std::convert::Infallible;
    /// #     async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
    /// #         values.extend(keys.iter().map(|&key| (key, key * 2))); Ok(())
    /// #     }
    /// # }
    /// # smol::block_on(async {
    /// let loader = BatchFetcher::builder(Doubles).build().unwrap();
    /// loader.prime(5, 500).await;
    /// loader.clear(&5).await;
    /// assert_eq!(loader.load(5).await.unwrap(), 10); // fetched again
    /// # });
    /// ```
    pub async fn clear(&self, key: &F::Key) {
        self.inner.map.clear(key).await
    }

    /// Forgets every key, as [`clear`](Self::clear) does for one.
    ///
    /// ```
    /// # use anybatch::{BatchFetcher, Fetcher, Values};
    /// # struct Doubles;
    /// # impl Fetcher for Doubles {
    /// #     type Key = u64; type Value = u64; type Error = std::convert::Infallible;
    /// #     async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
    /// #         values.extend(keys.iter().map(|&key| (key, key * 2))); Ok(())
    /// #     }
    /// # }
    /// # smol::block_on(async {
    /// let loader = BatchFetcher::builder(Doubles).build().unwrap();
    /// loader.prime(1, 100).await;
    /// loader.clear_all().await;
    /// assert_eq!(loader.load(1).await.unwrap(), 2);
    /// # });
    /// ```
    pub async fn clear_all(&self) {
        self.inner.map.clear_all().await
    }

    /// Stops taking new keys, fetches everything already queued, waits for
    /// every fetch in flight, and returns. Afterwards, loads still answer from
    /// the identity map; keys that would need a fetch get
    /// [`LoadError::Closed`]. Closing twice is harmless.
    ///
    /// ```
    /// # use anybatch::{BatchFetcher, Fetcher, LoadError, Values};
    /// # struct Doubles;
    /// # impl Fetcher for Doubles {
    /// #     type Key = u64; type Value = u64; type Error = std::convert::Infallible;
    /// #     async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
    /// #         values.extend(keys.iter().map(|&key| (key, key * 2))); Ok(())
    /// #     }
    /// # }
    /// # smol::block_on(async {
    /// let loader = BatchFetcher::builder(Doubles).build().unwrap();
    /// assert_eq!(loader.load(1).await, Ok(2));
    /// loader.close().await;
    /// assert_eq!(loader.load(1).await, Ok(2)); // known: answered
    /// assert_eq!(loader.load(2).await, Err(LoadError::Closed));
    /// # });
    /// ```
    pub async fn close(&self) {
        self.inner.queue.close().await
    }

    /// A handle that does not keep the loader alive, and the signal that
    /// reports its work done: for a grouped loader's forgotten groups.
    pub(crate) fn retire(&self) -> Retired<F> {
        Retired {
            loader: Arc::downgrade(&self.inner),
            finished: self.inner.queue.finished(),
        }
    }

    /// Stops taking new keys at once; what is queued is still fetched.
    pub(crate) fn stop_taking(&self) {
        self.inner.queue.stop_taking();
    }

    /// True once [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.queue.is_closed()
    }

    /// How many answers (values and remembered absences) the loader's store
    /// holds now.
    pub async fn cached(&self) -> usize {
        self.inner.map.stored().await
    }

    /// What this loader has done so far; see [`Stats`].
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// The label given to the builder, if any.
    pub fn label(&self) -> Option<&str> {
        self.inner.label.as_deref()
    }

    /// Answers every key under one shared lock, and claims and queues the
    /// keys not stored or in flight under one in-flight lock; then runs the
    /// batches those keys completed, if this caller got to run them.
    async fn lookup_all(&self, keys: &[F::Key]) -> Vec<Answer<F>> {
        crate::hot_counter::enroll();
        let mut leads = Vec::new();
        let mut many = None;
        let answers = {
            let mut reader = self.inner.map.read().await;
            keys.iter()
                .enumerate()
                .map(|(index, key)| {
                    // The in-flight table's lock blocks the threads of other
                    // misses, so a long key list lets go of it now and then.
                    if index % KEYS_PER_LOCK == 0 {
                        reader.release();
                    }
                    match reader.stored(key) {
                        Some(outcome) => self.counted(Known::Done(outcome)),
                        None => {
                            let queueing = Queueing::Many(&mut many);
                            let (answer, lead) = self.join_or_queue(&mut reader, key, queueing);
                            leads.extend(lead);
                            answer
                        }
                    }
                })
                .collect()
        };
        // Run outside the map's lock, which a batch takes to deliver.
        leads.extend(many.flatten());
        run_side_by_side(leads).await;
        answers
    }

    /// For a key not stored, under the shared lock: joins the fetch in
    /// flight, or claims the key and queues it. A single load's lone key on
    /// an idle loader is not queued but returned as a batch for the caller
    /// to run once the lock is released (see `Queue::try_lead`); the first
    /// key a `load_many` queues on an idle loader makes that call lead the
    /// batch the rest join (see `Queue::try_lead_many`); a key that
    /// completes a batch may return that batch too (see `Queue::push`).
    fn join_or_queue(
        &self,
        reader: &mut Reader<'_, F::Key, F::Value, F::Error>,
        key: &F::Key,
        queueing: Queueing<'_, F>,
    ) -> Queued<F> {
        let counters = &self.inner.counters;
        let claim = match reader.join_or_claim(key) {
            Ok(known) => return (self.counted(known), None),
            Err(claim) => claim,
        };
        let mut ticket = (key.clone(), claim.resolver);
        match queueing {
            Queueing::Single => match self.inner.queue.try_lead(ticket) {
                Ok(lead) => {
                    counters.queued();
                    return (Known::Join(claim.promise), Some(lead));
                }
                Err(refused) => ticket = refused,
            },
            Queueing::Many(&mut ref mut many) => {
                many.get_or_insert_with(|| self.inner.queue.try_lead_many());
            }
        }
        // A single load lets go of the in-flight table once its key is
        // queued, before taking a batch the key may have completed, so
        // that loads missing on other threads wait less for the table.
        // (`load_many` keeps it for the keys that follow.)
        let queued = match queueing {
            Queueing::Single => self.inner.queue.push_then(ticket, || reader.release()),
            Queueing::Many(_) => self.inner.queue.push(ticket),
        };
        match queued {
            Ok(lead) => {
                counters.queued();
                (Known::Join(claim.promise), lead)
            }
            // The queue is unbounded, so only a closed loader refuses.
            Err(Refused::Closed(_) | Refused::Full(_)) => {
                Counters::add(&counters.rejected, 1);
                Counters::add(&counters.closed, 1);
                reader.forget(key, &claim.promise);
                (Known::Done(Err(LoadError::Closed)), None)
            }
        }
    }

    /// Counts an answer found in the map.
    fn counted(&self, known: Answer<F>) -> Answer<F> {
        let counters = &self.inner.counters;
        match &known {
            Known::Done(_) => counters.hit(),
            Known::Join(_) => counters.join(),
        }
        known
    }

    async fn finish(&self, key: &F::Key, answer: Answer<F>) -> Result<F> {
        match answer {
            Known::Done(outcome) => outcome,
            Known::Join(promise) => self.wait(key, promise).await,
        }
    }

    async fn wait(&self, key: &F::Key, promise: Promise<Result<F>>) -> Result<F> {
        match promise.wait().await {
            Ok(outcome) => outcome,
            Err(promise) => Box::pin(self.abandoned(key, promise)).await,
        }
    }

    /// The batch was dropped unanswered (its executor shut down): drop the
    /// stale entry so a later load fetches again.
    #[cold]
    async fn abandoned(&self, key: &F::Key, promise: Promise<Result<F>>) -> Result<F> {
        Counters::add(&self.inner.counters.closed, 1);
        self.inner.map.read().await.forget(key, &promise);
        Err(LoadError::Closed)
    }
}

/// A loader that was let go of but may still be working (see
/// [`BatchFetcher::retire`]).
pub(crate) struct Retired<F: Fetcher> {
    loader: Weak<Inner<F>>,
    finished: async_channel::Receiver<()>,
}

impl<F: Fetcher> Retired<F> {
    /// True once its collector and every batch are done.
    pub(crate) fn is_done(&self) -> bool {
        self.finished.is_closed()
    }

    /// Closes it if a handle still exists, then waits until its work is done.
    pub(crate) async fn close(self) {
        if let Some(inner) = self.loader.upgrade() {
            BatchFetcher { inner }.close().await;
        }
        let _ = self.finished.recv().await;
    }
}

impl<F: Fetcher> Clone for BatchFetcher<F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<F: Fetcher> fmt::Debug for BatchFetcher<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchFetcher")
            .field("label", &self.inner.label)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
