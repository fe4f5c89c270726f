//! Pure: how fetched names become Secret keys for ESO's `dataFrom` — `rewrite[]` (`regexp`,
//! `transform`) in order, else `conversionStrategy: Default` — and which keys a Secret may hold.

use std::collections::BTreeMap;

use regex::RegexBuilder;

use super::render::check_secret_key;
use crate::gotmpl;

/// A compiled pattern may use at most this much memory: a tenant's regexp must not cost the
/// controller more than a small, fixed amount.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// One of ESO's `rewrite[]` operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// `regexp`: every match of `source` in a key is replaced by `target` (`$1` / `${name}`
    /// expand, as Go's `ReplaceAllString`).
    Regexp { source: String, target: String },
    /// `transform`: the key becomes what `template` renders with the key as `.value`.
    Transform { template: String },
}

/// The renaming a source's keys go through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRules {
    pub rewrite: Vec<Rewrite>,
    /// With no rewrite: each character a Secret key may not hold becomes `_` (ESO's
    /// `conversionStrategy: Default`). Off for KES, whose keys must be valid as they are.
    pub convert: bool,
}

impl KeyRules {
    /// Whether keys pass through as they are (then each is only checked).
    pub fn is_identity(&self) -> bool {
        self.rewrite.is_empty() && !self.convert
    }

    /// The errors the rules have whatever the keys (a pattern that does not compile, a
    /// template that does not parse).
    pub fn check(&self) -> Result<(), String> {
        for (i, r) in self.rewrite.iter().enumerate() {
            if let Compiled::Transform(template) = compile(i, r)? {
                gotmpl::check(template, &gotmpl::Limits::default())
                    .map_err(|e| format!("rewrite[{i}].transform.template: {e}"))?;
            }
        }
        Ok(())
    }

    /// Renames `entries` (in their order; when two land on one key, the later wins, as the
    /// later write does in ESO's map). An empty key is dropped, as ESO does; an invalid one is
    /// an error naming it.
    pub fn apply<V>(&self, entries: Vec<(String, V)>) -> Result<BTreeMap<String, V>, String> {
        let mut entries = entries;
        for (i, r) in self.rewrite.iter().enumerate() {
            entries = match compile(i, r)? {
                Compiled::Regexp(re, target) => entries
                    .into_iter()
                    .map(|(k, v)| (re.replace_all(&k, target).into_owned(), v))
                    .collect(),
                Compiled::Transform(template) => entries
                    .into_iter()
                    .map(|(k, v)| {
                        let dot = serde_json::json!({ "value": k });
                        gotmpl::render(template, &dot, &gotmpl::Limits::default())
                            .map(|k| (k, v))
                            .map_err(|e| format!("rewrite[{i}].transform.template: {e}"))
                    })
                    .collect::<Result<_, _>>()?,
            };
        }
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            let k = if self.rewrite.is_empty() && self.convert {
                let converted = convert(&k);
                if out.contains_key(&converted) {
                    return Err(format!(
                        "secret name collision during conversion: {converted}"
                    ));
                }
                converted
            } else {
                k
            };
            if k.is_empty() {
                continue;
            }
            check_secret_key(&k).map_err(|why| format!("key {k:?} {why}"))?;
            out.insert(k, v);
        }
        Ok(out)
    }
}

enum Compiled<'a> {
    Regexp(regex::Regex, &'a str),
    Transform(&'a str),
}

fn compile(i: usize, r: &Rewrite) -> Result<Compiled<'_>, String> {
    Ok(match r {
        Rewrite::Regexp { source, target } => Compiled::Regexp(
            regex(source).map_err(|e| format!("rewrite[{i}].regexp.source: {e}"))?,
            target,
        ),
        Rewrite::Transform { template } => Compiled::Transform(template),
    })
}

/// A tenant's pattern, within the size every pattern gets.
pub fn regex(source: &str) -> Result<regex::Regex, regex::Error> {
    RegexBuilder::new(source)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

fn convert(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(rules: &KeyRules, names: &[&str]) -> Result<Vec<String>, String> {
        let entries = names.iter().map(|n| (n.to_string(), ())).collect();
        Ok(rules.apply(entries)?.into_keys().collect())
    }

    fn rw(source: &str, target: &str) -> Rewrite {
        Rewrite::Regexp {
            source: source.into(),
            target: target.into(),
        }
    }

    #[test]
    fn conversion_replaces_what_a_key_may_not_hold() {
        let rules = KeyRules {
            rewrite: vec![],
            convert: true,
        };
        assert_eq!(
            keys(&rules, &["app/db", "a b", "ok.-_"]).unwrap(),
            ["a_b", "app_db", "ok.-_"]
        );
        assert!(keys(&rules, &["a/b", "a_b"])
            .unwrap_err()
            .contains("collision"));
        assert!(keys(&KeyRules::default(), &["a/b"])
            .unwrap_err()
            .contains("\"a/b\""));
    }

    // ESO's documented rewrite examples (dataFrom rewrite guide).
    #[test]
    fn rewrites_apply_in_order_and_replace_conversion() {
        let rules = KeyRules {
            rewrite: vec![rw("path/to/my/secrets/(.*)", "$1")],
            convert: true,
        };
        assert_eq!(
            keys(
                &rules,
                &["path/to/my/secrets/username", "path/to/my/secrets/password"]
            )
            .unwrap(),
            ["password", "username"]
        );
        let rules = KeyRules {
            rewrite: vec![
                rw("^db/", "dev-"),
                rw("-", "_"),
                rw("(?P<x>[a-z]+)_(.*)", "${2}_$x"),
            ],
            convert: false,
        };
        assert_eq!(keys(&rules, &["db/user"]).unwrap(), ["user_dev"]);
        // No conversion after a rewrite: a key still invalid is an error naming it.
        let rules = KeyRules {
            rewrite: vec![rw("^x", "y")],
            convert: true,
        };
        assert!(keys(&rules, &["a/b"]).unwrap_err().contains("\"a/b\""));
        // A key rewritten to nothing is dropped.
        let rules = KeyRules {
            rewrite: vec![rw(".*", "")],
            convert: false,
        };
        assert_eq!(keys(&rules, &["gone"]).unwrap(), Vec::<String>::new());
    }

    // ESO's rewrite guide: `transform` with a template over `.value`.
    #[test]
    fn transforms_render_the_key() {
        let rules = KeyRules {
            rewrite: vec![
                rw("^app/", ""),
                Rewrite::Transform {
                    template: "{{ .value | upper }}_KEY".into(),
                },
            ],
            convert: false,
        };
        assert_eq!(keys(&rules, &["app/db"]).unwrap(), ["DB_KEY"]);
        let bad = KeyRules {
            rewrite: vec![Rewrite::Transform {
                template: "{{ .nope }}".into(),
            }],
            convert: false,
        };
        assert!(keys(&bad, &["a"])
            .unwrap_err()
            .starts_with("rewrite[0].transform.template"));
    }

    #[test]
    fn a_bad_or_huge_pattern_is_an_error_not_a_cost() {
        let rules = |source: &str| KeyRules {
            rewrite: vec![rw(source, "")],
            convert: false,
        };
        assert!(keys(&rules("(unclosed"), &["a"])
            .unwrap_err()
            .starts_with("rewrite[0]"));
        assert!(keys(&rules("\\w{1000}{1000}"), &["a"]).is_err());
    }
}
