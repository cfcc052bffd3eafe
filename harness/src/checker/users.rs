//! Users CRUD through the cache: every read of a user returns what some write could have left
//! at that moment, never a value a finished write had already replaced (read-your-write,
//! `stale_read`), never a user a finished delete had removed (`read_after_delete`), never a
//! value nobody wrote (`unknown_value`).
//!
//! Writes are the history's creates, updates and deletes of one user id; a read may return
//! the value of any write that began before the read ended, unless another write that
//! definitely happened (`ok`) began after that write ended and ended before the read began.
//! A write whose outcome is unknown (`info`) may be returned but never supersedes another.
//! Reads are the definite ones: `ok` with the user, or `fail` 404 (absent). Each update should
//! write a value of its own, so that a stale read is told apart from a repeated one.

use std::collections::BTreeMap;

use reports::Verdict;
use serde_json::{json, Value};

use super::Checker;
use crate::{
    final_state::FinalState,
    history::{f, pairs, Op, OpType, Pair},
};

pub struct Users;

/// What a write leaves: the user's name and email, or no user.
type UserValue = Option<(String, String)>;

#[derive(Debug)]
struct Write {
    value: UserValue,
    invoked_ns: u64,
    /// `None` when the outcome is unknown.
    completed_ns: Option<u64>,
}

#[derive(Debug)]
struct Read<'a> {
    pair: Pair<'a>,
    value: UserValue,
}

fn name_email(v: &Value) -> UserValue {
    Some((
        v["name"].as_str()?.to_string(),
        v["email"].as_str()?.to_string(),
    ))
}

/// The user id an operation is about: its argument, or a create's answer.
fn user_id(p: &Pair<'_>) -> Option<i64> {
    p.invoke.value["id"]
        .as_i64()
        .or_else(|| p.completion?.value["id"].as_i64())
}

fn write_of(p: &Pair<'_>) -> Option<Write> {
    let value = match p.invoke.f.as_str() {
        f::CREATE_USER | f::UPDATE_USER => Some(name_email(&p.invoke.value)?),
        f::DELETE_USER => None,
        _ => return None,
    };
    let completed_ns = match p.outcome() {
        OpType::Ok => p.completion.map(|c| c.time_ns),
        OpType::Info => None,
        _ => return None,
    };
    Some(Write {
        value,
        invoked_ns: p.invoke.time_ns,
        completed_ns,
    })
}

fn read_of<'a>(p: &Pair<'a>) -> Option<Read<'a>> {
    if p.invoke.f != f::READ_USER {
        return None;
    }
    let c = p.completion?;
    let value = match c.kind {
        OpType::Ok => Some(name_email(&c.value)?),
        OpType::Fail if c.value["status"] == 404 => None,
        _ => return None,
    };
    Some(Read {
        pair: p.clone(),
        value,
    })
}

