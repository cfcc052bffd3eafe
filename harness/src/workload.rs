//! Seeded workloads: a generator of operations (task submissions with duplicates and key
//! reuse, credits over a few accounts, balance reads, users CRUD) and a runner that executes
//! them from several client processes into the history.
//!
//! The generator is deterministic for a seed: the same seed yields the same operations (their
//! interleaving across processes depends on timing).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use rand::{seq::IndexedRandom, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::{
    history::{OpType, Process},
    ops::Recorder,
};

/// The mix of operations, with relative weights for task types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mix {
    pub credit: u32,
    pub echo: u32,
    pub sleep: u32,
    pub flaky: u32,
    pub poison: u32,
    /// Weight of a users CRUD operation among task submissions.
    pub users: u32,
    /// Accounts credits are spread over.
    pub accounts: u32,
    pub max_amount: i64,
    pub max_sleep_ms: u64,
    /// `flaky` tasks fail 0..=this many attempts.
    pub max_flaky_failures: u32,
    /// Probability that a submission repeats an earlier key and body (a client retry).
    pub duplicate_rate: f64,
    /// Probability that it reuses an earlier key with another body (422 expected).
    pub reuse_rate: f64,
    /// Probability of a balance read instead of a submission.
    pub read_rate: f64,
    /// Webhook sink base URL; each task then calls back `<base>/hook/<key>`.
    pub callback_base: Option<String>,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            credit: 6,
            echo: 2,
            sleep: 1,
            flaky: 1,
            poison: 0,
            users: 0,
            accounts: 5,
            max_amount: 100,
            max_sleep_ms: 50,
            max_flaky_failures: 2,
            duplicate_rate: 0.1,
            reuse_rate: 0.0,
            read_rate: 0.1,
            callback_base: None,
        }
    }
}

/// One operation to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Submit {
        key: String,
        body: Value,
    },
    ReadBalance {
        account: String,
    },
    CreateUser {
        name: String,
        email: String,
    },
    /// Reads, renames or deletes the user created `nth` (modulo those that exist).
    ReadUser {
        nth: usize,
    },
    UpdateUser {
        nth: usize,
        name: String,
    },
    DeleteUser {
        nth: usize,
    },
}

/// Deterministic source of actions for a seed.
pub struct Generator {
    rng: ChaCha8Rng,
    mix: Mix,
    seed: u64,
    issued: Vec<(String, Value)>,
    next_key: u64,
}

