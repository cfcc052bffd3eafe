//! Account balances: each equals the sum of its distinct credits that succeeded.
//!
//! Each key's credit is the body the system accepted (a key reused with another body is
//! refused, so the accepted body is the one a 202 answered). Credits whose outcome is open (a
//! submission timed out and no task is known, or the task had not ended or could not be read)
//! may or may not have been applied, so the expected balance is a range: the known successful
//! credits at least, plus the open ones at most. Above the range a credit was applied twice
//! (`double_applied`); below it an effect was lost (`lost_effect`). A balance the final read
//! could not read leaves the verdict undecided. Balances read during the run never go down
//! between reads that did not overlap, as credits only add (`balance_went_down`).

use std::collections::{BTreeMap, BTreeSet};

use reports::Verdict;
use serde_json::json;

use super::{submissions, tasks_by_key, Checker, Submission};
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

/// An account and an amount.
type Credit = (String, i64);

fn credit_of(body: &serde_json::Value) -> Option<Credit> {
    if body["type"] != "credit" {
        return None;
    }
    Some((
        body["payload"]["account"].as_str()?.to_string(),
        body["payload"]["amount"].as_i64()?,
    ))
}

/// The credit a key's accepted submission carried, else the credits its unanswered ones did.
fn credits_of_key(list: &[Submission]) -> (Option<Credit>, Vec<Credit>) {
    let accepted = list
        .iter()
        .find(|s| s.outcome == OpType::Ok)
        .and_then(|s| credit_of(&s.body));
    let open = list
        .iter()
        .filter(|s| s.outcome == OpType::Info)
        .filter_map(|s| credit_of(&s.body))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    (accepted, open)
}

