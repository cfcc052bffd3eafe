//! Account balances: each equals the sum of its distinct credits that succeeded.
//!
//! Credits whose submission outcome is unknown (and whose task was never identified) may or may
//! not have been applied, so the expected balance is a range: the known successful credits at
//! least, plus those unknown ones at most. Above the range a credit was applied twice
//! (`double_applied`); below it an effect was lost (`lost_effect`). Balances read during the
//! run never go down, as credits only add (`balance_went_down`).

use std::collections::{BTreeMap, BTreeSet};

use reports::Verdict;
use serde_json::json;

use super::{submissions, tasks_by_key, Checker};
use crate::{
    final_state::FinalState,
    history::{f, pairs, Op, OpType},
};

pub struct Bank;

#[derive(Debug, Default, Clone, Copy)]
struct Expected {
    low: i64,
    high: i64,
}

fn credit_of(body: &serde_json::Value) -> Option<(String, i64)> {
    if body["type"] != "credit" {
        return None;
    }
    Some((
        body["payload"]["account"].as_str()?.to_string(),
        body["payload"]["amount"].as_i64()?,
    ))
}

/// Expected balance range per account from the submissions and the final task statuses.
fn expected(history: &[Op], state: &FinalState) -> BTreeMap<String, Expected> {
    let subs = submissions(history);
    let ids = tasks_by_key(&subs, state);
    let mut out: BTreeMap<String, Expected> = BTreeMap::new();
    for (key, list) in &subs {
        let Some((account, amount)) = list.first().and_then(|s| credit_of(&s.body)) else {
            continue;
        };
        let e = out.entry(account).or_default();
        let known: BTreeSet<&String> = ids.get(key).map(|s| s.iter().collect()).unwrap_or_default();
        let succeeded = known
            .iter()
            .filter(|id| state.tasks.get(**id).is_some_and(|t| t.status == "SUCCESS"))
            .count();
        let maybe = known.is_empty() && list.iter().any(|s| s.outcome == OpType::Info);
        // Each distinct task of the key is one credit; duplicates of the key are the ledger's.
        e.low += amount * succeeded as i64;
        e.high += amount * succeeded as i64 + if maybe { amount } else { 0 };
    }
    out
}

impl Checker for Bank {
    fn name(&self) -> &str {
        "bank"
    }

    fn check(&self, history: &[Op], state: &FinalState) -> Verdict {
        let mut v = Verdict::new(self.name());
        let want = expected(history, state);
        let accounts: BTreeSet<&String> = want.keys().chain(state.balances.keys()).collect();
        for account in &accounts {
            let e = want.get(*account).copied().unwrap_or_default();
            let actual = state.balances.get(*account).copied().unwrap_or(0);
            let example = json!({"account": account, "expected_min": e.low, "expected_max": e.high, "actual": actual});
            if actual > e.high {
                v.anomaly("double_applied", example);
            } else if actual < e.low {
                v.anomaly("lost_effect", example);
            }
        }
        check_reads(&mut v, history, &want);
        let total: i64 = state.balances.values().sum();
        v.count("accounts", accounts.len() as u64)
            .measure("total_balance", total as f64)
            .measure(
                "expected_total_min",
                want.values().map(|e| e.low).sum::<i64>() as f64,
            );
        if want.is_empty() && state.balances.is_empty() {
            v.validity = reports::Validity::Unknown;
        }
        v.summary(format!(
            "{} accounts; {} double-applied, {} lost effects, {} balances went down",
            accounts.len(),
            v.anomaly_count("double_applied"),
            v.anomaly_count("lost_effect"),
            v.anomaly_count("balance_went_down")
        ));
        v
    }
}

/// Balances read during the run only grow, and never exceed what could have been applied.
fn check_reads(v: &mut Verdict, history: &[Op], want: &BTreeMap<String, Expected>) {
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let mut reads: Vec<(u64, String, i64)> = pairs(history)
        .into_iter()
        .filter(|p| p.invoke.f == f::READ_BALANCE && p.outcome() == OpType::Ok)
        .filter_map(|p| {
            let c = p.completion?;
            Some((
                c.time_ns,
                p.invoke.value["account"].as_str()?.to_string(),
                c.value["balance"].as_i64()?,
            ))
        })
        .collect();
    reads.sort();
    for (t, account, balance) in reads {
        if let Some(prev) = last.get(&account).filter(|prev| balance < **prev) {
            v.anomaly(
                "balance_went_down",
                json!({"account": account, "before": prev, "after": balance, "time_ns": t}),
            );
        }
        let high = want.get(&account).map_or(0, |e| e.high);
        if balance > high {
            v.anomaly(
                "double_applied",
                json!({"account": account, "read": balance, "expected_max": high, "time_ns": t}),
            );
        }
        last.insert(account, balance);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        checker::fixtures::*,
        final_state::TaskView,
        history::{History, Process},
    };

    fn done(status: &str) -> TaskView {
        TaskView {
            status: status.into(),
            attempts: 1,
            kind: "credit".into(),
            payload: json!(null),
            error: None,
            callback_url: None,
        }
    }

    fn read(h: &History, account: &str, balance: i64) {
        let inv = h.invoke(
            Process::Client(50),
            f::READ_BALANCE,
            json!({"account": account}),
        );
        h.complete(&inv, OpType::Ok, json!({"balance": balance}), None);
    }

    fn clean() -> (History, FinalState) {
        let h = History::new();
        let mut s = FinalState::default();
        accepted(&h, 0, "k0", credit("a", 5), "t0", false);
        accepted(&h, 1, "k1", credit("a", 7), "t1", false);
        accepted(&h, 2, "k1", credit("a", 7), "t1", true); // replay: still one credit
        accepted(&h, 3, "k2", credit("b", 2), "t2", false);
        read(&h, "a", 5);
        read(&h, "a", 12);
        submit(
            &h,
            4,
            "k3",
            credit("b", 100),
            OpType::Info,
            json!({"error": "timeout"}),
        );
        for (id, st) in [("t0", "SUCCESS"), ("t1", "SUCCESS"), ("t2", "SUCCESS")] {
            s.tasks.insert(id.into(), done(st));
        }
        s.balances.insert("a".into(), 12);
        s.balances.insert("b".into(), 102); // the timed-out credit may have been applied
        (h, s)
    }

    #[test]
    fn clean_history_is_valid() {
        let (h, s) = clean();
        let v = Bank.check(&h.ops(), &s);
        assert_eq!(v.validity, reports::Validity::Valid, "{v:?}");
    }

    #[test]
    fn a_credit_applied_twice_is_caught() {
        let (h, mut s) = clean();
        s.balances.insert("a".into(), 19);
        let v = Bank.check(&h.ops(), &s);
        assert_eq!(v.anomaly_count("double_applied"), 1, "{v:?}");
    }

    #[test]
    fn a_lost_effect_is_caught() {
        let (h, mut s) = clean();
        s.balances.insert("a".into(), 5);
        let v = Bank.check(&h.ops(), &s);
        assert_eq!(v.anomaly_count("lost_effect"), 1, "{v:?}");
    }

    #[test]
    fn a_balance_that_goes_down_or_overshoots_while_running_is_caught() {
        let (h, s) = clean();
        read(&h, "a", 9);
        read(&h, "a", 50);
        let v = Bank.check(&h.ops(), &s);
        assert_eq!(v.anomaly_count("balance_went_down"), 1, "{v:?}");
        assert_eq!(v.anomaly_count("double_applied"), 1, "{v:?}");
    }
}
