//! A cache whose misses are loaded once however many callers ask for the same key at the same
//! time (single-flight), and whose entries expire `ttl` after they were loaded. The Vault read
//! cache and the template sources use it: a burst of syncs reading one path makes one request,
//! and so does a burst that fails (every waiter gets the same failure).
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

/// One key's load: empty while loading, then the value and when it was loaded.
type Slot<V> = Arc<OnceCell<(V, Instant)>>;

pub struct Cache<K, V> {
    ttl: Duration,
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
    /// key is kept, and the next sweep makes room.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Cache {
            ttl: ttl.max(Duration::from_millis(1)),
            capacity,
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// The key's value: a live one, the one being loaded, or `load`'s. A value `keep` refuses
    /// (a failure) goes to the callers waiting for this load and is then forgotten, so the next
    /// caller loads again.
    pub async fn get_with(
        &self,
        key: &K,
        load: impl Future<Output = V>,
        keep: impl FnOnce(&V) -> bool,
    ) -> V {
        let slot = self.slot(key);
        let (value, _) = slot
            .get_or_init(|| async { (load.await, Instant::now()) })
            .await;
        let value = value.clone();
        if !keep(&value) {
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

    /// The live or loading slot of the key, or a new one.
    fn slot(&self, key: &K) -> Slot<V> {
        let now = Instant::now();
        let ttl = self.ttl;
        let live = |slot: &Slot<V>| slot.get().is_none_or(|(_, at)| now - *at < ttl);
        let mut entries = self.lock();
        if let Some(slot) = entries.map.get(key).filter(|s| live(s)) {
            return slot.clone();
        }
        if now - entries.swept >= ttl || entries.map.len() >= self.capacity {
            entries.map.retain(|_, s| live(s));
            entries.swept = now;
        }
        let slot = Slot::default();
        if entries.map.len() < self.capacity {
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
            (0..50).map(|_| cache.get_with(&"k", load(count, value), |v| v.is_ok())),
        )
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_loads_once_and_the_value_lives_its_ttl() {
        let cache = Cache::new(10, TTL);
        let count = AtomicUsize::new(0);
        let got = burst(&cache, &count, Ok(7)).await;
        assert!(got.iter().all(|v| *v == Ok(7)));
        assert_eq!(count.load(Ordering::SeqCst), 1);

        tokio::time::advance(TTL - Duration::from_secs(2)).await;
        assert_eq!(
            cache.get_with(&"k", load(&count, Ok(8)), |_| true).await,
            Ok(7)
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);

        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            cache.get_with(&"k", load(&count, Ok(8)), |_| true).await,
            Ok(8)
        );
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_burst_loads_once_and_the_failure_is_not_kept() {
        let cache = Cache::new(10, TTL);
        let count = AtomicUsize::new(0);
        let got = burst(&cache, &count, Err("denied")).await;
        assert!(got.iter().all(|v| *v == Err("denied")));
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(cache.len(), 0);

        assert_eq!(
            cache
                .get_with(&"k", load(&count, Ok(1)), |v| v.is_ok())
                .await,
            Ok(1)
        );
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_makes_the_next_caller_load() {
        let cache = Cache::new(10, TTL);
        let count = AtomicUsize::new(0);
        assert_eq!(
            cache.get_with(&"k", load(&count, Ok(1)), |_| true).await,
            Ok(1)
        );
        cache.invalidate(&"k");
        assert_eq!(
            cache.get_with(&"k", load(&count, Ok(2)), |_| true).await,
            Ok(2)
        );
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_load_leaves_the_key_to_its_waiters() {
        let cache = Cache::new(10, TTL);
        let count = AtomicUsize::new(0);
        let first = cache.get_with(&"k", load(&count, Ok(1)), |_| true);
        // The first caller gives up before its load finishes; a waiter loads instead.
        let _ = tokio::time::timeout(Duration::from_millis(10), first).await;
        assert_eq!(
            cache.get_with(&"k", load(&count, Ok(2)), |_| true).await,
            Ok(2)
        );
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_dropped_and_the_capacity_holds() {
        let cache = Cache::new(3, TTL);
        let count = AtomicUsize::new(0);
        for key in ["a", "b", "c", "d"] {
            assert_eq!(
                cache.get_with(&key, load(&count, Ok(1)), |_| true).await,
                Ok(1)
            );
        }
        // Full: "d" was loaded but not kept.
        assert_eq!(cache.len(), 3);
        tokio::time::advance(TTL).await;
        assert_eq!(
            cache.get_with(&"e", load(&count, Ok(1)), |_| true).await,
            Ok(1)
        );
        // The three expired ones went with the sweep.
        assert_eq!(cache.len(), 1);
    }
}
