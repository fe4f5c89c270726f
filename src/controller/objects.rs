//! Pure: what the controller remembers of each ExternalSecret between syncs, keyed by uid, and
//! nothing else holds any of it. No secret values: the fingerprint is a digest of the desired
//! Secret. The `Ready` reason gauge and KES's per-object series are pruned here too, with the
//! objects they describe.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::write_loop::Restores;
use crate::metrics::Metrics;

/// How often the same warning may be published again while it persists.
pub const WARNING_REPEAT: Duration = Duration::from_secs(300);

/// Poll intervals without a confirmed sync after which an object counts as overdue (the
/// `vault_external_secrets_externalsecrets_overdue` gauge and its alert).
const OVERDUE_INTERVALS: u32 = 3;

#[derive(Default)]
struct State {
    /// `metadata.generation` at the last sync attempt: a different one means the spec changed.
    generation: Option<i64>,
    /// Fingerprint of what we last wrote or confirmed, and the Secret's resourceVersion then.
    written: Option<([u8; 32], Box<str>)>,
    failures: u32,
    /// The `Ready` reason last reported (the gauge counts objects per reason), as its index in
    /// `Reasons`: a byte where the string took 16, which puts the boxed record in the
    /// allocator's 128-byte class instead of its 160-byte one.
    reason: u8,
    /// Since when it waits to be confirmed in sync: its last success, else its first attempt.
    waiting_since: Option<Instant>,
    /// Its poll interval at its last sync (overdue after three of them); `None`: not polled.
    poll: Option<Duration>,
    /// Its poll phase at the last success (`schedule::next_poll`), for a refresh put off
    /// under overload to come back on its own slot.
    phase: Option<u64>,
    /// What most objects never need, boxed: one pointer in the common case.
    rare: Option<Box<Rare>>,
}

#[derive(Default)]
struct Rare {
    /// Last warning Event (message, when).
    last_warning: Option<(String, Instant)>,
    /// Our recent restores of a Secret someone else changed.
    restores: Restores,
    /// A change event for a secret it reads arrived then, not yet synced.
    changed_at: Option<Instant>,
    /// A templated object's last render: digest of its inputs, fingerprint of the result.
    rendered: Option<([u8; 32], [u8; 32])>,
}

impl State {
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }
}

/// The `Ready` reasons reported so far, each once; index 0 is none yet. Reasons are the code's
/// own literals (`report::reason`), a few dozen at most.
struct Reasons(Vec<&'static str>);

impl Reasons {
    /// Its index, interned if new; 0 (none: the object is not counted) if the table were
    /// ever full.
    fn index(&mut self, reason: &'static str) -> u8 {
        let i = match self.0.iter().position(|r| *r == reason) {
            Some(i) => i,
            None => {
                self.0.push(reason);
                self.0.len() - 1
            }
        };
        u8::try_from(i).unwrap_or(0)
    }

    /// The reason at `index`; `None` for none.
    fn get(&self, index: u8) -> Option<&'static str> {
        self.0
            .get(usize::from(index))
            .copied()
            .filter(|r| !r.is_empty())
    }
}

/// Each `State` is boxed: the map's slots (a power of two, many of them empty) then hold
/// a pointer each instead of a whole record. The key is the store's own allocation of the uid
/// (`Stored::shared_uid`), not a copy.
type Map = HashMap<Arc<str>, Box<State>>;

pub struct Objects {
    map: Mutex<Map>,
    /// Locked only while `map` is.
    reasons: Mutex<Reasons>,
    metrics: Arc<Metrics>,
}

