//! When each ExternalSecret of one scope is synced next: now (a change, a trigger), at its next
//! poll, or after a failure's backoff. The scope's `runner` takes the objects as they fall due.
//!
//! One entry per object, the earliest deadline winning (a trigger brings a pending poll
//! forward; a running object has no entry, and its sync's outcome schedules the next one).
//! Each entry also says since when the object is due, for the Vault read cache: a read begun
//! after that answers its sync (`KvReader::for_sync_due`). That is the deadline, or later if
//! something scheduled it again after its deadline had passed — a change seen while it waited
//! needs a read begun after the change. An
//! object is one shared `namespace/name` string and a deadline: kube-runtime's scheduler kept
//! two copies of its full reference (name, namespace, uid, resourceVersion) and a timer slot,
//! the largest part of the heap after the watch's store at 10,000 objects (docs/benchmarks.md).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Default)]
pub struct Queue {
    inner: Mutex<Inner>,
    /// A deadline earlier than the one `next_due` sleeps towards was scheduled.
    earlier: Notify,
}

/// An object taken from the queue: its key (`namespace/name`) and since when it is due.
pub struct Due {
    pub key: Arc<str>,
    pub since: Instant,
}

#[derive(Default)]
struct Inner {
    /// Each scheduled object's deadline and since when it is due, by `namespace/name`.
    due: HashMap<Arc<str>, Entry>,
    /// The same deadlines in time order. An entry whose deadline differs from `due`'s was
    /// brought forward or taken since: it is skipped when it comes up.
    order: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
}

struct Entry {
    at: Instant,
    /// Since when it is due: `at`, or the last time it was scheduled again while already due
    /// sooner.
    since: Instant,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Entries are inserted and removed whole: the maps are consistent whatever panicked
        // while holding the lock.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Due now (a change or a trigger), unless already due. `key` is `namespace/name`.
    pub fn now(&self, key: &Arc<str>) {
        self.schedule(key, Duration::ZERO);
    }

    /// Due `after` from now, unless due sooner already.
    pub fn schedule(&self, key: &Arc<str>, after: Duration) {
        let now = Instant::now();
        let at = now + after;
        let mut inner = self.lock();
        if let Some(entry) = inner.due.get_mut(key).filter(|e| e.at <= at) {
            // Due sooner already; what made this call happened now.
            entry.since = entry.since.max(now);
            return;
        }
        let key = key.clone();
        let earliest = inner.order.peek().map(|Reverse((t, _))| *t);
        inner.due.insert(key.clone(), Entry { at, since: at });
        inner.order.push(Reverse((at, key)));
        inner.compact();
        drop(inner);
        if earliest.is_none_or(|t| at < t) {
            self.earlier.notify_one();
        }
    }

    /// The next object to fall due, removed from the queue. Cancel-safe: an object is removed
    /// only when it is returned.
    pub async fn next_due(&self) -> Due {
        loop {
            let next = match self.pop_due(Instant::now()) {
                Ok(due) => return due,
                Err(next) => next,
            };
            match next {
                Some(at) => tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = self.earlier.notified() => {}
                },
                None => self.earlier.notified().await,
            }
        }
    }

    /// The first object due at `now`, else the next deadline.
    fn pop_due(&self, now: Instant) -> Result<Due, Option<Instant>> {
        let mut inner = self.lock();
        while let Some(Reverse((at, _))) = inner.order.peek() {
            if *at > now {
                return Err(Some(*at));
            }
            let Some(Reverse((at, key))) = inner.order.pop() else {
                break;
            };
            if inner.due.get(&key).is_some_and(|e| e.at == at) {
                let since = inner.due.remove(&key).map_or(at, |e| e.since);
                return Ok(Due { key, since });
            }
        }
        Err(None)
    }

    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.lock().due.len()
    }
}

impl Inner {
    /// Drops stale entries once they outnumber the live ones (objects triggered many times
    /// between polls), so the heap stays proportional to the objects.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.due.len() + 1024 {
            self.order = self
                .due
                .iter()
                .map(|(k, e)| Reverse((e.at, k.clone())))
                .collect();
        }
    }
}

/// An object's key. Names and namespaces cannot contain `/`.
pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn k(key: &str) -> Arc<str> {
        Arc::from(key)
    }

    #[tokio::test(start_paused = true)]
    async fn objects_come_due_in_deadline_order() {
        let queue = Arc::new(Queue::default());
        queue.schedule(&k("a/late"), 30 * S);
        queue.schedule(&k("a/early"), 10 * S);
        let start = Instant::now();
        assert_eq!(&*queue.next_due().await.key, "a/early");
        assert_eq!(start.elapsed(), 10 * S);
        // An earlier deadline scheduled while `next_due` sleeps wakes it.
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next_due().await.key }
        });
        tokio::time::sleep(S).await;
        queue.now(&k("b/sooner"));
        assert_eq!(&*waiting.await.unwrap(), "b/sooner");
        assert_eq!(start.elapsed(), 11 * S);
        assert_eq!(&*queue.next_due().await.key, "a/late");
        assert_eq!(start.elapsed(), 30 * S);
        assert_eq!(queue.pending(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn one_entry_per_object_the_earliest_wins() {
        let queue = Queue::default();
        queue.schedule(&k("a/x"), 20 * S);
        queue.schedule(&k("a/x"), 25 * S);
        queue.schedule(&k("a/y"), 30 * S);
        // A trigger brings the pending poll forward.
        queue.now(&k("a/y"));
        assert_eq!(queue.pending(), 2);
        let start = Instant::now();
        assert_eq!(&*queue.next_due().await.key, "a/y");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(&*queue.next_due().await.key, "a/x");
        assert_eq!(start.elapsed(), 20 * S);
        assert_eq!(queue.pending(), 0);
        // The stale entry at 30 s is skipped: nothing else comes due.
        let more = tokio::time::timeout(60 * S, queue.next_due()).await;
        assert!(more.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn due_since_its_deadline_or_a_later_trigger() {
        let queue = Queue::default();
        let start = Instant::now();
        queue.schedule(&k("a/poll"), 10 * S);
        let due = queue.next_due().await;
        assert_eq!((&*due.key, due.since), ("a/poll", start + 10 * S));
        // Brought forward by a trigger: due since the trigger.
        queue.schedule(&k("a/x"), 30 * S);
        tokio::time::advance(S).await;
        queue.now(&k("a/x"));
        assert_eq!(queue.next_due().await.since, start + 11 * S);
        // Triggered again while it waits past its deadline (a change seen meanwhile): its read
        // must begin after the second trigger, though it keeps its place.
        queue.now(&k("a/y"));
        tokio::time::advance(2 * S).await;
        queue.now(&k("a/y"));
        queue.schedule(&k("a/y"), 30 * S);
        let due = queue.next_due().await;
        assert_eq!((&*due.key, due.since), ("a/y", start + 13 * S));
    }

    #[test]
    fn stale_entries_do_not_pile_up() {
        let queue = Queue::default();
        for i in (0..10_000).rev() {
            queue.schedule(&k("a/x"), Duration::from_millis(i));
        }
        let inner = queue.lock();
        assert_eq!(inner.due.len(), 1);
        assert!(inner.order.len() <= 1026, "{}", inner.order.len());
    }
}