/// Expected balance range per account from the submissions and the final task statuses.
fn expected(history: &[Op], state: &FinalState) -> BTreeMap<String, Expected> {
    let subs = submissions(history);
    let ids = tasks_by_key(&subs, state);
    let mut out: BTreeMap<String, Expected> = BTreeMap::new();
    for (key, list) in &subs {
        let (accepted, open) = credits_of_key(list);
        let known: BTreeSet<&String> = ids.get(key).map(|s| s.iter().collect()).unwrap_or_default();
        let status = |id: &&String| state.tasks.get(*id).map(|t| t.status.as_str());
        let succeeded = known
            .iter()
            .filter(|id| status(id) == Some("SUCCESS"))
            .count() as i64;
        let unsettled = known
            .iter()
            .filter(|id| status(id).is_none_or(|s| s != "SUCCESS" && s != "FAILED"))
            .count() as i64;
        // Each distinct task of the key is one credit; duplicates of the key are the ledger's.
        match accepted {
            Some((account, amount)) => {
                let e = out.entry(account).or_default();
                e.low += amount * succeeded;
                e.high += amount * (succeeded + unsettled);
            }
            // Never answered: the credit applied, if any, is one of the unanswered bodies. A
            // task known through a callback that succeeded was applied; when only one body
            // could be it, that credit is owed for sure.
            None => {
                if let [(account, amount)] = open.as_slice() {
                    out.entry(account.clone()).or_default().low += amount * succeeded;
                }
                for (account, amount) in open {
                    out.entry(account).or_default().high += amount;
                }
            }
        }
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
        for account in accounts
            .iter()
            .filter(|a| !state.unread.balances.contains(**a))
        {
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
            .count("unread", state.unread.balances.len() as u64)
            .measure("total_balance", total as f64)
            .measure(
                "expected_total_min",
                want.values().map(|e| e.low).sum::<i64>() as f64,
            );
        if (want.is_empty() && state.balances.is_empty()) || !state.unread.balances.is_empty() {
            v.undecided();
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

/// A balance read during the run: when it was invoked and completed, and what it returned.
struct Read {
    invoked: u64,
    completed: u64,
    account: String,
    balance: i64,
}

fn balance_reads(history: &[Op]) -> Vec<Read> {
    pairs(history)
        .into_iter()
        .filter(|p| p.invoke.f == f::READ_BALANCE && p.outcome() == OpType::Ok)
        .filter_map(|p| {
            let c = p.completion?;
            Some(Read {
                invoked: p.invoke.time_ns,
                completed: c.time_ns,
                account: p.invoke.value["account"].as_str()?.to_string(),
                balance: c.value["balance"].as_i64()?,
            })
        })
        .collect()
}

/// Balances read during the run only grow, and never exceed what could have been applied.
/// A read is compared with the reads that completed before it was invoked: overlapping reads
/// may be served in either order.
fn check_reads(v: &mut Verdict, history: &[Op], want: &BTreeMap<String, Expected>) {
    let mut reads = balance_reads(history);
    reads.sort_by_key(|r| r.invoked);
    let mut done: Vec<(u64, &str, i64)> = reads
        .iter()
        .map(|r| (r.completed, r.account.as_str(), r.balance))
        .collect();
    done.sort();
    let (mut next, mut highest): (usize, BTreeMap<&str, i64>) = (0, BTreeMap::new());
    for r in &reads {
        while next < done.len() && done[next].0 < r.invoked {
            let (_, account, balance) = done[next];
            let h = highest.entry(account).or_insert(balance);
            *h = (*h).max(balance);
            next += 1;
        }
        if let Some(before) = highest.get(r.account.as_str()).filter(|b| r.balance < **b) {
            v.anomaly(
                "balance_went_down",
                json!({"account": r.account, "before": before, "after": r.balance, "invoked_ns": r.invoked}),
            );
        }
        let high = want.get(&r.account).map_or(0, |e| e.high);
        if r.balance > high {
            v.anomaly(
                "double_applied",
                json!({"account": r.account, "read": r.balance, "expected_max": high, "invoked_ns": r.invoked}),
            );
        }
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

    #[test]
    fn a_reused_key_is_judged_by_the_body_the_system_accepted() {
        let h = History::new();
        let mut s = FinalState::default();
        submit(&h, 0, "k", credit("acc-1", 10), OpType::Fail, json!(null));
        accepted(&h, 1, "k", credit("acc-2", 50), "t1", false);
        s.tasks.insert("t1".into(), done("SUCCESS"));
        s.balances.insert("acc-1".into(), 0);
        s.balances.insert("acc-2".into(), 50);
        let v = Bank.check(&h.ops(), &s);
        assert_eq!(v.validity, reports::Validity::Valid, "{v:?}");
    }

    #[test]
    fn overlapping_reads_may_be_served_in_either_order() {
        let h = History::new();
        let mut s = FinalState::default();
        accepted(&h, 0, "k0", credit("a", 5), "t0", false);
        accepted(&h, 1, "k1", credit("a", 7), "t1", false);
        s.tasks.insert("t0".into(), done("SUCCESS"));
        s.tasks.insert("t1".into(), done("SUCCESS"));
        s.balances.insert("a".into(), 12);
        let first = h.invoke(
            Process::Client(60),
            f::READ_BALANCE,
            json!({"account": "a"}),
        );
        let second = h.invoke(
            Process::Client(61),
            f::READ_BALANCE,
            json!({"account": "a"}),
        );
        h.complete(&second, OpType::Ok, json!({"balance": 12}), None);
        h.complete(&first, OpType::Ok, json!({"balance": 5}), None);
        let v = Bank.check(&h.ops(), &s);
        assert_eq!(v.anomaly_count("balance_went_down"), 0, "{v:?}");
    }

    #[test]
    fn an_unread_balance_or_an_unfinished_task_is_not_called_wrong() {
        let (h, mut s) = clean();
        s.balances.remove("a");
        s.unread.balances.insert("a".into());
        let v = Bank.check(&h.ops(), &s);
        assert_eq!(v.validity, reports::Validity::Unknown, "{v:?}");

        let (h, mut s) = clean();
        s.tasks.insert("t2".into(), done("RUNNING")); // its credit already committed
        let v = Bank.check(&h.ops(), &s);
        assert_eq!(v.validity, reports::Validity::Valid, "{v:?}");
    }

    #[test]
    fn a_recovered_credit_that_succeeded_must_show_in_the_balance() {
        let h = History::new();
        let mut s = FinalState::default();
        submit(&h, 0, "k", credit("acc", 9), OpType::Info, json!(null));
        s.tasks.insert("t".into(), done("SUCCESS"));
        s.callbacks.push(called_back("k", "t"));
        s.balances.insert("acc".into(), 0);
        let v = Bank.check(&h.ops(), &s);
        assert_eq!(v.anomaly_count("lost_effect"), 1, "{v:?}");
        s.balances.insert("acc".into(), 9);
        let v = Bank.check(&h.ops(), &s);
        assert_eq!(v.validity, reports::Validity::Valid, "{v:?}");
    }
}
