//! One scope's controller loop: objects fall due in the `Queue` (a change, a trigger, a poll, a
//! retry) and their syncs run — one at a time per object, at most `STARTED_SYNCS` at once (they
//! then wait at the gate for a sync slot). An object triggered while its sync runs is synced
//! again right after.
//!
//! kube-runtime's `Controller` did this before. Per object, its scheduler kept two copies of
//! the full reference; and its runner polled every started sync whenever any of them woke,
//! which at 1,024 started syncs was an eighth of the controller's CPU (docs/benchmarks.md).
//! Here each sync is a task that the runtime wakes alone.

use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::front_end::FrontEnd;
use super::gate::Lane;
use super::queue::Queue;
use super::reconcile::{admit, in_slot, Admission};
use super::scope_store::ScopeStore;
use super::stored::Stored;
use super::{error_policy, Context};

/// Syncs started at once. They wait at `Shared::gate`, which holds the SYNC_CONCURRENCY slots
/// and lets new and changed objects overtake periodic refreshes, while the queue hands out due
/// objects in deadline order. So a new object overtakes up to this many queued refreshes; beyond
/// that it waits in the queue. Bounded, as each started sync is a task.
pub const STARTED_SYNCS: usize = 1024;

/// Urgent syncs (new and changed objects) a scope starts per sync slot, at most. More could not
/// run sooner: urgent syncs take the slots in the order they were started. So in an initial sync,
/// where every object is new, the objects wait in the queue rather than as a thousand tasks at
/// the gate; refreshes are started as before, up to `STARTED_SYNCS`, to be overtaken.
pub const URGENT_STARTED_PER_SLOT: usize = 2;

/// What a finished sync asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Sync again after this long (the next poll, or a retry).
    After(Duration),
    /// Only when the object changes or is triggered.
    Await,
}

impl Next {
    /// How long until the next sync, `None` for `Await`.
    pub fn after(self) -> Option<Duration> {
        match self {
            Next::After(after) => Some(after),
            Next::Await => None,
        }
    }
}

/// A due object's turn, as the loop sees it.
pub enum Started<F> {
    /// Decided at once (not served here, put off, a panic): when to sync it next, if ever.
    Done(Option<Duration>),
    /// A sync to run in this lane, which answers the same.
    Run(F, Lane),
}

/// Runs the scope's syncs until `shutdown`; then lets the running ones finish (a write is never
/// cut in half) and returns.
pub async fn run<K: FrontEnd>(
    store: Arc<ScopeStore<K>>,
    queue: Arc<Queue>,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()>,
) {
    let urgent_limit = usize::from(ctx.shared.config.sync_concurrency) * URGENT_STARTED_PER_SLOT;
    drive(store, queue, shutdown, urgent_limit, move |obj, due| {
        start(obj, due, &ctx)
    })
    .await;
}

/// Admits the object before a sync is started for it: what waits at the gate is then only an
/// admitted sync (at the initial sync, `STARTED_SYNCS` of them at once).
fn start<K: FrontEnd>(
    obj: Arc<Stored<K>>,
    due: Instant,
    ctx: &Arc<Context>,
) -> Started<impl Future<Output = Option<Duration>> + Send + 'static> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| admit(&obj, &ctx.shared))) {
        Ok(Admission::Done(next)) => Started::Done(next.after()),
        Ok(Admission::Wait { lane, changed_at }) => {
            Started::Run(sync_once(obj, ctx.clone(), lane, changed_at, due), lane)
        }
        Err(_) => Started::Done(panicked(&obj, ctx)),
    }
}

