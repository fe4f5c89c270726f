//! Per-object series (KES's and ESO's): a few numbers per object in one sorted map, written out
//! in the text exposition format at scrape time, a piece of `PIECE_OBJECTS` objects at a time.
//!
//! As prometheus-crate children they would cost several times more per series, resident and
//! again per scrape. Written at once, the text (~3 MiB at 10,000 KES objects) and its regrown
//! buffer raised the controller's peak RSS on every scrape; in pieces, a scrape holds the few
//! pieces the server has queued (docs/benchmarks.md). The map is locked per piece, not for the whole response: a piece
//! resumes after the last object written, so an object added or removed meanwhile is written
//! once or not at all, never twice.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

/// Objects written per piece of a scrape. hyper queues up to 16 pieces of a response while the
/// scraper reads slower than we write, so the size of a piece bounds what a scrape holds
/// (docs/benchmarks.md, part 2 step 7).
pub const PIECE_OBJECTS: usize = 32;

/// Where a family's next piece starts: after this (namespace, name).
pub type Cursor = (Box<str>, Box<str>);

/// One metric family of per-object series.
pub struct Family<C> {
    pub name: &'static str,
    pub help: &'static str,
    /// `gauge` or `counter`.
    pub kind: &'static str,
    /// Appends one object's lines of this family.
    pub lines: fn(out: &mut String, family: &str, namespace: &str, name: &str, counts: &C),
}

/// namespace → name → counts. `Box<str>` keys: no spare capacity, each namespace once.
type ByNamespace<C> = BTreeMap<Box<str>, BTreeMap<Box<str>, C>>;

pub struct PerObject<C: 'static> {
    families: &'static [Family<C>],
    objects: Mutex<ByNamespace<C>>,
}

impl<C: Default> PerObject<C> {
    pub const fn new(families: &'static [Family<C>]) -> Self {
        PerObject {
            families,
            objects: Mutex::new(BTreeMap::new()),
        }
    }

    fn objects(&self) -> MutexGuard<'_, ByNamespace<C>> {
        // A panic elsewhere leaves plain numbers behind; still consistent.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the counts of `namespace/name` (default counts if it has none yet).
    pub fn update(&self, namespace: &str, name: &str, change: impl FnOnce(&mut C)) {
        let mut objects = self.objects();
        let names = match objects.get_mut(namespace) {
            Some(names) => names,
            None => objects.entry(namespace.into()).or_default(),
        };
        match names.get_mut(name) {
            Some(c) => change(c),
            None => change(names.entry(name.into()).or_default()),
        }
    }

    /// Keeps the series of objects for which `live(namespace, name)` holds; drops the rest.
    pub fn retain(&self, mut live: impl FnMut(&str, &str) -> bool) {
        self.objects().retain(|ns, names| {
            names.retain(|name, _| live(ns, name));
            !names.is_empty()
        });
    }
}

/// Per-object families written in pieces, whatever their counts' type.
pub trait Pieces: Send + Sync {
    fn families(&self) -> usize;

    /// Appends family `family`'s lines for up to `max` objects after `after`, in (namespace,
    /// name) order, with its HELP and TYPE lines first when `after` is `None`. Returns where
    /// the next piece starts, `None` when the family is complete. Writes nothing when there is
    /// no object at all (the prometheus crate leaves empty families out too).
    fn write(
        &self,
        family: usize,
        after: Option<&Cursor>,
        max: usize,
        out: &mut String,
    ) -> Option<Cursor>;
}

impl<C: Default + Send> Pieces for PerObject<C> {
    fn families(&self) -> usize {
        self.families.len()
    }

    fn write(
        &self,
        family: usize,
        after: Option<&Cursor>,
        max: usize,
        out: &mut String,
    ) -> Option<Cursor> {
        let f = self.families.get(family)?;
        let objects = self.objects();
        if after.is_none() {
            if objects.is_empty() {
                return None;
            }
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        }
        let from_ns = after.map_or(Bound::Unbounded, |(ns, _)| Bound::Included(&**ns));
        let mut last: Option<(&str, &str)> = None;
        let mut written = 0;
        for (ns, names) in objects.range::<str, _>((from_ns, Bound::Unbounded)) {
            let from_name = match after {
                Some((after_ns, after_name)) if after_ns == ns => Bound::Excluded(&**after_name),
                _ => Bound::Unbounded,
            };
            for (name, counts) in names.range::<str, _>((from_name, Bound::Unbounded)) {
                if written == max {
                    return last.map(|(ns, name)| (ns.into(), name.into()));
                }
                (f.lines)(out, f.name, ns, name, counts);
                last = Some((ns, name));
                written += 1;
            }
        }
        None
    }
}

/// Where a scrape of per-object families stands: which set, which family, after which object.
#[derive(Default)]
pub struct ScrapeCursor {
    set: usize,
    family: usize,
    after: Option<Cursor>,
}

impl ScrapeCursor {
    /// The next piece of text of the families of `sets` (`max` objects at most), `None` when
    /// all are written.
    pub fn next_piece(&mut self, sets: &[&dyn Pieces], max: usize) -> Option<String> {
        loop {
            let set = sets.get(self.set)?;
            if self.family >= set.families() {
                self.set += 1;
                self.family = 0;
                continue;
            }
            let mut out = String::new();
            self.after = set.write(self.family, self.after.as_ref(), max.max(1), &mut out);
            if self.after.is_none() {
                self.family += 1;
            }
            if !out.is_empty() {
                return Some(out);
            }
        }
    }
}

