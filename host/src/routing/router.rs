//! Route matching: which target serves a message type.
//!
//! Pure data and functions, no wasm and no I/O. A [`RouteTable`] is built
//! whole from every owner's claims and never mutated; the registry publishes
//! a new one by an atomic swap, and each message resolves against the one
//! snapshot it loaded.
//!
//! A claim is an exact type (`get_time`) or a prefix pattern (`video.*`,
//! matching `video.play` but not `video` itself). An exact claim beats any
//! prefix, and a longer prefix beats a shorter one. Two owners claiming the
//! same exact type or the same prefix conflict, and so does a claim on a
//! type the host reserves.

use std::collections::{HashMap, HashSet};
use std::fmt;
use thiserror::Error;

/// One parsed claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Claim {
    Exact(String),
    /// The prefix, with its trailing `.`: `video.*` is `Prefix("video.")`.
    Prefix(String),
}

impl Claim {
    pub fn parse(text: &str) -> Result<Claim, RouteError> {
        let invalid = |why: &str| RouteError::InvalidClaim { claim: text.to_owned(), why: why.to_owned() };
        let (name, prefix) = match text.strip_suffix(".*") {
            Some(head) => (head, true),
            None => (text, false),
        };
        if name.is_empty() {
            return Err(invalid("empty name"));
        }
        if name.len() > crate::wire::dialect::MAX_TYPE_LEN {
            return Err(invalid("longer than a message type may be"));
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/')) {
            return Err(invalid("only ASCII letters, digits and _ - . : / are allowed, and `*` only as a final `.*`"));
        }
        if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
            return Err(invalid("empty segment between dots"));
        }
        Ok(if prefix { Claim::Prefix(format!("{name}.")) } else { Claim::Exact(name.to_owned()) })
    }

    /// Whether `kind` (a message type or a topic) falls under this claim.
    pub fn matches(&self, kind: &str) -> bool {
        match self {
            Claim::Exact(name) => name == kind,
            Claim::Prefix(prefix) => prefix_matches(prefix, kind),
        }
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Claim::Exact(name) => f.write_str(name),
            Claim::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// `video.` matches `video.play`, not `video.` or `video`.
fn prefix_matches(prefix: &str, kind: &str) -> bool {
    kind.len() > prefix.len() && kind.starts_with(prefix)
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouteError {
    #[error("invalid claim {claim:?}: {why}")]
    InvalidClaim { claim: String, why: String },
    #[error("claim {claim} of {owner} conflicts with {other}")]
    Conflict { claim: String, owner: String, other: String },
    #[error("claim {claim} of {owner} is reserved by the host")]
    Reserved { claim: String, owner: String },
}

/// Message types to targets. `T` is whatever serves a route: a plugin
/// version or a host built-in, in the host; a plain label in tests.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    exact: HashMap<String, T>,
    /// Longest prefix first.
    prefixes: Vec<(String, T)>,
    /// Who owns each claim, for conflict messages and listings.
    owners: Vec<(Claim, String)>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable { exact: HashMap::new(), prefixes: Vec::new(), owners: Vec::new() }
    }
}

impl<T: Clone> RouteTable<T> {
    /// Build a table from `(owner, claims, target)` entries. `reserved` types
    /// are served by `reserved_target` and may not be claimed.
    pub fn build<'a>(
        reserved: impl IntoIterator<Item = (&'a str, T)>,
        entries: impl IntoIterator<Item = (String, Vec<Claim>, T)>,
    ) -> Result<RouteTable<T>, RouteError> {
        let mut table = RouteTable::default();
        let mut reserved_names = HashSet::new();
        for (name, target) in reserved {
            reserved_names.insert(name);
            table.exact.insert(name.to_owned(), target);
        }
        for (owner, claims, target) in entries {
            for claim in claims {
                if let Some((_, other)) = table.owners.iter().find(|(c, _)| *c == claim) {
                    if *other != owner {
                        return Err(RouteError::Conflict { claim: claim.to_string(), owner, other: other.clone() });
                    }
                    continue;
                }
                match &claim {
                    Claim::Exact(name) if reserved_names.contains(name.as_str()) => {
                        return Err(RouteError::Reserved { claim: name.clone(), owner });
                    }
                    Claim::Exact(name) => {
                        table.exact.insert(name.clone(), target.clone());
                    }
                    Claim::Prefix(prefix) => table.prefixes.push((prefix.clone(), target.clone())),
                }
                table.owners.push((claim, owner.clone()));
            }
        }
        table.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Ok(table)
    }
}