/// The loop of `run`, for any sync (`None`: sync again when the object changes), with at most
/// `urgent_limit` urgent syncs started at once. `start` gets the object and since when it is due.
async fn drive<K, F>(
    store: Arc<ScopeStore<K>>,
    queue: Arc<Queue>,
    shutdown: impl Future<Output = ()>,
    urgent_limit: usize,
    start: impl Fn(Arc<Stored<K>>, Instant) -> Started<F>,
) where
    K: FrontEnd,
    F: Future<Output = Option<Duration>> + Send + 'static,
{
    let urgent_limit = urgent_limit.max(1);
    let mut running = JoinSet::<(Arc<str>, Lane, Option<Duration>)>::new();
    let mut urgent = 0;
    let mut active: HashSet<Arc<str>> = HashSet::new();
    let mut again: HashSet<Arc<str>> = HashSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(done) = running.join_next() => {
                // Panics are caught inside the task, so a task always joins.
                let Ok((key, lane, next)) = done else { continue };
                if lane == Lane::Urgent {
                    urgent -= 1;
                }
                active.remove(&key);
                if let Some(after) = next {
                    queue.schedule(&key, after);
                }
                if again.remove(&key) {
                    queue.schedule(&key, Duration::ZERO);
                }
            }
            due = queue.next_due(), if running.len() < STARTED_SYNCS && urgent < urgent_limit => {
                let key = due.key;
                if active.contains(&key) {
                    again.insert(key);
                    continue;
                }
                // Gone since it was scheduled: nothing to do.
                let Some(obj) = store.get(&key) else { continue };
                match start(obj, due.since) {
                    Started::Done(Some(after)) => queue.schedule(&key, after),
                    Started::Done(None) => {}
                    Started::Run(sync, lane) => {
                        if lane == Lane::Urgent {
                            urgent += 1;
                        }
                        active.insert(key.clone());
                        running.spawn(sync.map(move |next| (key, lane, next)));
                    }
                }
            }
        }
    }
    while running.join_next().await.is_some() {}
}

/// One admitted sync, due since `due`, and when to sync the object next (`None`: when it
/// changes). Combinators,
/// not an `async fn`: an `async fn` would hold the sync's future twice (rust-lang/rust#62958),
/// and up to `STARTED_SYNCS` of these wait at the gate.
pub(super) fn sync_once<K: FrontEnd>(
    obj: Arc<Stored<K>>,
    ctx: Arc<Context>,
    lane: Lane,
    changed_at: Option<std::time::Instant>,
    due: Instant,
) -> impl Future<Output = Option<Duration>> + Send + 'static {
    AssertUnwindSafe(in_slot(obj.clone(), ctx.clone(), lane, changed_at, due))
        .catch_unwind()
        .map(move |outcome| match outcome {
            Ok(Ok(next)) => next.after(),
            Ok(Err(e)) => Some(error_policy(obj, &e, ctx)),
            Err(_) => panicked(&obj, &ctx),
        })
}