impl Objects {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Objects {
            map: Mutex::new(HashMap::new()),
            reasons: Mutex::new(Reasons(vec![""])),
            metrics,
        }
    }

    fn map(&self) -> MutexGuard<'_, Map> {
        // Poisoning only means a panic elsewhere; the map itself stays consistent.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reasons(&self) -> MutexGuard<'_, Reasons> {
        self.reasons.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A sync of generation `generation` starts; `poll` is the object's poll interval (`None`:
    /// not polled, so never overdue).
    pub fn begin(
        &self,
        uid: &Arc<str>,
        generation: Option<i64>,
        poll: Option<Duration>,
        now: Instant,
    ) {
        let mut map = self.map();
        // The store's allocation of the uid, if the record is new.
        let st = map.entry(uid.clone()).or_default();
        st.generation = generation;
        st.waiting_since.get_or_insert(now);
        st.poll = poll;
    }

    /// How many objects it remembers.
    pub fn count(&self) -> usize {
        self.map().len()
    }

    /// Its poll interval at its last sync, if it is polled.
    pub fn poll_interval(&self, uid: &str) -> Option<Duration> {
        self.map().get(uid).and_then(|st| st.poll)
    }

    /// How many objects have not been confirmed in sync for longer than three poll intervals.
    pub fn overdue(&self, now: Instant) -> usize {
        self.map()
            .values()
            .filter(|st| match (st.waiting_since, st.poll) {
                (Some(since), Some(poll)) => {
                    now.saturating_duration_since(since) > poll.saturating_mul(OVERDUE_INTERVALS)
                }
                _ => false,
            })
            .count()
    }

    /// Whether a watch event can need a sync: never attempted by this process (new, or a new
    /// leader), or its spec changed since (generation). Our own status patches cannot.
    pub fn needs_sync(&self, uid: &str, generation: Option<i64>) -> bool {
        let attempted = self.map().get(uid).and_then(|st| st.generation);
        attempted.is_none() || attempted != generation
    }

    /// What we last wrote or confirmed: (fingerprint, resourceVersion).
    pub fn written(&self, uid: &str) -> Option<([u8; 32], String)> {
        let map = self.map();
        let (fingerprint, rv) = map.get(uid)?.written.as_ref()?;
        Some((*fingerprint, rv.to_string()))
    }

    pub fn record_written(&self, uid: &str, fingerprint: [u8; 32], rv: String) {
        entry(&mut self.map(), uid).written = Some((fingerprint, rv.into()));
    }

    /// The fingerprint the last render gave from these inputs, if the inputs are the same.
    pub fn rendered_from(&self, uid: &str, inputs: &[u8; 32]) -> Option<[u8; 32]> {
        let map = self.map();
        let (last_inputs, fingerprint) = map.get(uid)?.rare.as_ref()?.rendered?;
        (last_inputs == *inputs).then_some(fingerprint)
    }

    pub fn record_rendered(&self, uid: &str, inputs: [u8; 32], fingerprint: [u8; 32]) {
        entry(&mut self.map(), uid).rare().rendered = Some((inputs, fingerprint));
    }

    /// A change event says a secret the object reads changed: its next sync is urgent.
    pub fn changed(&self, uid: &str, at: Instant) {
        let mut map = self.map();
        let st = entry(&mut map, uid);
        st.rare().changed_at.get_or_insert(at);
    }

    /// When the pending change event arrived, if one did (cleared: this sync serves it).
    pub fn take_changed(&self, uid: &str) -> Option<Instant> {
        let mut map = self.map();
        map.get_mut(uid)?.rare.as_mut()?.changed_at.take()
    }

    /// The sync succeeded (the Secret is confirmed in sync): failures and the last warning are
    /// forgotten.
    pub fn succeeded(&self, uid: &str, phase: u64, now: Instant) {
        let mut map = self.map();
        let st = entry(&mut map, uid);
        st.failures = 0;
        if let Some(rare) = st.rare.as_mut() {
            rare.last_warning = None;
        }
        st.waiting_since = Some(now);
        st.phase = Some(phase);
    }

    /// The poll phase of its last success, if it had one.
    pub fn phase(&self, uid: &str) -> Option<u64> {
        self.map().get(uid).and_then(|st| st.phase)
    }

    /// The sync failed; returns the number of failures in a row.
    pub fn failed(&self, uid: &str) -> u32 {
        let mut map = self.map();
        let st = entry(&mut map, uid);
        st.failures = st.failures.saturating_add(1);
        st.failures
    }

    /// Uids whose last sync failed.
    pub fn failing(&self) -> HashSet<String> {
        self.map()
            .iter()
            .filter(|(_, st)| st.failures > 0)
            .map(|(uid, _)| uid.to_string())
            .collect()
    }

    /// Records the `Ready` reason, moving the object between the gauge's reasons.
    pub fn set_reason(&self, uid: &str, reason: &'static str) {
        let mut map = self.map();
        let st = entry(&mut map, uid);
        let mut reasons = self.reasons();
        let index = reasons.index(reason);
        if st.reason != index {
            if let Some(last) = reasons.get(st.reason) {
                self.metrics.ready.with_label_values(&[last]).dec();
            }
            if let Some(now) = reasons.get(index) {
                self.metrics.ready.with_label_values(&[now]).inc();
            }
            st.reason = index;
        }
    }

    /// Whether a warning should be published now: a new message, or the same one after
    /// `WARNING_REPEAT`. Records it when so.
    pub fn warning_due(&self, uid: &str, message: &str, now: Instant) -> bool {
        let mut map = self.map();
        let st = entry(&mut map, uid);
        let rare = st.rare();
        let repeat = rare
            .last_warning
            .as_ref()
            .is_some_and(|(m, at)| m == message && now.duration_since(*at) < WARNING_REPEAT);
        if !repeat {
            rare.last_warning = Some((message.to_string(), now));
        }
        !repeat
    }

    /// Write-loop bookkeeping: `Some(count)` when one more restore would close a loop, else the
    /// restore is counted.
    pub fn restore(&self, uid: &str, now: Instant) -> Option<usize> {
        let mut map = self.map();
        let st = entry(&mut map, uid);
        let restores = &mut st.rare().restores;
        if restores.would_loop(now) {
            return Some(restores.count(now, false));
        }
        restores.count(now, true);
        None
    }

    /// A poll found the Secret as we left it.
    pub fn undisturbed(&self, uid: &str) {
        if let Some(rare) = self.map().get_mut(uid).and_then(|st| st.rare.as_mut()) {
            rare.restores.clear();
        }
    }

    /// Forgets the objects that are gone (deleted, or no longer ours): `live` holds the uids
    /// still present. Their metric series go with `prune_series`.
    pub fn prune(&self, live: &HashSet<&str>) {
        let mut map = self.map();
        let reasons = self.reasons();
        map.retain(|uid, st| {
            if live.contains(&**uid) {
                return true;
            }
            if let Some(last) = reasons.get(st.reason) {
                self.metrics.ready.with_label_values(&[last]).dec();
            }
            false
        });
    }

    /// Drops the per-object metric series of objects that are gone: `live` holds the
    /// (namespace, name) of those still present.
    pub fn prune_series(&self, live: &HashSet<(&str, &str)>) {
        let live_name = |ns: &str, name: &str| live.contains(&(ns, name));
        self.metrics.per_object.retain(live_name);
        self.metrics.eso_per_object.retain(live_name);
    }
}

