//! The history: every operation as an invocation, then its completion (ok, fail or info), with
//! monotonic timestamps and the logical process that ran it, in Jepsen's terms.
//!
//! `ok` means the operation happened; `fail` means it definitely did not; `info` means the
//! outcome is unknown (a timeout, a reset). A process whose operation ended `info` is retired:
//! its next operation runs under a new process number, since the old one may still be in flight.
//! The history is kept in memory and, when a file is given, appended to it as JSON lines.

use std::{
    fs::File,
    io::{BufRead, BufReader, BufWriter, Write},
    path::Path,
    sync::{Arc, Mutex},
    time::Instant,
};

use serde::{Deserialize, Serialize};

/// Operation names of the contract, and of the nemesis.
pub mod f {
    /// `POST /api/v1/tasks`.
    pub const SUBMIT: &str = "submit";
    /// `GET /api/v1/tasks/{id}`.
    pub const READ_TASK: &str = "read-task";
    /// `GET /api/v1/accounts/{id}`.
    pub const READ_BALANCE: &str = "read-balance";
    /// Users CRUD.
    pub const CREATE_USER: &str = "create-user";
    pub const READ_USER: &str = "read-user";
    pub const UPDATE_USER: &str = "update-user";
    pub const DELETE_USER: &str = "delete-user";
    /// A fault begins (`value`: what) and ends (the heal).
    pub const START_FAULT: &str = "start-fault";
    pub const STOP_FAULT: &str = "stop-fault";
    /// A message published straight to the task queue, as a broker redelivery would be.
    pub const REDELIVER: &str = "redeliver";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// Who ran an operation: a client process, or the nemesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Process {
    Client(u64),
    Nemesis(Nemesis),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Nemesis {
    Nemesis,
}

pub const NEMESIS: Process = Process::Nemesis(Nemesis::Nemesis);

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history.
    pub index: u64,
    #[serde(rename = "type")]
    pub kind: OpType,
    pub process: Process,
    /// Operation name (see [`f`]).
    pub f: String,
    /// Arguments on invocation; results on completion.
    #[serde(default)]
    pub value: serde_json::Value,
    /// Nanoseconds since the history began (monotonic clock).
    pub time_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An invocation awaiting its completion.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub process: Process,
    pub f: String,
    pub index: u64,
}

/// A shared, append-only history; cheap to clone.
#[derive(Clone)]
pub struct History {
    inner: Arc<Inner>,
}

struct Inner {
    start: Instant,
    ops: Mutex<Vec<Op>>,
    file: Mutex<Option<BufWriter<File>>>,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    /// An in-memory history.
    pub fn new() -> History {
        History {
            inner: Arc::new(Inner {
                start: Instant::now(),
                ops: Mutex::new(Vec::new()),
                file: Mutex::new(None),
            }),
        }
    }

    /// A history also written to `path` as JSON lines.
    pub fn to_file(path: &Path) -> std::io::Result<History> {
        let h = History::new();
        *h.inner.file.lock().expect("history file lock") =
            Some(BufWriter::new(File::create(path)?));
        Ok(h)
    }

