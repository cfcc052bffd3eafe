//! The seed's traffic as goose transactions: a read-heavy users CRUD mix with cached reads and
//! reads right after a write (which the cache cannot serve), task submissions, balance reads,
//! and the end-to-end task, whose submit → end time goose records as a custom row.
//!
//! Every request carries the bearer token and its own `Idempotency-Key`.

use std::{
    fmt,
    str::FromStr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use goose::prelude::*;
use serde_json::json;

use crate::completions::{self, Completions};

/// Names of goose's rows, as its reports print them (`<METHOD> <name>`); thresholds scoped
/// with `for <row>` use these.
pub mod row {
    pub const CACHED_READ: &str = "user (cached)";
    pub const WRITE: &str = "user (update)";
    pub const READ_AFTER_WRITE: &str = "user (after write)";
    pub const LIST: &str = "users (list)";
    pub const CREATE: &str = "user (create)";
    pub const SUBMIT: &str = "task (submit)";
    pub const E2E_SUBMIT: &str = "task (end-to-end submit)";
    pub const BALANCE: &str = "account (balance)";
    /// The custom row: submit → SUCCESS of end-to-end tasks.
    pub const TASK_METHOD: &str = "TASK";
    pub const TASK: &str = "submit-to-success";
    /// `TASK submit-to-success`, as rules and reports name the row.
    pub fn task() -> String {
        format!("{TASK_METHOD} {TASK}")
    }
}

/// Relative weights of the transactions (0 leaves one out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub cached_read: usize,
    pub write_then_read: usize,
    pub list: usize,
    pub create: usize,
    pub submit: usize,
    pub balance: usize,
    pub end_to_end: usize,
}

impl Mix {
    /// The seed's API traffic: mostly cached user reads, some writes, task submissions and
    /// balance reads.
    pub const SEED: Mix = Mix {
        cached_read: 50,
        write_then_read: 5,
        list: 5,
        create: 5,
        submit: 20,
        balance: 10,
        end_to_end: 0,
    };

    /// The seed's traffic with end-to-end tasks among the submissions.
    pub const WITH_TASKS: Mix = Mix {
        submit: 15,
        end_to_end: 5,
        ..Mix::SEED
    };

    /// [`Mix::WITH_TASKS`] without creating users: users are kept until deleted, like any
    /// record of the domain, so a steady state (the soak's) reads and updates a fixed set.
    pub const STEADY: Mix = Mix {
        create: 0,
        ..Mix::WITH_TASKS
    };

    /// End-to-end tasks only.
    pub const TASKS_ONLY: Mix = Mix {
        cached_read: 0,
        write_then_read: 0,
        list: 0,
        create: 0,
        submit: 0,
        balance: 0,
        end_to_end: 1,
    };

    /// Task submissions only.
    pub const SUBMIT_ONLY: Mix = Mix {
        submit: 1,
        end_to_end: 0,
        ..Mix::TASKS_ONLY
    };

    fn fields(&mut self) -> [(&'static str, &mut usize); 7] {
        [
            ("cached", &mut self.cached_read),
            ("after-write", &mut self.write_then_read),
            ("list", &mut self.list),
            ("create", &mut self.create),
            ("submit", &mut self.submit),
            ("balance", &mut self.balance),
            ("e2e", &mut self.end_to_end),
        ]
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = *self;
        let parts: Vec<String> = m
            .fields()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// `cached=50,submit=20,...`: the weights named, the others 0.
impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut mix = Mix::TASKS_ONLY;
        mix.end_to_end = 0;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not name=weight"))?;
            let weight: usize = weight
                .trim()
                .parse()
                .map_err(|_| format!("`{weight}` in `{part}` is not a whole number"))?;
            let mut fields = mix.fields();
            let known: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
            let known = known.join(", ");
            let slot = fields
                .iter_mut()
                .find(|(k, _)| *k == name.trim())
                .ok_or_else(|| format!("unknown transaction `{name}` (known: {known})"))?;
            *slot.1 = weight;
        }
        if mix.fields().iter().all(|(_, w)| **w == 0) {
            return Err("the mix needs at least one weight above 0".into());
        }
        Ok(mix)
    }
}

