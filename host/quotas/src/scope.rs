//! Whom a quota covers: the subject a registration or check is about, and
//! the matchers over its owner, kind and labels that select it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A subject's labels, read by key.
pub trait Labels {
    /// Returns the value of label `key`, if the subject has it.
    fn label(&self, key: &str) -> Option<&str>;
}

fn find<'a, K: AsRef<str>, V: AsRef<str>>(pairs: &'a [(K, V)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.as_ref() == key)
        .map(|(_, v)| v.as_ref())
}

impl Labels for Vec<(String, String)> {
    fn label(&self, key: &str) -> Option<&str> {
        find(self, key)
    }
}

impl Labels for Vec<(&str, &str)> {
    fn label(&self, key: &str) -> Option<&str> {
        find(self, key)
    }
}

impl<const N: usize> Labels for [(&str, &str); N] {
    fn label(&self, key: &str) -> Option<&str> {
        find(self, key)
    }
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// No labels at all.
impl Labels for () {
    fn label(&self, _key: &str) -> Option<&str> {
        None
    }
}

/// What a registration or a check is about: who owns it, its kind (a
/// resource kind's name, such as `temp-file`) and its labels.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    /// The owner (a user, a service, a path for disk use).
    pub owner: &'a str,
    /// The kind's name.
    pub kind: &'a str,
    /// Its labels.
    pub labels: &'a dyn Labels,
}

impl<'a> Subject<'a> {
    /// Returns a subject without labels.
    pub fn new(owner: &'a str, kind: &'a str) -> Subject<'a> {
        Subject {
            owner,
            kind,
            labels: &(),
        }
    }

    /// Returns this subject with `labels`.
    pub fn with_labels(self, labels: &'a dyn Labels) -> Subject<'a> {
        Subject { labels, ..self }
    }
}

/// Whom a quota covers and how their use is counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// All must match; none means every subject (a global quota).
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    /// Each owner gets a counter of their own; otherwise everyone the
    /// matchers select shares one.
    #[serde(default)]
    pub per_owner: bool,
}

impl Scope {
    /// Returns a scope over every subject, with one shared counter.
    pub fn global() -> Scope {
        Scope::default()
    }

    /// Returns true if and only if every matcher accepts `s`.
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        self.matchers.iter().all(|m| m.matches(s))
    }
}

/// One test over a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    /// What is tested.
    pub field: Field,
    /// How.
    pub op: Op,
}

/// What a matcher tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Field {
    /// The owner.
    Owner,
    /// The kind's name.
    Kind,
    /// The label with this key (a workspace is usually one).
    Label(String),
}

/// How a matcher tests its field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// Exactly this value.
    Equals(String),
    /// Any of these values.
    OneOf(Vec<String>),
    /// A value that starts with this.
    Prefix(String),
    /// Any value; for labels only (owners and kinds are always present).
    Exists,
}

impl Matcher {
    /// Returns true if and only if `s` passes this test.
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        let value = match &self.field {
            Field::Owner => Some(s.owner),
            Field::Kind => Some(s.kind),
            Field::Label(key) => s.labels.label(key),
        };
        let Some(v) = value else { return false };
        match &self.op {
            Op::Equals(x) => v == x,
            Op::OneOf(xs) => xs.iter().any(|x| x == v),
            Op::Prefix(p) => v.starts_with(p.as_str()),
            Op::Exists => true,
        }
    }

    /// Returns why this matcher can never be right, naming the part at
    /// fault (`field` or `op`).
    pub(crate) fn problem(&self) -> Option<(&'static str, &'static str)> {
        match (&self.field, &self.op) {
            (Field::Label(k), _) if k.is_empty() => Some(("field", "a label key cannot be empty")),
            (Field::Owner | Field::Kind, Op::Exists) => Some((
                "op",
                "`exists` applies to labels only; every subject has an owner and a kind",
            )),
            (_, Op::OneOf(xs)) if xs.is_empty() => Some((
                "op",
                "`one-of` needs at least one value; it would match nothing",
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(field: Field, op: Op) -> Matcher {
        Matcher { field, op }
    }

    #[test]
    fn matchers_read_owner_kind_and_labels() {
        let labels = vec![("workspace".to_owned(), "ci".to_owned())];
        let s = Subject::new("alice", "temp-file").with_labels(&labels);
        assert!(m(Field::Owner, Op::Equals("alice".into())).matches(&s));
        assert!(!m(Field::Owner, Op::Equals("bob".into())).matches(&s));
        assert!(m(Field::Kind, Op::Prefix("temp".into())).matches(&s));
        assert!(m(Field::Kind, Op::OneOf(vec!["x".into(), "temp-file".into()])).matches(&s));
        assert!(m(Field::Label("workspace".into()), Op::Exists).matches(&s));
        assert!(m(Field::Label("workspace".into()), Op::Equals("ci".into())).matches(&s));
        assert!(!m(Field::Label("team".into()), Op::Exists).matches(&s));
    }

    #[test]
    fn a_scope_needs_every_matcher() {
        let scope = Scope {
            matchers: vec![
                m(Field::Owner, Op::Equals("alice".into())),
                m(Field::Kind, Op::Equals("socket".into())),
            ],
            per_owner: false,
        };
        assert!(scope.matches(&Subject::new("alice", "socket")));
        assert!(!scope.matches(&Subject::new("alice", "temp-file")));
        assert!(Scope::global().matches(&Subject::new("anyone", "anything")));
    }

    #[test]
    fn matchers_that_cannot_work_are_named() {
        assert_eq!(
            m(Field::Label(String::new()), Op::Exists)
                .problem()
                .map(|p| p.0),
            Some("field")
        );
        assert_eq!(
            m(Field::Owner, Op::Exists).problem().map(|p| p.0),
            Some("op")
        );
        assert_eq!(
            m(Field::Kind, Op::OneOf(vec![])).problem().map(|p| p.0),
            Some("op")
        );
        assert_eq!(m(Field::Kind, Op::Equals("x".into())).problem(), None);
    }
}