impl Generator {
    pub fn new(seed: u64, mix: Mix) -> Generator {
        Generator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            mix,
            seed,
            issued: Vec::new(),
            next_key: 0,
        }
    }

    pub fn account(i: u32) -> String {
        format!("acc-{i}")
    }

    /// Accounts credits may go to.
    pub fn accounts(&self) -> Vec<String> {
        (0..self.mix.accounts.max(1)).map(Self::account).collect()
    }

    pub fn next_action(&mut self) -> Action {
        if self.rng.random_bool(self.mix.read_rate.clamp(0.0, 1.0)) {
            return Action::ReadBalance {
                account: Self::account(self.rng.random_range(0..self.mix.accounts.max(1))),
            };
        }
        let task_weight =
            self.mix.credit + self.mix.echo + self.mix.sleep + self.mix.flaky + self.mix.poison;
        if self.mix.users > 0
            && self.rng.random_range(0..task_weight + self.mix.users) >= task_weight
        {
            return self.user_action();
        }
        if !self.issued.is_empty()
            && self
                .rng
                .random_bool(self.mix.duplicate_rate.clamp(0.0, 1.0))
        {
            let (key, body) = self
                .issued
                .choose(&mut self.rng)
                .cloned()
                .expect("non-empty");
            return Action::Submit { key, body };
        }
        let key = if !self.issued.is_empty()
            && self.rng.random_bool(self.mix.reuse_rate.clamp(0.0, 1.0))
        {
            self.issued
                .choose(&mut self.rng)
                .map(|(k, _)| k.clone())
                .expect("non-empty")
        } else {
            self.next_key += 1;
            format!("{:x}-{}", self.seed, self.next_key)
        };
        let body = self.task_body(&key);
        self.issued.push((key.clone(), body.clone()));
        Action::Submit { key, body }
    }

    fn task_body(&mut self, key: &str) -> Value {
        let m = &self.mix;
        let weights = [
            ("credit", m.credit),
            ("echo", m.echo),
            ("sleep", m.sleep),
            ("flaky", m.flaky),
            ("poison", m.poison),
        ];
        let total: u32 = weights.iter().map(|(_, w)| w).sum();
        let mut pick = self.rng.random_range(0..total.max(1));
        let kind = weights
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map_or("echo", |(k, _)| k);
        let payload = match kind {
            "credit" => {
                json!({"account": Self::account(self.rng.random_range(0..m.accounts.max(1))), "amount": self.rng.random_range(1..=m.max_amount.max(1))})
            }
            "sleep" => json!({"ms": self.rng.random_range(0..=m.max_sleep_ms)}),
            "flaky" => json!({"fail_times": self.rng.random_range(0..=m.max_flaky_failures)}),
            _ => json!({"key": key}),
        };
        let mut body = json!({"type": kind, "payload": payload});
        if let Some(base) = &m.callback_base {
            body["callback_url"] = json!(format!("{}/hook/{key}", base.trim_end_matches('/')));
        }
        body
    }

    fn user_action(&mut self) -> Action {
        self.next_key += 1;
        let n = self.next_key;
        match self.rng.random_range(0..4) {
            0 => Action::CreateUser {
                name: format!("user {n}"),
                email: format!("u{n}-{:x}@example.com", self.seed),
            },
            1 => Action::ReadUser {
                nth: self.rng.random_range(0..1024),
            },
            2 => Action::UpdateUser {
                nth: self.rng.random_range(0..1024),
                name: format!("renamed {n}"),
            },
            _ => Action::DeleteUser {
                nth: self.rng.random_range(0..1024),
            },
        }
    }
}

/// When a workload stops, and how hard it pushes.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Operations in total (all processes).
    pub ops: u64,
    /// Wall-clock bound.
    pub duration: Duration,
    /// Client processes running at once.
    pub concurrency: usize,
    /// Operations per second over all processes; unbounded when `None`.
    pub rate: Option<f64>,
}

/// What a workload run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

impl Tally {
    pub fn total(&self) -> u64 {
        self.ok + self.fail + self.info
    }

    fn add(&mut self, kind: OpType) {
        match kind {
            OpType::Ok => self.ok += 1,
            OpType::Fail => self.fail += 1,
            _ => self.info += 1,
        }
    }
}

/// Shared state of a run: the generator, process numbering, created users.
struct Shared {
    generator: Mutex<Generator>,
    started: AtomicU64,
    next_process: AtomicU64,
    users: Mutex<Vec<Option<(i64, String)>>>,
    tally: Mutex<Tally>,
}

