//! A cache whose misses are loaded once however many callers ask for the same key at the same
//! time (single-flight), and whose entries answer every caller for `ttl` after they were loaded.
//! The Vault read cache and the template sources use it: a burst of syncs reading one path makes
//! one request, and so does a burst that fails (every waiter gets the same failure).
//!
//! An entry is kept longer, `keep`, for callers that say since when a value is fresh enough for
//! them (`fresh_since`): a load that began at or after that instant answers them as if they had
//! made it (a sync that fell due before the read began could have made that very read). So a
//! backlog of syncs due before a read shares it, however long they waited for their turn.
//!
//! It replaces moka's `future::Cache`, whose eviction policy (TinyLFU, its own timer wheel and
//! access deques) we did not use, for its size: moka was the third-largest crate in the
//! binary, and the binary's code is a third of the controller's RSS (docs/benchmarks.md,
//! part 2 step 6). The waiting is tokio's `OnceCell`.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

/// One key's load: empty while loading, then the value.
type Slot<V> = Arc<OnceCell<Loaded<V>>>;

struct Loaded<V> {
    value: V,
    /// When the load began and ended.
    began: Instant,
    ended: Instant,
}

pub struct Cache<K, V> {
    ttl: Duration,
    keep: Duration,
    capacity: usize,
    entries: Mutex<Entries<K, V>>,
}