impl<T> RouteTable<T> {
    /// The target serving `kind`, if any.
    pub fn resolve(&self, kind: &str) -> Option<&T> {
        if let Some(target) = self.exact.get(kind) {
            return Some(target);
        }
        self.prefixes.iter().find(|(prefix, _)| prefix_matches(prefix, kind)).map(|(_, t)| t)
    }

    /// Every routed target (a target with several claims appears once per claim).
    pub fn targets(&self) -> impl Iterator<Item = &T> {
        self.exact.values().chain(self.prefixes.iter().map(|(_, t)| t))
    }

    /// Every claim with its owner, in the order they were added.
    pub fn claims(&self) -> impl Iterator<Item = (&Claim, &str)> {
        self.owners.iter().map(|(claim, owner)| (claim, owner.as_str()))
    }

    /// The owner whose claim would serve `kind`.
    pub fn owner_of(&self, kind: &str) -> Option<&str> {
        let exact = self.owners.iter().find(|(c, _)| matches!(c, Claim::Exact(n) if n == kind));
        let prefix = || {
            self.owners
                .iter()
                .filter(|(c, _)| matches!(c, Claim::Prefix(_)) && c.matches(kind))
                .max_by_key(|(c, _)| c.to_string().len())
        };
        exact.or_else(prefix).map(|(_, owner)| owner.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(list: &[&str]) -> Vec<Claim> {
        list.iter().map(|c| Claim::parse(c).unwrap()).collect()
    }

    fn table(entries: &[(&str, &[&str])]) -> Result<RouteTable<String>, RouteError> {
        RouteTable::build(
            [("ping", "host".to_owned())],
            entries.iter().map(|(owner, list)| (owner.to_string(), claims(list), owner.to_string())),
        )
    }

    #[test]
    fn claims_parse() {
        let cases: &[(&str, Option<Claim>)] = &[
            ("get_time", Some(Claim::Exact("get_time".into()))),
            ("video.*", Some(Claim::Prefix("video.".into()))),
            ("a.b.*", Some(Claim::Prefix("a.b.".into()))),
            ("text.upper", Some(Claim::Exact("text.upper".into()))),
            ("*", None),
            ("", None),
            (".*", None),
            ("video*", None),
            ("vi*deo", None),
            ("a..b", None),
            ("sp ace", None),
            ("trailing.", None),
        ];
        for (text, want) in cases {
            assert_eq!(Claim::parse(text).ok(), *want, "{text:?}");
        }
    }

    #[test]
    fn resolution_order() {
        let t = table(&[("clock", &["get_time"]), ("video", &["video.*"]), ("player", &["video.play", "video.hd.*"])]).unwrap();
        let cases = [
            ("get_time", Some("clock")),
            ("video.stop", Some("video")),
            ("video.play", Some("player")),
            ("video.hd.on", Some("player")),
            ("video", None),
            ("video.", None),
            ("get_time2", None),
            ("ping", Some("host")),
        ];
        for (kind, want) in cases {
            assert_eq!(t.resolve(kind).map(String::as_str), want, "{kind}");
        }
        assert_eq!(t.owner_of("video.hd.on"), Some("player"));
        assert_eq!(t.owner_of("video.stop"), Some("video"));
    }

    /// Owners with their claims, and the error building them gives.
    type ConflictCase<'a> = (&'a [(&'a str, &'a [&'a str])], Option<&'a str>);

    #[test]
    fn conflicts_and_reserved_names() {
        let cases: &[ConflictCase] = &[
            (&[("a", &["x"]), ("b", &["x"])], Some("claim x of b conflicts with a")),
            (&[("a", &["x.*"]), ("b", &["x.*"])], Some("claim x.* of b conflicts with a")),
            (&[("a", &["x.*"]), ("b", &["x.y"])], None),
            (&[("a", &["x", "x"])], None),
            (&[("a", &["ping"])], Some("claim ping of a is reserved by the host")),
        ];
        for (entries, want) in cases {
            let got = table(entries).err().map(|e| e.to_string());
            assert_eq!(got.as_deref(), *want, "{entries:?}");
        }
    }
}
