//! Checker speed in history operations per second:
//! `cargo bench -p harness --bench checkers`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use harness::{
    checker::{self, Checker},
    final_state::{CallbackRecord, DeadLetter, FinalState, TaskView},
    history::{f, History, Op, OpType, Process},
};
use serde_json::json;

/// A run of `submissions` credits and echoes (one in ten retried), with the final state of a
/// healthy system.
fn run(submissions: usize) -> (Vec<Op>, FinalState) {
    let h = History::new();
    let mut state = FinalState {
        settled: true,
        dead_letter_queue: Some("p.dlq".into()),
        ..Default::default()
    };
    for i in 0..submissions {
        let (key, id) = (format!("k{i}"), format!("t{i}"));
        let body = if i % 2 == 0 {
            json!({"type": "credit", "payload": {"account": format!("acc-{}", i % 10), "amount": 1}})
        } else {
            json!({"type": "echo", "payload": {"key": key}, "callback_url": format!("http://127.0.0.1/hook/{key}")})
        };
        let tries = if i % 10 == 0 { 2 } else { 1 };
        for attempt in 0..tries {
            let inv = h.invoke(
                Process::Client(i as u64 % 16),
                f::SUBMIT,
                json!({"key": key, "body": body}),
            );
            let done = json!({"status": 202, "code": "OK", "task_id": id, "body_sha256": format!("sha-{i}"), "replayed": attempt > 0});
            h.complete(&inv, OpType::Ok, done, None);
        }
        let failed = i % 50 == 0;
        let status = if failed { "FAILED" } else { "SUCCESS" };
        let callback_url = (i % 2 == 1).then(|| format!("http://127.0.0.1/hook/{key}"));
        if callback_url.is_some() {
            state.callbacks.push(CallbackRecord {
                key: Some(key.clone()),
                event_id: Some(format!("e{i}")),
                task_id: Some(id.clone()),
                status: Some(status.into()),
                signature_valid: true,
                time_ns: i as u64,
            });
        }
        if failed {
            state.dead_letters.push(DeadLetter {
                message_id: Some(id.clone()),
                body: json!(null),
            });
        }
        let kind = if i % 2 == 0 { "credit" } else { "echo" };
        let view = TaskView {
            status: status.into(),
            attempts: 1,
            kind: kind.into(),
            payload: json!(null),
            error: None,
            callback_url,
        };
        state.tasks.insert(id, view);
    }
    for a in 0..10 {
        let credited = (0..submissions)
            .filter(|i| i % 2 == 0 && i % 10 == a && i % 50 != 0)
            .count();
        state.balances.insert(format!("acc-{a}"), credited as i64);
    }
    state.queues.insert("p.tasks.q".into(), 0);
    (h.ops(), state)
}

fn checkers(c: &mut Criterion) {
    let (ops, state) = run(10_000);
    let all: Vec<Box<dyn Checker>> = vec![
        Box::new(checker::TaskLedger),
        Box::new(checker::Idempotency),
        Box::new(checker::Bank),
        Box::new(checker::DeadLetters),
        Box::new(checker::QueueResidue),
        Box::new(checker::Callbacks),
        Box::new(checker::Slo {
            f: f::SUBMIT.into(),
            p99_ms: 100.0,
            availability: 0.99,
        }),
    ];
    for v in checker::check_all(&all, &ops, &state) {
        assert_eq!(
            v.validity,
            reports::Validity::Valid,
            "the benchmark's history is clean: {v:?}"
        );
    }
    let mut g = c.benchmark_group("checkers");
    g.throughput(Throughput::Elements(ops.len() as u64));
    for checker in &all {
        g.bench_function(checker.name(), |b| {
            b.iter(|| checker.check(black_box(&ops), black_box(&state)))
        });
    }
    g.bench_function("all", |b| {
        b.iter(|| checker::check_all(&all, black_box(&ops), black_box(&state)))
    });
    g.finish();
}

criterion_group!(benches, checkers);
criterion_main!(benches);