/// The object's record, a new one if it has none (a key is allocated only then).
fn entry<'m>(map: &'m mut Map, uid: &str) -> &'m mut State {
    let key = map
        .get_key_value(uid)
        .map_or_else(|| Arc::from(uid), |(key, _)| key.clone());
    map.entry(key).or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects() -> Objects {
        Objects::new(Arc::new(Metrics::new().unwrap()))
    }

    #[test]
    fn only_new_objects_and_spec_changes_need_a_sync() {
        let o = objects();
        assert!(o.needs_sync("u", Some(1)), "never attempted");
        assert!(o.needs_sync("u", None), "never attempted, no generation");
        o.begin(&Arc::from("u"), Some(3), None, Instant::now());
        assert!(!o.needs_sync("u", Some(3)), "status patch or label edit");
        assert!(o.needs_sync("u", Some(4)), "spec edited");
    }

    #[test]
    fn failures_count_and_reset() {
        let o = objects();
        assert_eq!(o.failed("u"), 1);
        assert_eq!(o.failed("u"), 2);
        assert!(o.failing().contains("u"));
        o.succeeded("u", 7, Instant::now());
        assert!(o.failing().is_empty());
    }

    #[test]
    fn overdue_after_three_intervals_without_a_confirmed_sync() {
        let o = objects();
        let t = Instant::now();
        let poll = Some(Duration::from_secs(10));
        o.begin(&Arc::from("never-synced"), Some(1), poll, t);
        o.begin(&Arc::from("synced"), Some(1), poll, t);
        o.begin(&Arc::from("not-polled"), Some(1), None, t);
        o.succeeded("synced", 7, t + Duration::from_secs(25));
        assert_eq!(
            o.overdue(t + Duration::from_secs(30)),
            0,
            "exactly 3 intervals"
        );
        assert_eq!(o.overdue(t + Duration::from_secs(31)), 1, "never-synced");
        // A failing retry does not reset the wait; only a success does.
        o.begin(
            &Arc::from("never-synced"),
            Some(1),
            poll,
            t + Duration::from_secs(40),
        );
        o.failed("never-synced");
        assert_eq!(o.overdue(t + Duration::from_secs(56)), 2, "both now");
        o.succeeded("never-synced", 7, t + Duration::from_secs(56));
        assert_eq!(o.overdue(t + Duration::from_secs(56)), 1);
        assert_eq!(
            o.overdue(t + Duration::from_secs(3600)),
            2,
            "not-polled never counts"
        );
    }

    #[test]
    fn a_render_is_remembered_for_its_inputs_only() {
        let o = objects();
        assert_eq!(o.rendered_from("u", &[1; 32]), None);
        o.record_rendered("u", [1; 32], [7; 32]);
        assert_eq!(o.rendered_from("u", &[1; 32]), Some([7; 32]));
        assert_eq!(o.rendered_from("u", &[2; 32]), None, "inputs changed");
        o.record_rendered("u", [2; 32], [8; 32]);
        assert_eq!(o.rendered_from("u", &[1; 32]), None, "only the last render");
    }

    #[test]
    fn warnings_are_not_repeated_within_the_window() {
        let o = objects();
        let t = Instant::now();
        assert!(o.warning_due("u", "boom", t));
        assert!(!o.warning_due("u", "boom", t + Duration::from_secs(10)));
        assert!(o.warning_due("u", "other", t + Duration::from_secs(11)));
        assert!(o.warning_due("u", "other", t + Duration::from_secs(11) + WARNING_REPEAT));
        o.succeeded("u", 7, Instant::now());
        assert!(
            o.warning_due("u", "other", t + Duration::from_secs(12)),
            "after a success"
        );
    }

    #[test]
    fn ready_gauge_follows_reasons_and_pruning() {
        let o = objects();
        let gauge = |r: &str| o.metrics.ready.with_label_values(&[r]).get();
        o.set_reason("a", "SecretSynced");
        o.set_reason("b", "SecretSynced");
        o.set_reason("b", "VaultReadFailed");
        assert_eq!((gauge("SecretSynced"), gauge("VaultReadFailed")), (1, 1));
        o.metrics.per_object.record("ns", "a", "vault", true);
        o.metrics.per_object.record("ns", "b", "vault", false);
        o.metrics.eso_per_object.record("ns", "a", true);
        o.metrics.eso_per_object.record("ns", "b", true);
        o.prune(&["a"].into());
        o.prune_series(&[("ns", "a")].into());
        assert_eq!((gauge("SecretSynced"), gauge("VaultReadFailed")), (1, 0));
        let text = o.metrics.encode().unwrap();
        assert!(
            text.contains("name=\"a\"") && !text.contains("name=\"b\""),
            "{text}"
        );
        assert!(
            text.contains(r#"externalsecret_sync_calls_total{name="a",namespace="ns"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn a_record_fits_the_allocators_128_byte_class() {
        assert!(std::mem::size_of::<State>() <= 128);
    }

    #[test]
    fn restores_close_a_loop_at_the_third() {
        let o = objects();
        let t = Instant::now();
        assert_eq!(o.restore("u", t), None);
        assert_eq!(o.restore("u", t), None);
        assert_eq!(o.restore("u", t), Some(2));
        o.undisturbed("u");
        assert_eq!(o.restore("u", t), None);
    }
}