/// Runs the generator's actions until `limits` are reached, from `limits.concurrency` client
/// processes. A process whose operation ends `info` is retired and replaced (Jepsen's rule).
pub async fn run(recorder: &Recorder, generator: Generator, limits: &Limits) -> Tally {
    let shared = Arc::new(Shared {
        generator: Mutex::new(generator),
        started: AtomicU64::new(0),
        next_process: AtomicU64::new(limits.concurrency as u64),
        users: Mutex::new(Vec::new()),
        tally: Mutex::new(Tally::default()),
    });
    let deadline = tokio::time::Instant::now() + limits.duration;
    let pace = limits
        .rate
        .map(|r| Duration::from_secs_f64(limits.concurrency as f64 / r.max(0.001)));
    // Both abort their tasks when dropped: a cancelled run leaves no client running.
    let _progress =
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(report_progress(shared.clone())));
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..limits.concurrency {
        let (shared, recorder, ops) = (shared.clone(), recorder.clone(), limits.ops);
        workers.spawn(async move {
            let mut process = i as u64;
            while shared.started.fetch_add(1, Ordering::SeqCst) < ops
                && tokio::time::Instant::now() < deadline
            {
                let action = shared.generator.lock().await.next_action();
                let kind = perform(&recorder, &shared, Process::Client(process), action).await;
                shared.tally.lock().await.add(kind);
                if kind == OpType::Info {
                    process = shared.next_process.fetch_add(1, Ordering::SeqCst);
                }
                if let Some(p) = pace {
                    tokio::time::sleep(p).await;
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let tally = *shared.tally.lock().await;
    tracing::info!(
        ok = tally.ok,
        fail = tally.fail,
        info = tally.info,
        "workload done"
    );
    tally
}

async fn report_progress(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    loop {
        tick.tick().await;
        let t = *shared.tally.lock().await;
        tracing::info!(
            done = t.total(),
            ok = t.ok,
            fail = t.fail,
            info = t.info,
            "workload progress"
        );
    }
}

async fn perform(r: &Recorder, shared: &Shared, process: Process, action: Action) -> OpType {
    match action {
        Action::Submit { key, body } => r.submit(process, &key, &body).await.0,
        Action::ReadBalance { account } => r.read_balance(process, &account).await,
        Action::CreateUser { name, email } => {
            let (kind, id) = r.create_user(process, &name, &email).await;
            if let Some(id) = id {
                shared.users.lock().await.push(Some((id, email)));
            }
            kind
        }
        Action::ReadUser { nth } => match pick_user(shared, nth).await {
            Some((id, _)) => r.read_user(process, id).await,
            None => OpType::Fail,
        },
        Action::UpdateUser { nth, name } => match pick_user(shared, nth).await {
            Some((id, email)) => r.update_user(process, id, &name, &email).await,
            None => OpType::Fail,
        },
        Action::DeleteUser { nth } => {
            let mut users = shared.users.lock().await;
            let live: Vec<usize> = (0..users.len()).filter(|i| users[*i].is_some()).collect();
            let Some(&slot) = live.get(nth % live.len().max(1)) else {
                return OpType::Fail;
            };
            let (id, _) = users[slot].take().expect("live slot");
            drop(users);
            r.delete_user(process, id).await
        }
    }
}

async fn pick_user(shared: &Shared, nth: usize) -> Option<(i64, String)> {
    let users = shared.users.lock().await;
    let live: Vec<&(i64, String)> = users.iter().flatten().collect();
    live.get(nth % live.len().max(1)).map(|u| (*u).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions(seed: u64, mix: Mix, n: usize) -> Vec<Action> {
        let mut g = Generator::new(seed, mix);
        (0..n).map(|_| g.next_action()).collect()
    }

    #[test]
    fn a_seed_determines_the_operations() {
        assert_eq!(
            actions(7, Mix::default(), 200),
            actions(7, Mix::default(), 200)
        );
        assert_ne!(
            actions(7, Mix::default(), 200),
            actions(8, Mix::default(), 200)
        );
    }

    #[test]
    fn the_mix_is_respected() {
        let mix = Mix {
            duplicate_rate: 0.3,
            reuse_rate: 0.2,
            read_rate: 0.0,
            callback_base: Some("http://s".into()),
            ..Mix::default()
        };
        let acts = actions(1, mix, 1000);
        let submits: Vec<(&String, &Value)> = acts
            .iter()
            .filter_map(|a| match a {
                Action::Submit { key, body } => Some((key, body)),
                _ => None,
            })
            .collect();
        assert_eq!(submits.len(), 1000);
        let keys: std::collections::BTreeSet<&String> = submits.iter().map(|(k, _)| *k).collect();
        assert!(
            keys.len() < 800,
            "duplicates and reuse repeat keys: {} distinct",
            keys.len()
        );
        let credits = submits
            .iter()
            .filter(|(_, b)| b["type"] == "credit")
            .count();
        assert!(credits > 400, "credit has the largest weight: {credits}");
        assert!(submits
            .iter()
            .all(|(k, b)| b["callback_url"] == format!("http://s/hook/{k}")));
        let amounts_ok = submits
            .iter()
            .filter(|(_, b)| b["type"] == "credit")
            .all(|(_, b)| (1..=100).contains(&b["payload"]["amount"].as_i64().unwrap()));
        assert!(amounts_ok);
    }
}
