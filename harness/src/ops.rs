//! Operations against the system under test, each recorded in the history as an invocation and
//! its completion. This is where a client result becomes `ok`, `fail` or `info`: 2xx is ok,
//! 4xx a definite refusal, 5xx and broken transports unknown (a 503 may come from a server
//! timeout whose work still completes).

use serde_json::{json, Value};

use crate::{
    client::{Client, ClientError},
    history::{f, History, OpType, Process},
};

/// A client whose every call lands in the history.
#[derive(Clone)]
pub struct Recorder {
    pub client: Client,
    pub history: History,
}

fn outcome_of_status(status: u16) -> OpType {
    match status {
        200..=299 => OpType::Ok,
        400..=499 => OpType::Fail,
        _ => OpType::Info,
    }
}

fn outcome_of_error(e: &ClientError) -> OpType {
    match e {
        ClientError::Http { status, .. } => outcome_of_status(*status),
        // Refused before anything was sent: it did not happen.
        ClientError::Refused(_) => OpType::Fail,
        ClientError::Timeout(_) | ClientError::Transport(_) | ClientError::Protocol(_) => {
            OpType::Info
        }
    }
}

impl Recorder {
    pub fn new(client: Client, history: History) -> Recorder {
        Recorder { client, history }
    }

    /// Runs `call` as operation `f` with `args`; `result` turns its success into the value.
    async fn record<T>(
        &self,
        process: Process,
        f: &str,
        args: Value,
        call: impl std::future::Future<Output = Result<T, ClientError>>,
        result: impl FnOnce(&T) -> (OpType, Value),
    ) -> (OpType, Option<T>) {
        let inv = self.history.invoke(process, f, args);
        match call.await {
            Ok(v) => {
                let (kind, value) = result(&v);
                self.history.complete(&inv, kind, value, None);
                (kind, Some(v))
            }
            Err(e) => {
                let kind = outcome_of_error(&e);
                let value = match &e {
                    ClientError::Http { status, code, .. } => {
                        json!({"status": status, "code": code})
                    }
                    _ => Value::Null,
                };
                self.history
                    .complete(&inv, kind, value, Some(e.to_string()));
                (kind, None)
            }
        }
    }

    /// Submits a task under `key`; returns the outcome and the task id when accepted.
    pub async fn submit(
        &self,
        process: Process,
        key: &str,
        body: &Value,
    ) -> (OpType, Option<String>) {
        let args = json!({"key": key, "body": body});
        let (kind, answer) = self
            .record(
                process,
                f::SUBMIT,
                args,
                self.client.submit(key, body),
                |s| {
                    (
                        outcome_of_status(s.status),
                        serde_json::to_value(s).expect("serialisable"),
                    )
                },
            )
            .await;
        (kind, answer.and_then(|s| s.task_id))
    }

    /// Reads a task's status.
    pub async fn read_task(&self, process: Process, id: &str) -> OpType {
        let call = self.client.task(id);
        self.record(
            process,
            f::READ_TASK,
            json!({"task_id": id}),
            call,
            |t| match t {
                Some(t) => (
                    OpType::Ok,
                    json!({"status": t.status, "attempts": t.attempts}),
                ),
                None => (OpType::Fail, json!({"status": 404})),
            },
        )
        .await
        .0
    }

    /// Reads an account's balance.
    pub async fn read_balance(&self, process: Process, account: &str) -> OpType {
        let call = self.client.balance(account);
        self.record(
            process,
            f::READ_BALANCE,
            json!({"account": account}),
            call,
            |b| (OpType::Ok, json!({"balance": b})),
        )
        .await
        .0
    }

    pub async fn create_user(
        &self,
        process: Process,
        name: &str,
        email: &str,
    ) -> (OpType, Option<i64>) {
        let call = self.client.create_user(name, email);
        let args = json!({"name": name, "email": email});
        self.record(process, f::CREATE_USER, args, call, |id| {
            (OpType::Ok, json!({"id": id}))
        })
        .await
    }

    pub async fn read_user(&self, process: Process, id: i64) -> OpType {
        let call = self.client.user(id);
        self.record(process, f::READ_USER, json!({"id": id}), call, |u| {
            (OpType::Ok, u.clone())
        })
        .await
        .0
    }

    pub async fn update_user(&self, process: Process, id: i64, name: &str, email: &str) -> OpType {
        let call = self.client.update_user(id, name, email);
        let args = json!({"id": id, "name": name, "email": email});
        self.record(process, f::UPDATE_USER, args, call, |u| {
            (OpType::Ok, u.clone())
        })
        .await
        .0
    }

    pub async fn delete_user(&self, process: Process, id: i64) -> OpType {
        let call = self.client.delete_user(id);
        self.record(process, f::DELETE_USER, json!({"id": id}), call, |_| {
            (OpType::Ok, Value::Null)
        })
        .await
        .0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_errors_map_to_outcomes() {
        assert_eq!(outcome_of_status(202), OpType::Ok);
        assert_eq!(outcome_of_status(409), OpType::Fail);
        assert_eq!(outcome_of_status(503), OpType::Info);
        assert_eq!(
            outcome_of_error(&ClientError::Refused("x".into())),
            OpType::Fail
        );
        assert_eq!(
            outcome_of_error(&ClientError::Transport("reset".into())),
            OpType::Info
        );
        let timeout = ClientError::Timeout(std::time::Duration::from_secs(1));
        assert_eq!(outcome_of_error(&timeout), OpType::Info);
        let http = ClientError::Http {
            status: 404,
            code: "NOT_FOUND_ERR".into(),
            message: String::new(),
        };
        assert_eq!(outcome_of_error(&http), OpType::Fail);
    }
}