struct Entries<K, V> {
    map: HashMap<K, Slot<V>>,
    /// When expired entries were last dropped (at most once per `ttl`).
    swept: Instant,
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    /// At most `capacity` keys are kept; beyond that, a load is still single-flight only if its
    /// key is kept, and the next sweep makes room. A value answers everyone for `ttl`, and
    /// callers with a `fresh_since` it meets for `keep` (at least `ttl`).
    pub fn new(capacity: usize, ttl: Duration, keep: Duration) -> Self {
        let ttl = ttl.max(Duration::from_millis(1));
        Cache {
            ttl,
            keep: keep.max(ttl),
            capacity,
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// The key's value: one being loaded, one loaded under `ttl` ago, one whose load began at or
    /// after `fresh_since` (if given) and ended under `keep` ago, or else `load`'s. A value
    /// `keep_value` refuses (a failure) goes to the callers waiting for this load and is then
    /// forgotten, so the next caller loads again.
    pub async fn get_with(
        &self,
        key: &K,
        fresh_since: Option<Instant>,
        load: impl Future<Output = V>,
        keep_value: impl FnOnce(&V) -> bool,
    ) -> V {
        let slot = self.slot(key, fresh_since);
        let loaded = slot
            .get_or_init(|| async {
                let began = Instant::now();
                let value = load.await;
                Loaded {
                    value,
                    began,
                    ended: Instant::now(),
                }
            })
            .await;
        let value = loaded.value.clone();
        if !keep_value(&value) {
            let mut entries = self.lock();
            if entries.map.get(key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                entries.map.remove(key);
            }
        }
        value
    }

    /// Forgets the key's value; a load under way still answers its waiters.
    pub fn invalidate(&self, key: &K) {
        self.lock().map.remove(key);
    }

    /// The slot that answers this caller, or a new one (which replaces the key's old one).
    fn slot(&self, key: &K, fresh_since: Option<Instant>) -> Slot<V> {
        let now = Instant::now();
        let (ttl, keep) = (self.ttl, self.keep);
        let answers = |slot: &Slot<V>| {
            slot.get().is_none_or(|l| {
                let age = now - l.ended;
                age < ttl || (age < keep && fresh_since.is_some_and(|since| l.began >= since))
            })
        };
        let kept = |slot: &Slot<V>| slot.get().is_none_or(|l| now - l.ended < keep);
        let mut entries = self.lock();
        if let Some(slot) = entries.map.get(key).filter(|s| answers(s)) {
            return slot.clone();
        }
        if now - entries.swept >= ttl || entries.map.len() >= self.capacity {
            entries.map.retain(|_, s| kept(s));
            entries.swept = now;
        }
        let slot = Slot::default();
        if entries.map.len() < self.capacity || entries.map.contains_key(key) {
            entries.map.insert(key.clone(), slot.clone());
        }
        slot
    }

    /// The map; a panic while it was held (a `Hash` or `Clone` impl) left it whole.
    fn lock(&self) -> MutexGuard<'_, Entries<K, V>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const TTL: Duration = Duration::from_secs(10);

    /// A load that counts itself, takes a second and answers `value`.
    async fn load(
        count: &AtomicUsize,
        value: Result<u32, &'static str>,
    ) -> Result<u32, &'static str> {
        count.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        value
    }

    async fn burst(
        cache: &Cache<&'static str, Result<u32, &'static str>>,
        count: &AtomicUsize,
        value: Result<u32, &'static str>,
    ) -> Vec<Result<u32, &'static str>> {
        futures::future::join_all(
            (0..50).map(|_| cache.get_with(&"k", None, load(count, value), |v| v.is_ok())),
        )
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_loads_once_and_the_value_lives_its_ttl() {
        let cache = Cache::new(10, TTL, TTL);
        let count = AtomicUsize::new(0);
        let got = burst(&cache, &count, Ok(7)).await;
        assert!(got.iter().all(|v| *v == Ok(7)));
        assert_eq!(count.load(Ordering::SeqCst), 1);

        tokio::time::advance(TTL - Duration::from_secs(2)).await;
        assert_eq!(
            cache
                .get_with(&"k", None, load(&count, Ok(8)), |_| true)
                .await,
            Ok(7)
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);

        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            cache
                .get_with(&"k", None, load(&count, Ok(8)), |_| true)
                .await,
            Ok(8)
        );
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_answers_callers_due_before_its_load_began_until_keep() {
        const KEEP: Duration = Duration::from_secs(30);
        let cache = Cache::new(10, TTL, KEEP);
        let count = AtomicUsize::new(0);
        let due = Instant::now();
        tokio::time::advance(Duration::from_millis(500)).await;
        // Began 0.5 s after `due`, ended 1 s later.
        let began = Instant::now();
        let get = |since: Option<Instant>, value: u32| {
            cache.get_with(&"k", since, load(&count, Ok(value)), |_| true)
        };
        assert_eq!(get(Some(due), 1).await, Ok(1));
        tokio::time::advance(TTL + Duration::from_secs(2)).await;
        // Past the TTL: a caller due before the load began still takes it ...
        assert_eq!(get(Some(due), 2).await, Ok(1));
        assert_eq!(get(Some(began), 2).await, Ok(1));
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // ... one due after it began, or one without a due time, loads again.
        assert_eq!(get(Some(began + Duration::from_millis(1)), 2).await, Ok(2));
        assert_eq!(count.load(Ordering::SeqCst), 2);
        tokio::time::advance(TTL + Duration::from_secs(2)).await;
        assert_eq!(get(None, 3).await, Ok(3));
        assert_eq!(count.load(Ordering::SeqCst), 3);
        // Past `keep`, nobody takes a value, however early they fell due.
        tokio::time::advance(KEEP).await;
        assert_eq!(get(Some(due), 4).await, Ok(4));
        assert_eq!(count.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_burst_loads_once_and_the_failure_is_not_kept() {
        let cache = Cache::new(10, TTL, TTL);
        let count = AtomicUsize::new(0);
        let got = burst(&cache, &count, Err("denied")).await;
        assert!(got.iter().all(|v| *v == Err("denied")));
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(cache.len(), 0);

        assert_eq!(
            cache
                .get_with(&"k", None, load(&count, Ok(1)), |v| v.is_ok())
                .await,
            Ok(1)
        );
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_makes_the_next_caller_load() {
        let cache = Cache::new(10, TTL, TTL);
        let count = AtomicUsize::new(0);
        assert_eq!(
            cache
                .get_with(&"k", None, load(&count, Ok(1)), |_| true)
                .await,
            Ok(1)
        );
        cache.invalidate(&"k");
        assert_eq!(
            cache
                .get_with(&"k", None, load(&count, Ok(2)), |_| true)
                .await,
            Ok(2)
        );
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_load_leaves_the_key_to_its_waiters() {
        let cache = Cache::new(10, TTL, TTL);
        let count = AtomicUsize::new(0);
        let first = cache.get_with(&"k", None, load(&count, Ok(1)), |_| true);
        // The first caller gives up before its load finishes; a waiter loads instead.
        let _ = tokio::time::timeout(Duration::from_millis(10), first).await;
        assert_eq!(
            cache
                .get_with(&"k", None, load(&count, Ok(2)), |_| true)
                .await,
            Ok(2)
        );
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_dropped_and_the_capacity_holds() {
        let cache = Cache::new(3, TTL, TTL);
        let count = AtomicUsize::new(0);
        for key in ["a", "b", "c", "d"] {
            assert_eq!(
                cache
                    .get_with(&key, None, load(&count, Ok(1)), |_| true)
                    .await,
                Ok(1)
            );
        }
        // Full: "d" was loaded but not kept.
        assert_eq!(cache.len(), 3);
        tokio::time::advance(TTL).await;
        assert_eq!(
            cache
                .get_with(&"e", None, load(&count, Ok(1)), |_| true)
                .await,
            Ok(1)
        );
        // The three expired ones went with the sweep.
        assert_eq!(cache.len(), 1);
    }
}