/// How an end-to-end transaction learns that its task ended.
#[derive(Clone)]
pub enum Waiter {
    /// From the system's events exchange: costs the system nothing.
    Events(Arc<Completions>),
    /// By polling the task, outside goose's figures (for a system whose broker is out of reach).
    Poll(reqwest::Client),
}

/// What the transactions share: the data seeded before the run, the token, and the budget.
pub struct Workload {
    pub base_url: String,
    pub token: Option<String>,
    /// Users read over and over: the cache serves them.
    pub hot_users: Vec<i64>,
    /// Users updated and read back at once: the cache cannot serve those reads.
    pub write_users: Vec<i64>,
    /// Accounts with a balance.
    pub accounts: Vec<String>,
    pub waiter: Waiter,
    /// How long an end-to-end task may take before it counts as failed.
    pub task_timeout: Duration,
    /// Requests left before the run stops itself.
    budget: AtomicU64,
}

impl Workload {
    pub fn new(seeded: crate::seed::Seeded, waiter: Waiter, task_timeout: Duration) -> Self {
        Workload {
            base_url: seeded.base_url,
            token: seeded.token,
            hot_users: seeded.hot_users,
            write_users: seeded.write_users,
            accounts: seeded.accounts,
            waiter,
            task_timeout,
            budget: AtomicU64::new(u64::MAX),
        }
    }

    /// Stops the run (goose's killswitch) after `n` more requests.
    pub fn limit_requests(&self, n: u64) {
        self.budget.store(n, Ordering::SeqCst);
    }

    fn spend(&self) {
        let before = self
            .budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .unwrap_or(0);
        if before <= 1 {
            goose::trigger_killswitch("the request budget (--max-requests) is spent");
        }
    }

    /// The goose scenario of `mix`.
    pub fn scenario(self: &Arc<Self>, mix: Mix) -> Result<Scenario, GooseError> {
        type Step = fn(Arc<Workload>, &mut GooseUser) -> TxFuture<'_>;
        let all: [(usize, &str, Step); 7] = [
            (mix.cached_read, "cached read", |w, u| {
                Box::pin(cached_read(w, u))
            }),
            (mix.write_then_read, "write then read", |w, u| {
                Box::pin(write_then_read(w, u))
            }),
            (mix.list, "list", |w, u| Box::pin(list(w, u))),
            (mix.create, "create", |w, u| Box::pin(create(w, u))),
            (mix.submit, "submit", |w, u| Box::pin(submit(w, u))),
            (mix.balance, "balance", |w, u| Box::pin(balance(w, u))),
            (mix.end_to_end, "end to end", |w, u| {
                Box::pin(end_to_end(w, u))
            }),
        ];
        let mut scenario = Scenario::new("api");
        for (weight, name, step) in all {
            if weight == 0 {
                continue;
            }
            let me = self.clone();
            let f: TransactionFunction = Arc::new(move |user| step(me.clone(), user));
            scenario = scenario
                .register_transaction(Transaction::new(f).set_name(name).set_weight(weight)?);
        }
        Ok(scenario)
    }
}

type TxFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = TransactionResult> + Send + 'a>>;

fn pick<T: Clone>(items: &[T]) -> T {
    items[rand::random_range(0..items.len())].clone()
}

/// Sends one request with the token and a fresh Idempotency-Key; non-2xx counts as failed.
async fn send(
    w: &Workload,
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &str,
    body: Option<&serde_json::Value>,
) -> Result<goose::goose::GooseResponse, Box<TransactionError>> {
    w.spend();
    let mut rb = user
        .get_request_builder(&method, path)?
        .header("idempotency-key", uuid::Uuid::new_v4().to_string());
    if let Some(token) = &w.token {
        rb = rb.bearer_auth(token);
    }
    if let Some(body) = body {
        rb = rb.json(body);
    }
    let request = GooseRequest::builder()
        .method(method)
        .path(path)
        .name(name)
        .set_request_builder(rb)
        .build();
    user.request(request).await
}

async fn cached_read(w: Arc<Workload>, user: &mut GooseUser) -> TransactionResult {
    let path = format!("/api/v1/users/{}", pick(&w.hot_users));
    send(&w, user, GooseMethod::Get, &path, row::CACHED_READ, None).await?;
    Ok(())
}

