//! Hot paths of a request and a delivery, measured without I/O:
//! `cargo bench -p reference --bench hot_paths`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reference::{
    callbacks::AllowList,
    envelope::{ApiError, Envelope, FieldError},
    idempotency::fingerprint,
    message::TaskMessage,
    model::{CreditPayload, TaskAccepted, TaskSpec, TaskStatus},
    validation::{from_json, CreateTaskRequest, UserInput},
};
use serde_json::json;

fn envelope(c: &mut Criterion) {
    let mut g = c.benchmark_group("envelope");
    let accepted = TaskAccepted {
        task_id: uuid::Uuid::now_v7(),
        status: TaskStatus::Pending,
    };
    g.bench_function("ok_task_accepted", |b| {
        b.iter(|| Envelope::ok(black_box(&accepted)).to_bytes())
    });
    let err = ApiError::validation(vec![
        FieldError::new("email", "email", "must be a valid email address"),
        FieldError::new("name", "length", "must be 2-100 characters"),
    ]);
    g.bench_function("validation_error", |b| b.iter(|| black_box(&err).body()));
    g.finish();
}

fn validation(c: &mut Criterion) {
    let mut g = c.benchmark_group("validation");
    let user = json!({"name": "Ada Lovelace", "email": "ada@example.com"});
    g.bench_function("user_valid", |b| {
        b.iter(|| {
            from_json::<UserInput>(black_box(user.clone()), "")
                .unwrap()
                .validate_input()
                .unwrap()
        })
    });
    let bad = json!({"name": "A", "email": "not-an-email"});
    g.bench_function("user_invalid", |b| {
        b.iter(|| {
            from_json::<UserInput>(black_box(bad.clone()), "")
                .unwrap()
                .validate_input()
                .unwrap_err()
        })
    });
    let allow = AllowList::parse(&["127.0.0.1".to_string()]);
    let task = json!({"type": "credit", "payload": {"account": "acc-1", "amount": 42}, "callback_url": "http://127.0.0.1:9000/cb"});
    g.bench_function("task_credit_with_callback", |b| {
        b.iter(|| {
            from_json::<CreateTaskRequest>(black_box(task.clone()), "")
                .unwrap()
                .validate_input(&allow)
                .unwrap()
        })
    });
    g.finish();
}

fn idempotency(c: &mut Criterion) {
    let mut g = c.benchmark_group("fingerprint");
    let small = json!({"type": "credit", "payload": {"account": "acc-1", "amount": 42}});
    g.throughput(Throughput::Bytes(small.to_string().len() as u64));
    g.bench_function("credit_body", |b| b.iter(|| fingerprint(black_box(&small))));
    let large = json!({"type": "echo", "payload": {"items": (0..200).map(|i| json!({"k": i, "v": "x".repeat(16)})).collect::<Vec<_>>()}});
    g.throughput(Throughput::Bytes(large.to_string().len() as u64));
    g.bench_function("echo_8k_body", |b| {
        b.iter(|| fingerprint(black_box(&large)))
    });
    g.finish();
}

fn message(c: &mut Criterion) {
    let mut g = c.benchmark_group("message");
    let m = TaskMessage {
        task_id: uuid::Uuid::now_v7(),
        spec: TaskSpec::Credit(CreditPayload {
            account: "acc-1".into(),
            amount: 42,
        }),
    };
    let bytes = m.encode();
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode", |b| b.iter(|| black_box(&m).encode()));
    g.bench_function("decode", |b| {
        b.iter(|| TaskMessage::decode(black_box(&bytes)).unwrap())
    });
    g.finish();
}

criterion_group!(hot_paths, envelope, validation, idempotency, message);
criterion_main!(hot_paths);