    /// Nanoseconds since the history began.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn append(
        &self,
        process: Process,
        kind: OpType,
        f: &str,
        value: serde_json::Value,
        error: Option<String>,
    ) -> u64 {
        let mut ops = self.inner.ops.lock().expect("history lock");
        let op = Op {
            index: ops.len() as u64,
            kind,
            process,
            f: f.to_string(),
            value,
            time_ns: self.now_ns(),
            error,
        };
        if let Some(w) = self.inner.file.lock().expect("history file lock").as_mut() {
            // A full disk must not stop the run; the in-memory history stays complete.
            let line = serde_json::to_vec(&op).expect("op serialises");
            let _ = w.write_all(&line).and_then(|_| w.write_all(b"\n"));
        }
        ops.push(op);
        (ops.len() - 1) as u64
    }

    pub fn invoke(&self, process: Process, f: &str, value: serde_json::Value) -> Invocation {
        let index = self.append(process, OpType::Invoke, f, value, None);
        Invocation {
            process,
            f: f.to_string(),
            index,
        }
    }

    /// Completes an invocation; `kind` must not be [`OpType::Invoke`].
    pub fn complete(
        &self,
        inv: &Invocation,
        kind: OpType,
        value: serde_json::Value,
        error: Option<String>,
    ) {
        debug_assert_ne!(kind, OpType::Invoke);
        self.append(inv.process, kind, &inv.f, value, error);
    }

    /// A snapshot of the operations so far.
    pub fn ops(&self) -> Vec<Op> {
        self.inner.ops.lock().expect("history lock").clone()
    }

    pub fn flush(&self) -> std::io::Result<()> {
        match self.inner.file.lock().expect("history file lock").as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }

    /// Reads a history written by [`History::to_file`].
    pub fn load(path: &Path) -> anyhow::Result<Vec<Op>> {
        let file =
            File::open(path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        BufReader::new(file)
            .lines()
            .enumerate()
            .filter(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
            .map(|(n, line)| {
                let line = line?;
                serde_json::from_str(&line)
                    .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))
            })
            .collect()
    }
}

/// An operation with its completion, if it completed.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair<'a> {
    pub invoke: &'a Op,
    pub completion: Option<&'a Op>,
}

impl Pair<'_> {
    /// The completion's type, or `Info` when it never completed (unknown outcome).
    pub fn outcome(&self) -> OpType {
        self.completion.map_or(OpType::Info, |c| c.kind)
    }

    pub fn latency_ns(&self) -> Option<u64> {
        self.completion
            .map(|c| c.time_ns.saturating_sub(self.invoke.time_ns))
    }
}

/// Pairs each invocation with the next completion of the same process (a process runs one
/// operation at a time). Invocations are returned in history order.
pub fn pairs(ops: &[Op]) -> Vec<Pair<'_>> {
    let mut open: std::collections::HashMap<Process, usize> = Default::default();
    let mut out: Vec<Pair<'_>> = Vec::new();
    for op in ops {
        match op.kind {
            OpType::Invoke => {
                open.insert(op.process, out.len());
                out.push(Pair {
                    invoke: op,
                    completion: None,
                });
            }
            _ => {
                if let Some(i) = open.remove(&op.process) {
                    out[i].completion = Some(op);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn invocations_pair_with_their_process_completions() {
        let h = History::new();
        let a = h.invoke(Process::Client(0), f::SUBMIT, json!({"key": "a"}));
        let b = h.invoke(Process::Client(1), f::SUBMIT, json!({"key": "b"}));
        h.complete(&b, OpType::Ok, json!({"status": 202}), None);
        h.complete(&a, OpType::Info, json!({}), Some("timeout".into()));
        let c = h.invoke(Process::Client(2), f::READ_TASK, json!({}));
        let ops = h.ops();
        let p = pairs(&ops);
        assert_eq!(p.len(), 3);
        assert_eq!(
            (p[0].invoke.value["key"].clone(), p[0].outcome()),
            (json!("a"), OpType::Info)
        );
        assert_eq!(p[1].outcome(), OpType::Ok);
        assert_eq!((p[2].completion, p[2].outcome()), (None, OpType::Info));
        assert!(p[1].latency_ns().is_some());
        let _ = c;
    }

    #[test]
    fn file_history_round_trips_with_the_nemesis_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let h = History::to_file(&path).unwrap();
        let inv = h.invoke(NEMESIS, f::START_FAULT, json!({"fault": "kill"}));
        h.complete(&inv, OpType::Ok, json!(null), None);
        h.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"process\":\"nemesis\"") && text.contains("\"type\":\"invoke\""),
            "{text}"
        );
        assert_eq!(History::load(&path).unwrap(), h.ops());
    }
}
