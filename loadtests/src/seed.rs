//! Data the transactions need before the load starts: users to read and to update, and
//! accounts with a balance. Made through the contract, so it works for any system.

use std::time::Duration;

use anyhow::Context;
use futures_util::future::try_join_all;
use harness::client::{Client, ClientError};

use crate::target::Target;

/// Users read over and over (the cache's working set).
const HOT_USERS: usize = 50;
/// Users updated and read back.
const WRITE_USERS: usize = 50;
const ACCOUNTS: usize = 16;

/// What was seeded.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub base_url: String,
    pub token: Option<String>,
    pub hot_users: Vec<i64>,
    pub write_users: Vec<i64>,
    pub accounts: Vec<String>,
}

/// Retries a call the system refused for now (429, 503), as its `Retry-After` asks, for up to
/// a minute: seeding a rate-limited system is slow, not an error.
async fn patiently<T, F, Fut>(call: F) -> Result<T, ClientError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Err(ClientError::Http {
                status: 429 | 503, ..
            }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

/// Waits for the system, creates the users and credits the accounts (waiting until each has
/// its balance), and reads every hot user once so the cache holds them.
pub async fn seed(target: &Target, limit: Duration) -> anyhow::Result<Seeded> {
    let client = Client::new(
        &target.base_url,
        target.token.clone(),
        Duration::from_secs(10),
    );
    anyhow::ensure!(
        client.wait_ready(limit).await,
        "{} did not answer /readyz with 200 within {limit:?}",
        target.base_url
    );
    let run = uuid::Uuid::new_v4().simple().to_string();
    let run = &run[..10];
    let users = |kind: &'static str, n: usize| {
        let client = client.clone();
        try_join_all((0..n).map(move |i| {
            let client = client.clone();
            async move {
                let (name, email) = (format!("{kind} {i}"), format!("{kind}-{i}-{run}@load.test"));
                patiently(|| client.create_user(&name, &email)).await
            }
        }))
    };
    let hot_users = users("hot", HOT_USERS)
        .await
        .context("cannot create users")?;
    let write_users = users("writer", WRITE_USERS)
        .await
        .context("cannot create users")?;
    // The update transaction sets this email; set it once so that it is the user's own.
    for id in &write_users {
        let email = format!("writer-{id}@load.test");
        patiently(|| client.update_user(*id, "writer", &email))
            .await
            .context("cannot update a user")?;
    }
    for id in &hot_users {
        patiently(|| client.user(*id))
            .await
            .context("cannot read a user")?;
    }
    let accounts: Vec<String> = (0..ACCOUNTS).map(|i| format!("load-{run}-{i}")).collect();
    for account in &accounts {
        let body =
            serde_json::json!({"type": "credit", "payload": {"account": account, "amount": 1}});
        // One key for all tries: a retry of an accepted credit replays it.
        let key = uuid::Uuid::new_v4().to_string();
        let answer = patiently(|| async {
            match client.submit(&key, &body).await {
                Ok(s) if s.status == 429 || s.status == 503 => Err(ClientError::Http {
                    status: s.status,
                    code: s.code,
                    message: "not now".into(),
                }),
                other => other,
            }
        })
        .await
        .context("cannot submit a credit")?;
        anyhow::ensure!(
            answer.status == 202,
            "a credit was answered {}",
            answer.status
        );
    }
    wait_for_balances(&client, &accounts, limit).await?;
    Ok(Seeded {
        base_url: target.base_url.clone(),
        token: target.token.clone(),
        hot_users,
        write_users,
        accounts,
    })
}

async fn wait_for_balances(
    client: &Client,
    accounts: &[String],
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    for account in accounts {
        loop {
            if client.balance(account).await.unwrap_or(0) > 0 {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "account {account} got no balance within {limit:?}: are workers consuming?"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