/// A panic in an object's turn: logged, and the object tried again at the next poll.
fn panicked<K: FrontEnd>(obj: &Stored<K>, ctx: &Context) -> Option<Duration> {
    tracing::error!(
        api = K::API,
        namespace = obj.namespace(),
        name = obj.name(),
        "sync panicked; trying again at the next poll"
    );
    Some(ctx.shared.config.poll_interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::kes::crd::ExternalSecret;
    use kube::runtime::watcher;
    use std::sync::Mutex;
    use tokio::time::Instant;

    const S: Duration = Duration::from_secs(1);

    fn k(key: &str) -> Arc<str> {
        Arc::from(key)
    }

    fn store(names: &[&str]) -> Arc<ScopeStore<ExternalSecret>> {
        let store = Arc::new(ScopeStore::default());
        for name in names {
            let es = serde_json::from_value(serde_json::json!({
                "apiVersion": "kubernetes-client.io/v1", "kind": "ExternalSecret",
                "metadata": {"name": name, "namespace": "a", "uid": name},
                "spec": {"backendType": "vault", "data": []}
            }))
            .unwrap();
            store.apply(watcher::Event::Apply(es));
        }
        store
    }

    /// Each sync's (name, start, end), a sync taking `takes`; objects named `p…` are periodic
    /// refreshes, the others urgent.
    type Log = Arc<Mutex<Vec<(String, Duration, Duration)>>>;

    fn syncs(
        log: Log,
        takes: Duration,
        next: Option<Duration>,
    ) -> impl Fn(
        Arc<Stored<ExternalSecret>>,
        Instant,
    ) -> Started<futures::future::BoxFuture<'static, Option<Duration>>> {
        let t0 = Instant::now();
        move |obj, _| {
            let log = log.clone();
            let lane = if obj.name().starts_with('p') {
                Lane::Periodic
            } else {
                Lane::Urgent
            };
            Started::Run(
                async move {
                    let start = t0.elapsed();
                    tokio::time::sleep(takes).await;
                    log.lock()
                        .unwrap()
                        .push((obj.name().to_string(), start, t0.elapsed()));
                    next
                }
                .boxed(),
                lane,
            )
        }
    }

    /// A runner over `names`, each sync taking `takes` and asking for `next`.
    struct Running {
        queue: Arc<Queue>,
        log: Log,
        stop: tokio::sync::oneshot::Sender<()>,
        runner: tokio::task::JoinHandle<()>,
    }

    fn start(names: &[&str], takes: Duration, next: Option<Duration>) -> Running {
        start_limited(names, takes, next, STARTED_SYNCS)
    }

    fn start_limited(
        names: &[&str],
        takes: Duration,
        next: Option<Duration>,
        urgent_limit: usize,
    ) -> Running {
        let queue = Arc::new(Queue::default());
        let log = Log::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runner = tokio::spawn(drive(
            store(names),
            queue.clone(),
            async move {
                let _ = stopped.await;
            },
            urgent_limit,
            syncs(log.clone(), takes, next),
        ));
        Running {
            queue,
            log,
            stop,
            runner,
        }
    }

    impl Running {
        /// Shuts the runner down; the syncs it ran.
        async fn stop(self) -> Vec<(String, Duration, Duration)> {
            let _ = self.stop.send(());
            self.runner.await.unwrap();
            let log = self.log.lock().unwrap().clone();
            log
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_trigger_during_a_sync_runs_it_again_after_never_alongside() {
        let run = start(&["x"], 10 * S, None);
        run.queue.now(&k("a/x"));
        tokio::time::sleep(2 * S).await;
        run.queue.now(&k("a/x"));
        run.queue.now(&k("a/x"));
        tokio::time::sleep(30 * S).await;
        assert_eq!(
            run.stop().await,
            [
                ("x".to_string(), Duration::ZERO, 10 * S),
                ("x".to_string(), 10 * S, 20 * S)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_outcome_schedules_the_next_sync_and_gone_objects_are_skipped() {
        let run = start(&["x"], S, Some(30 * S));
        run.queue.now(&k("a/x"));
        run.queue.now(&k("a/gone"));
        tokio::time::sleep(65 * S).await;
        let starts: Vec<_> = run.stop().await.iter().map(|(_, s, _)| *s).collect();
        assert_eq!(starts, [Duration::ZERO, 31 * S, 62 * S]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_running_syncs_finish_and_starts_no_more() {
        let run = start(&["x", "y"], 10 * S, None);
        run.queue.now(&k("a/x"));
        tokio::time::sleep(S).await;
        run.queue.schedule(&k("a/y"), 5 * S);
        assert_eq!(
            run.stop().await,
            [("x".to_string(), Duration::ZERO, 10 * S)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn urgent_syncs_are_started_up_to_their_limit_and_refreshes_beside_them() {
        let run = start_limited(&["p1", "p2", "u1", "u2", "u3"], 10 * S, None, 2);
        for key in ["a/p1", "a/p2", "a/u1", "a/u2", "a/u3"] {
            run.queue.now(&k(key));
        }
        tokio::time::sleep(30 * S).await;
        let mut starts: Vec<_> = run
            .stop()
            .await
            .into_iter()
            .map(|(name, start, _)| (name, start))
            .collect();
        starts.sort();
        assert_eq!(
            starts,
            [
                ("p1".to_string(), Duration::ZERO),
                ("p2".to_string(), Duration::ZERO),
                ("u1".to_string(), Duration::ZERO),
                ("u2".to_string(), Duration::ZERO),
                ("u3".to_string(), 10 * S),
            ]
        );
    }
}
