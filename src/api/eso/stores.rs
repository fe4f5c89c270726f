//! Pure: which stores this instance serves (`spec.controller` against `CONTROLLER_CLASS`) and
//! which namespaces may use a ClusterSecretStore (`spec.conditions`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};

use super::store::StoreCondition;

/// ESO's rule, with this controller's class: a store is ours when its `spec.controller`
/// equals `CONTROLLER_CLASS` (both empty counts as equal).
pub fn serves(store_class: Option<&str>, our_class: Option<&str>) -> bool {
    store_class.unwrap_or("") == our_class.unwrap_or("")
}

/// Whether a ClusterSecretStore with `conditions` may be used from `namespace` (labels
/// `labels`): no conditions = everywhere; else any condition that matches — by name, by a
/// regex on the name (anchored as Go's `regexp.MatchString` is not: a match anywhere), or by
/// a label selector. An unparsable regex or selector matches nothing.
pub fn namespace_allowed(
    conditions: Option<&[StoreCondition]>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(conditions) = conditions.filter(|c| !c.is_empty()) else {
        return true;
    };
    conditions.iter().any(|c| {
        let by_name = c.namespaces.iter().flatten().any(|n| n == namespace);
        let by_regex = c.namespace_regexes.iter().flatten().any(|r| {
            regex::RegexBuilder::new(r)
                .size_limit(1 << 20)
                .build()
                .is_ok_and(|re| re.is_match(namespace))
        });
        let by_selector = c.namespace_selector.as_ref().is_some_and(|v| {
            serde_json::from_value::<LabelSelector>(v.clone())
                .ok()
                .and_then(|s| Selector::try_from(s).ok())
                .is_some_and(|s| s.matches(labels))
        });
        by_name || by_regex || by_selector
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(v: serde_json::Value) -> StoreCondition {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn classes() {
        assert!(serves(None, None));
        assert!(serves(Some(""), None));
        assert!(!serves(Some("eso"), None));
        assert!(serves(Some("ves"), Some("ves")));
        assert!(
            !serves(None, Some("ves")),
            "with a class, only stores naming it"
        );
    }

    #[test]
    fn conditions() {
        let labels: BTreeMap<String, String> = [("team".to_string(), "a".to_string())].into();
        assert!(namespace_allowed(None, "x", &labels));
        let c = [
            cond(json!({"namespaces": ["one"]})),
            cond(json!({"namespaceRegexes": ["^team-"]})),
        ];
        assert!(namespace_allowed(Some(&c), "one", &labels));
        assert!(namespace_allowed(Some(&c), "team-b", &labels));
        assert!(!namespace_allowed(Some(&c), "other", &labels));
        let s = [cond(
            json!({"namespaceSelector": {"matchLabels": {"team": "a"}}}),
        )];
        assert!(namespace_allowed(Some(&s), "any", &labels));
        assert!(!namespace_allowed(Some(&s), "any", &BTreeMap::new()));
        let e = [cond(
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["b"]}]}}),
        )];
        assert!(!namespace_allowed(Some(&e), "any", &labels));
        let bad = [cond(json!({"namespaceRegexes": ["("]}))];
        assert!(!namespace_allowed(Some(&bad), "any", &labels));
    }
}