async fn write_then_read(w: Arc<Workload>, user: &mut GooseUser) -> TransactionResult {
    let id = pick(&w.write_users);
    let path = format!("/api/v1/users/{id}");
    let body = json!({"name": format!("writer {}", rand::random_range(0..1_000_000)),
                      "email": format!("writer-{id}@load.test")});
    send(&w, user, GooseMethod::Put, &path, row::WRITE, Some(&body)).await?;
    send(
        &w,
        user,
        GooseMethod::Get,
        &path,
        row::READ_AFTER_WRITE,
        None,
    )
    .await?;
    Ok(())
}

async fn list(w: Arc<Workload>, user: &mut GooseUser) -> TransactionResult {
    let path = format!(
        "/api/v1/users?page={}&per_page=20",
        rand::random_range(1..=5)
    );
    send(&w, user, GooseMethod::Get, &path, row::LIST, None).await?;
    Ok(())
}

async fn create(w: Arc<Workload>, user: &mut GooseUser) -> TransactionResult {
    let body = json!({"name": "load user", "email": format!("{}@load.test", uuid::Uuid::new_v4().simple())});
    send(
        &w,
        user,
        GooseMethod::Post,
        "/api/v1/users",
        row::CREATE,
        Some(&body),
    )
    .await?;
    Ok(())
}

async fn submit(w: Arc<Workload>, user: &mut GooseUser) -> TransactionResult {
    let body = json!({"type": "echo", "payload": {"n": rand::random_range(0..1_000_000)}});
    send(
        &w,
        user,
        GooseMethod::Post,
        "/api/v1/tasks",
        row::SUBMIT,
        Some(&body),
    )
    .await?;
    Ok(())
}

async fn balance(w: Arc<Workload>, user: &mut GooseUser) -> TransactionResult {
    let path = format!("/api/v1/accounts/{}", pick(&w.accounts));
    send(&w, user, GooseMethod::Get, &path, row::BALANCE, None).await?;
    Ok(())
}

/// Submits an echo task and waits for its end; the custom row holds 202 → end: from when the
/// client has the task id to when it learns the task ended. (Measured from before the request,
/// it would count goose's throttle, whose wait is the generator's, not the system's.)
async fn end_to_end(w: Arc<Workload>, user: &mut GooseUser) -> TransactionResult {
    let body = json!({"type": "echo", "payload": {"e2e": true}});
    let submit = "/api/v1/tasks";
    let answer = send(
        &w,
        user,
        GooseMethod::Post,
        submit,
        row::E2E_SUBMIT,
        Some(&body),
    )
    .await?;
    let task = match answer.response {
        Ok(r) if r.status().as_u16() == 202 => r
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| Some(v.get("data")?.get("task_id")?.as_str()?.to_string())),
        _ => None,
    };
    let Some(task) = task else {
        // The submission's own row already counts the failure.
        return Ok(());
    };
    let accepted = Instant::now();
    let ended = match &w.waiter {
        Waiter::Events(c) => c.wait(&task, w.task_timeout).await,
        Waiter::Poll(http) => {
            completions::poll(http, &w.base_url, w.token.as_deref(), &task, w.task_timeout).await
        }
    };
    let (elapsed, success, error) = match &ended {
        Some(e) if e.status == "SUCCESS" => (e.at - accepted, true, None),
        Some(e) => (
            e.at - accepted,
            false,
            Some(format!("task ended {}", e.status)),
        ),
        None => (
            w.task_timeout,
            false,
            Some("task did not end in time".to_string()),
        ),
    };
    user.record_custom_request_duration(
        row::TASK_METHOD,
        row::TASK,
        elapsed,
        success,
        None,
        error.as_deref(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_is_read_from_names_and_weights() {
        let m: Mix = "cached=3, submit=1".parse().unwrap();
        assert_eq!(m.cached_read, 3);
        assert_eq!(m.submit, 1);
        assert_eq!(m.end_to_end, 0);
        assert_eq!(Mix::SEED.to_string().parse::<Mix>().unwrap(), Mix::SEED);
        assert!("cached".parse::<Mix>().unwrap_err().contains("name=weight"));
        assert!("reads=1".parse::<Mix>().unwrap_err().contains("known:"));
        assert!("cached=0".parse::<Mix>().is_err());
        assert!("cached=x".parse::<Mix>().is_err());
    }
}
