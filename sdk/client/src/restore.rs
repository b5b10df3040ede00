//! What the client re-sends after every reconnect: its subscriptions, then
//! the requests it was asked to remember (room joins among them), in the
//! order they were made.
//!
//! Plain data; the client sends the frames. Subscriptions are kept per
//! `subscribe` call, each pattern in the call that named it last, because
//! the host keeps them that way: subscribing to a pattern again replaces
//! its filters, unsubscribing drops it. Each entry also keeps the id of the
//! request that made it, so that a reconnect happening before that first
//! request was written sends it once, under the id its caller waits for.

use crate::envelope;
use serde_json::Value;

#[derive(Debug, Default)]
pub(crate) struct RestoreSet {
    subscriptions: Vec<SubscribeCall>,
    remembered: Vec<Remembered>,
}

#[derive(Debug, Clone)]
struct SubscribeCall {
    patterns: Vec<String>,
    filters: Value,
    request_id: Option<String>,
}

#[derive(Debug, Clone)]
struct Remembered {
    key: String,
    kind: String,
    data: Value,
    request_id: Option<String>,
}

/// One frame to send on reconnect; `request_id` is the id of the request
/// that made the entry (use it if its caller still waits).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RestoreFrame {
    pub kind: String,
    pub data: Value,
    pub request_id: Option<String>,
}

impl RestoreSet {
    pub fn subscribe(&mut self, patterns: &[String], filters: &Value, request_id: Option<&str>) {
        self.unsubscribe(patterns);
        let mut unique: Vec<String> = Vec::with_capacity(patterns.len());
        for pattern in patterns {
            if !unique.contains(pattern) {
                unique.push(pattern.clone());
            }
        }
        self.subscriptions.push(SubscribeCall {
            patterns: unique,
            filters: filters.clone(),
            request_id: request_id.map(str::to_owned),
        });
    }

    pub fn unsubscribe(&mut self, patterns: &[String]) {
        for call in &mut self.subscriptions {
            call.patterns.retain(|p| !patterns.contains(p));
        }
        self.subscriptions.retain(|call| !call.patterns.is_empty());
    }

    /// The server refused request `request_id`: forget what it would have
    /// restored (unless a later call has replaced it).
    pub fn refused(&mut self, request_id: &str) {
        let made_by = |id: &Option<String>| id.as_deref() == Some(request_id);
        self.subscriptions.retain(|call| !made_by(&call.request_id));
        self.remembered.retain(|r| !made_by(&r.request_id));
    }

    pub fn patterns(&self) -> Vec<String> {
        self.subscriptions.iter().flat_map(|call| call.patterns.iter().cloned()).collect()
    }

    /// Remember a request under `key`; a later one with the same key
    /// replaces it in place.
    pub fn remember(&mut self, key: &str, kind: &str, data: &Value, request_id: Option<&str>) {
        let entry = Remembered {
            key: key.to_owned(),
            kind: kind.to_owned(),
            data: data.clone(),
            request_id: request_id.map(str::to_owned),
        };
        match self.remembered.iter_mut().find(|r| r.key == key) {
            Some(held) => *held = entry,
            None => self.remembered.push(entry),
        }
    }

    pub fn forget(&mut self, key: &str) -> bool {
        let before = self.remembered.len();
        self.remembered.retain(|r| r.key != key);
        self.remembered.len() != before
    }

    pub fn keys(&self) -> Vec<String> {
        self.remembered.iter().map(|r| r.key.clone()).collect()
    }

    /// The frames to send: one `subscribe` per call still holding
    /// patterns, then the remembered requests.
    pub fn frames(&self) -> Vec<RestoreFrame> {
        let subscriptions = self.subscriptions.iter().map(|call| RestoreFrame {
            kind: "subscribe".into(),
            data: envelope::subscribe_data(&call.patterns, &call.filters),
            request_id: call.request_id.clone(),
        });
        let remembered = self.remembered.iter().map(|r| RestoreFrame {
            kind: r.kind.clone(),
            data: r.data.clone(),
            request_id: r.request_id.clone(),
        });
        subscriptions.chain(remembered).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn kinds_and_data(set: &RestoreSet) -> Vec<(String, Value)> {
        set.frames().into_iter().map(|f| (f.kind, f.data)).collect()
    }

    #[test]
    fn subscriptions_are_restored_per_call_then_remembered_requests() {
        let mut set = RestoreSet::default();
        set.subscribe(&strings(&["status", "video_status"]), &json!({}), Some("r1"));
        set.subscribe(&strings(&["alert.*"]), &json!({"level": ["critical"]}), Some("r2"));
        set.remember("room:lobby", "rooms.join", &json!({"room": "lobby"}), Some("r3"));
        set.subscribe(&strings(&["performance", "performance"]), &Value::Null, None);
        set.unsubscribe(&strings(&["video_status"]));
        assert_eq!(set.patterns(), ["status", "alert.*", "performance"]);
        assert_eq!(
            kinds_and_data(&set),
            [
                ("subscribe".into(), json!({"events": ["status"]})),
                ("subscribe".into(), json!({"events": ["alert.*"], "filters": {"level": ["critical"]}})),
                ("subscribe".into(), json!({"events": ["performance"]})),
                ("rooms.join".into(), json!({"room": "lobby"})),
            ]
        );
        let ids: Vec<Option<String>> = set.frames().into_iter().map(|f| f.request_id).collect();
        assert_eq!(ids, [Some("r1".into()), Some("r2".into()), None, Some("r3".into())]);
    }

    #[test]
    fn a_pattern_lives_in_the_call_that_named_it_last() {
        let mut set = RestoreSet::default();
        set.subscribe(&strings(&["alert.*", "status"]), &json!({"level": ["warning"]}), Some("r1"));
        set.subscribe(&strings(&["alert.*"]), &json!({"level": ["critical"]}), Some("r2"));
        assert_eq!(
            kinds_and_data(&set),
            [
                ("subscribe".into(), json!({"events": ["status"], "filters": {"level": ["warning"]}})),
                ("subscribe".into(), json!({"events": ["alert.*"], "filters": {"level": ["critical"]}})),
            ]
        );
        set.unsubscribe(&strings(&["status"]));
        assert_eq!(set.frames().len(), 1, "an emptied call is dropped");
    }

    #[test]
    fn refusals_and_replacements() {
        let mut set = RestoreSet::default();
        set.subscribe(&strings(&["bad pattern"]), &Value::Null, Some("r1"));
        set.refused("r1");
        assert!(set.patterns().is_empty());
        set.remember("k", "a", &json!(1), Some("r2"));
        set.remember("j", "b", &json!(2), Some("r3"));
        set.remember("k", "a", &json!(3), Some("r4"));
        set.refused("r2");
        assert_eq!(set.keys(), ["k", "j"], "a stale refusal does not undo the newer request");
        assert_eq!(set.frames()[0].data, json!(3));
        assert!(set.forget("k"));
        assert!(!set.forget("k"));
        assert_eq!(set.keys(), ["j"]);
    }
}