/// The anomaly `read` shows given its user's `writes` (the first being the absent user before
/// its create), or `None` when it returned a value some write could have left.
fn judge(read: &Read<'_>, writes: &[Write]) -> Option<&'static str> {
    let began = read.pair.invoke.time_ns;
    let ended = read.pair.completion.map_or(u64::MAX, |c| c.time_ns);
    let superseded = |w: &Write| {
        w.completed_ns.is_some_and(|done| {
            writes.iter().any(|later| {
                later.invoked_ns > done && later.completed_ns.is_some_and(|end| end < began)
            })
        })
    };
    let possible: Vec<&Write> = writes
        .iter()
        .filter(|w| w.invoked_ns < ended && !superseded(w))
        .collect();
    if possible.iter().any(|w| w.value == read.value) {
        return None;
    }
    if !writes.iter().any(|w| w.value == read.value) {
        return Some("unknown_value");
    }
    // Returned a value every possible write had replaced: a stale cache entry or store read.
    let deleted = possible.iter().all(|w| w.value.is_none());
    Some(if deleted && read.value.is_some() {
        "read_after_delete"
    } else {
        "stale_read"
    })
}

impl Checker for Users {
    fn name(&self) -> &str {
        "users"
    }

    fn check(&self, history: &[Op], _state: &FinalState) -> Verdict {
        let mut v = Verdict::new(self.name());
        let all = pairs(history);
        let mut writes: BTreeMap<i64, Vec<Write>> = BTreeMap::new();
        let mut reads: BTreeMap<i64, Vec<Read<'_>>> = BTreeMap::new();
        for p in &all {
            let Some(id) = user_id(p) else { continue };
            if let Some(w) = write_of(p) {
                writes.entry(id).or_insert_with(|| vec![absent()]).push(w);
            } else if let Some(r) = read_of(p) {
                reads.entry(id).or_default().push(r);
            }
        }
        let mut checked = 0;
        for (id, list) in &reads {
            let Some(ws) = writes.get(id) else { continue };
            for read in list {
                checked += 1;
                if let Some(kind) = judge(read, ws) {
                    v.anomaly(
                        kind,
                        json!({"user": id, "read_at_ns": read.pair.invoke.time_ns,
                               "returned": read.value, "index": read.pair.invoke.index}),
                    );
                }
            }
        }
        let n = |kind: &str| v.anomaly_count(kind);
        let summary = format!(
            "{} users, {checked} reads: {} stale, {} after a delete, {} of values never written",
            writes.len(),
            n("stale_read"),
            n("read_after_delete"),
            n("unknown_value")
        );
        v.count("users", writes.len() as u64)
            .count("reads_checked", checked)
            .summary(summary);
        v
    }
}

/// The user before its create: absent, since the beginning.
fn absent() -> Write {
    Write {
        value: None,
        invoked_ns: 0,
        completed_ns: Some(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{History, Process};

    /// Runs `ops` (process, f, args, outcome, result) one after another.
    fn history(ops: &[(u64, &str, Value, OpType, Value)]) -> Vec<Op> {
        let h = History::new();
        for (p, f, args, kind, result) in ops {
            let inv = h.invoke(Process::Client(*p), f, args.clone());
            h.complete(&inv, *kind, result.clone(), None);
        }
        h.ops()
    }

    /// User 1 created as "a".
    fn created_a() -> (u64, &'static str, Value, OpType, Value) {
        let args = json!({"name": "a", "email": "a@x"});
        (0, f::CREATE_USER, args, OpType::Ok, json!({"id": 1}))
    }

    fn user(name: &str) -> Value {
        json!({"id": 1, "name": name, "email": format!("{name}@x")})
    }

    fn kinds(ops: &[Op]) -> Vec<String> {
        let v = Users.check(ops, &FinalState::default());
        v.anomalies.iter().map(|a| a.kind.clone()).collect()
    }

    #[test]
    fn reads_of_the_latest_write_are_fine() {
        let ops = history(&[
            created_a(),
            (0, f::READ_USER, json!({"id": 1}), OpType::Ok, user("a")),
            (0, f::UPDATE_USER, user("b"), OpType::Ok, user("b")),
            (0, f::READ_USER, json!({"id": 1}), OpType::Ok, user("b")),
            (0, f::DELETE_USER, json!({"id": 1}), OpType::Ok, Value::Null),
            (
                0,
                f::READ_USER,
                json!({"id": 1}),
                OpType::Fail,
                json!({"status": 404}),
            ),
        ]);
        assert!(kinds(&ops).is_empty(), "{:?}", kinds(&ops));
    }

    #[test]
    fn a_read_older_than_a_finished_update_is_stale() {
        let ops = history(&[
            created_a(),
            (0, f::UPDATE_USER, user("b"), OpType::Ok, user("b")),
            (0, f::READ_USER, json!({"id": 1}), OpType::Ok, user("a")),
        ]);
        assert_eq!(kinds(&ops), ["stale_read"]);
    }

    #[test]
    fn a_user_read_after_its_delete_finished_is_caught() {
        let ops = history(&[
            created_a(),
            (0, f::DELETE_USER, json!({"id": 1}), OpType::Ok, Value::Null),
            (0, f::READ_USER, json!({"id": 1}), OpType::Ok, user("a")),
            (0, f::READ_USER, json!({"id": 1}), OpType::Ok, user("z")),
        ]);
        assert_eq!(kinds(&ops), ["read_after_delete", "unknown_value"]);
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_return_either_value() {
        let h = History::new();
        let create = h.invoke(
            Process::Client(0),
            f::CREATE_USER,
            json!({"name": "a", "email": "a@x"}),
        );
        h.complete(&create, OpType::Ok, json!({"id": 1}), None);
        let update = h.invoke(Process::Client(0), f::UPDATE_USER, user("b"));
        let old = h.invoke(Process::Client(1), f::READ_USER, json!({"id": 1}));
        let new = h.invoke(Process::Client(2), f::READ_USER, json!({"id": 1}));
        h.complete(&old, OpType::Ok, user("a"), None);
        h.complete(&new, OpType::Ok, user("b"), None);
        h.complete(&update, OpType::Info, Value::Null, Some("timeout".into()));
        // An update of unknown outcome supersedes nothing: a later read may still see "a".
        let after = h.invoke(Process::Client(3), f::READ_USER, json!({"id": 1}));
        h.complete(&after, OpType::Ok, user("a"), None);
        assert!(kinds(&h.ops()).is_empty());
    }
}