/// Label value escaping of the text exposition format: backslash, double quote, newline.
pub fn escape(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `label="value"` (escaped), preceded by a comma unless it is the first label.
pub fn label(out: &mut String, first: bool, label: &str, value: &str) {
    if !first {
        out.push(',');
    }
    out.push_str(label);
    out.push_str("=\"");
    escape(out, value);
    out.push('"');
}

/// All of the families' text, as a scrape writes it.
#[cfg(test)]
pub fn text(sets: &[&dyn Pieces]) -> String {
    let mut cursor = ScrapeCursor::default();
    std::iter::from_fn(|| cursor.next_piece(sets, PIECE_OBJECTS)).collect()
}

/// The text of one exposition, for comparing ours with the prometheus crate's: each family's
/// HELP and TYPE lines, then its series sorted (the crate sorts series by label values, ours
/// come in (namespace, name) order; the format leaves the order within a family free).
#[cfg(test)]
pub fn normalized(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut series: Vec<&str> = Vec::new();
    let flush = |out: &mut Vec<String>, series: &mut Vec<&str>| {
        series.sort_unstable();
        out.extend(series.drain(..).map(str::to_string));
    };
    for line in text.lines() {
        if line.starts_with("# HELP") {
            flush(&mut out, &mut series);
            out.push(line.to_string());
        } else if line.starts_with('#') {
            out.push(line.to_string());
        } else {
            series.push(line);
        }
    }
    flush(&mut out, &mut series);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct N(u64);

    static FAMILIES: [Family<N>; 2] = [
        Family {
            name: "f_a",
            help: "A.",
            kind: "gauge",
            lines: |out, family, ns, name, n| {
                out.push_str(family);
                out.push('{');
                label(out, true, "name", name);
                label(out, false, "namespace", ns);
                let _ = writeln!(out, "}} {}", n.0);
            },
        },
        Family {
            name: "f_b",
            help: "B.",
            kind: "counter",
            lines: |out, family, ns, name, _| {
                let _ = writeln!(out, "{family}{{ns=\"{ns}\",name=\"{name}\"}} 1");
            },
        },
    ];

    /// The whole text, written `max` objects per piece, and the number of pieces; `between`
    /// runs after each piece.
    fn pieces(p: &PerObject<N>, max: usize, between: impl Fn(usize)) -> (String, usize) {
        let mut cursor = ScrapeCursor::default();
        let mut text = String::new();
        let mut n = 0;
        while let Some(piece) = cursor.next_piece(&[p], max) {
            text.push_str(&piece);
            n += 1;
            between(n);
        }
        (text, n)
    }

    #[test]
    fn pieces_resume_where_the_last_ended_across_namespaces() {
        let p = PerObject::new(&FAMILIES);
        for (ns, name) in [("b", "x"), ("a", "y"), ("a", "x"), ("c", "z"), ("b", "a")] {
            p.update(ns, name, |n| n.0 += 1);
        }
        p.update("a", "x", |n| n.0 += 1);
        let (whole, one_piece) = pieces(&p, usize::MAX, |_| ());
        let (in_twos, n) = pieces(&p, 2, |_| ());
        assert_eq!(one_piece, 2);
        assert_eq!(n, 6, "5 objects in pieces of 2, per family");
        assert_eq!(in_twos, whole);
        let names: Vec<&str> = whole.lines().filter(|l| l.starts_with("f_a{")).collect();
        assert_eq!(
            names,
            [
                "f_a{name=\"x\",namespace=\"a\"} 2",
                "f_a{name=\"y\",namespace=\"a\"} 1",
                "f_a{name=\"a\",namespace=\"b\"} 1",
                "f_a{name=\"x\",namespace=\"b\"} 1",
                "f_a{name=\"z\",namespace=\"c\"} 1",
            ]
        );
        assert!(
            whole.starts_with("# HELP f_a A.\n# TYPE f_a gauge\n"),
            "{whole}"
        );
        assert!(
            whole.contains("# HELP f_b B.\n# TYPE f_b counter\n"),
            "{whole}"
        );
    }

    #[test]
    fn objects_removed_or_added_between_pieces_are_written_at_most_once() {
        let p = PerObject::new(&FAMILIES);
        for (ns, name) in [("a", "1"), ("a", "2"), ("b", "1"), ("b", "2")] {
            p.update(ns, name, |_| ());
        }
        // After the first piece (a/1, a/2): b's namespace goes, c and a/0 (behind the cursor)
        // come.
        let (text, _) = pieces(&p, 2, |n| {
            if n == 1 {
                p.retain(|ns, _| ns != "b");
                p.update("c", "1", |_| ());
                p.update("a", "0", |_| ());
            }
        });
        let first: Vec<&str> = text.lines().filter(|l| l.starts_with("f_a{")).collect();
        assert_eq!(
            first,
            [
                "f_a{name=\"1\",namespace=\"a\"} 0",
                "f_a{name=\"2\",namespace=\"a\"} 0",
                "f_a{name=\"1\",namespace=\"c\"} 0",
            ]
        );
    }

    #[test]
    fn no_objects_no_family() {
        let p = PerObject::new(&FAMILIES);
        let (text, _) = pieces(&p, 2, |_| ());
        assert_eq!(text, "");
    }
}
