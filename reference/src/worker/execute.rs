//! What each task type does. Effects that must happen once (credits) are applied by the store in
//! the finishing transaction; this only decides the outcome.

use serde_json::{json, Value};

use crate::model::TaskSpec;

/// Runs one attempt (`attempt` counts from 1). `Err` is a task failure, to be retried.
pub async fn execute(spec: &TaskSpec, attempt: i64) -> Result<Value, String> {
    match spec {
        TaskSpec::Credit(c) => Ok(json!({"account": c.account, "amount": c.amount})),
        TaskSpec::Echo(payload) => Ok(payload.clone()),
        TaskSpec::Sleep(s) => {
            tokio::time::sleep(std::time::Duration::from_millis(s.ms)).await;
            Ok(json!({"slept_ms": s.ms}))
        }
        TaskSpec::Flaky(f) if attempt <= i64::from(f.fail_times) => Err(format!(
            "flaky failure on attempt {attempt} of {} planned",
            f.fail_times
        )),
        TaskSpec::Flaky(_) => Ok(json!({"succeeded_on_attempt": attempt})),
        TaskSpec::Poison(_) => Err("poison task always fails".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FlakyPayload, SleepPayload};

    #[tokio::test]
    async fn flaky_fails_its_planned_attempts_then_succeeds() {
        let spec = TaskSpec::Flaky(FlakyPayload { fail_times: 2 });
        assert!(execute(&spec, 1).await.is_err());
        assert!(execute(&spec, 2).await.is_err());
        assert_eq!(
            execute(&spec, 3).await.unwrap(),
            json!({"succeeded_on_attempt": 3})
        );
    }

    #[tokio::test]
    async fn poison_always_fails_and_echo_returns_its_payload() {
        assert!(execute(&TaskSpec::Poison(Value::Null), 99).await.is_err());
        assert_eq!(
            execute(&TaskSpec::Echo(json!({"x": 1})), 1).await.unwrap(),
            json!({"x": 1})
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_sleeps() {
        let t = tokio::time::Instant::now();
        execute(&TaskSpec::Sleep(SleepPayload { ms: 1500 }), 1)
            .await
            .unwrap();
        assert!(t.elapsed() >= std::time::Duration::from_millis(1500));
    }
}
