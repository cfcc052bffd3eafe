//! Every endpoint and error path of the contract, through a real HTTP server.

use std::time::Duration;

use axum::{routing::get, Router};
use reference::Mode;
use serde_json::json;

use crate::support::{Client, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_crud_validation_and_cache_invalidation() {
    let mut world = World::new("users");
    let app = world.start(Mode::Api, &[]).await;
    let c = &app.client;

    let created = c
        .post_json(
            "/api/v1/users",
            &json!({"name": "Ada", "email": "ada@example.com"}),
        )
        .await;
    let v = created.expect(201, "OK");
    let id = v["data"]["id"].as_i64().unwrap();
    assert_eq!(
        created.header("location").unwrap(),
        format!("/api/v1/users/{id}")
    );

    // The GET fills the cache; the update must invalidate it.
    assert_eq!(
        c.get(&format!("/api/v1/users/{id}"))
            .await
            .expect(200, "OK")["data"]["name"],
        "Ada"
    );
    let put = c.send(
        c.http
            .put(c.url(&format!("/api/v1/users/{id}")))
            .json(&json!({"name": "Ada L", "email": "ada@example.com"})),
    );
    assert_eq!(put.await.expect(200, "OK")["data"]["name"], "Ada L");
    assert_eq!(
        c.get(&format!("/api/v1/users/{id}"))
            .await
            .expect(200, "OK")["data"]["name"],
        "Ada L"
    );

    c.post_json(
        "/api/v1/users",
        &json!({"name": "Bob", "email": "bob@example.com"}),
    )
    .await
    .expect(201, "OK");
    let dup = c
        .post_json(
            "/api/v1/users",
            &json!({"name": "Ada2", "email": "ada@example.com"}),
        )
        .await;
    dup.expect(409, "CONFLICT_ERR");

    let page = c
        .get("/api/v1/users?page=1&per_page=1")
        .await
        .expect(200, "OK");
    assert_eq!(
        (
            page["data"]["total"].as_i64(),
            page["data"]["items"].as_array().unwrap().len()
        ),
        (Some(2), 1)
    );
    c.get("/api/v1/users?per_page=500")
        .await
        .expect(400, "VALIDATION_ERR");
    c.get("/api/v1/users?page=zero")
        .await
        .expect(400, "VALIDATION_ERR");

    let bad = c
        .post_json("/api/v1/users", &json!({"name": "A", "email": "nope"}))
        .await
        .expect(400, "VALIDATION_ERR");
    let fields: Vec<&str> = bad["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "name"]);

    c.get("/api/v1/users/abc")
        .await
        .expect(400, "VALIDATION_ERR");
    c.get("/api/v1/users/999999")
        .await
        .expect(404, "NOT_FOUND_ERR");
    let del = c
        .send(c.http.delete(c.url(&format!("/api/v1/users/{id}"))))
        .await;
    assert_eq!(del.expect(200, "OK")["data"], serde_json::Value::Null);
    c.send(c.http.delete(c.url(&format!("/api/v1/users/{id}"))))
        .await
        .expect(404, "NOT_FOUND_ERR");
    c.get(&format!("/api/v1/users/{id}"))
        .await
        .expect(404, "NOT_FOUND_ERR");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_an_envelope() {
    let mut world = World::new("errors");
    let app = world.start(Mode::Api, &["--body-limit", "1024"]).await;
    let c = &app.client;
    let tasks = c.url("/api/v1/tasks");

    c.get("/no/such/route").await.expect(404, "NOT_FOUND_ERR");
    let patch = c.send(c.http.patch(c.url("/api/v1/users"))).await;
    patch.expect(405, "METHOD_NOT_ALLOWED");
    assert!(patch.header("allow").unwrap().contains("POST"));

    let send = |req: reqwest::RequestBuilder| c.send(req.header("idempotency-key", "k"));
    send(
        c.http
            .post(&tasks)
            .header("content-type", "application/json")
            .body("{\"type\":"),
    )
    .await
    .expect(400, "VALIDATION_ERR");
    send(
        c.http
            .post(&tasks)
            .header("content-type", "text/plain")
            .body("{}"),
    )
    .await
    .expect(415, "UNSUPPORTED_MEDIA_TYPE");
    send(c.http.post(&tasks).body("{}"))
        .await
        .expect(415, "UNSUPPORTED_MEDIA_TYPE");
    let big = json!({"type": "echo", "payload": "x".repeat(4096)});
    send(c.http.post(&tasks).json(&big))
        .await
        .expect(413, "PAYLOAD_TOO_LARGE");
    let invalid_utf8 = b"{\"type\": \"echo\", \"payload\": \"\xff\xfe\"}".to_vec();
    send(
        c.http
            .post(&tasks)
            .header("content-type", "application/json")
            .body(invalid_utf8),
    )
    .await
    .expect(400, "VALIDATION_ERR");
    send(c.http.post(&tasks).json(&json!([1, 2])))
        .await
        .expect(400, "VALIDATION_ERR");

    let no_key = c
        .send(c.http.post(&tasks).json(&json!({"type": "echo"})))
        .await;
    assert_eq!(
        no_key.expect(400, "VALIDATION_ERR")["errors"][0]["field"],
        "Idempotency-Key"
    );
    let two_keys = c
        .http
        .post(&tasks)
        .header("idempotency-key", "a")
        .header("idempotency-key", "b");
    c.send(two_keys.json(&json!({"type": "echo"})))
        .await
        .expect(400, "VALIDATION_ERR");

    c.get("/api/v1/tasks/not-a-uuid")
        .await
        .expect(400, "VALIDATION_ERR");
    c.get(&format!("/api/v1/tasks/{}", uuid::Uuid::new_v4()))
        .await
        .expect(404, "NOT_FOUND_ERR");
    c.get("/api/v1/accounts/has%20space")
        .await
        .expect(400, "VALIDATION_ERR");
    c.get("/api/v1/accounts/never-credited")
        .await
        .expect(404, "NOT_FOUND_ERR");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_guard_reads_and_writes() {
    let mut world = World::new("auth");
    let app = world
        .start(
            Mode::Api,
            &["--token", "rw-secret", "--read-token", "ro-secret"],
        )
        .await;
    let c = &app.client;
    let users = c.url("/api/v1/users");
    let body = json!({"name": "Al", "email": "al@example.com"});

    let missing = c.get("/api/v1/users").await;
    missing.expect(401, "AUTH_ERR");
    assert_eq!(
        missing.header("www-authenticate").as_deref(),
        Some("Bearer")
    );
    c.send(c.http.get(&users).bearer_auth("wrong"))
        .await
        .expect(401, "AUTH_ERR");
    let dup = c
        .http
        .get(&users)
        .header("authorization", "Bearer ro-secret")
        .header("authorization", "Bearer ro-secret");
    c.send(dup).await.expect(401, "AUTH_ERR");
    c.send(c.http.get(&users).bearer_auth("ro-secret"))
        .await
        .expect(200, "OK");
    c.send(c.http.post(&users).bearer_auth("ro-secret").json(&body))
        .await
        .expect(403, "AUTH_ERR");
    c.send(c.http.post(&users).bearer_auth("rw-secret").json(&body))
        .await
        .expect(201, "OK");
    // Health, readiness and the contract stay open.
    c.get("/healthz").await.expect(200, "OK");
    assert_eq!(c.get("/api/v1/openapi.json").await.status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_in_the_envelope() {
    let mut world = World::new("ratelimit");
    let app = world
        .start(Mode::Api, &["--rate-limit", "2", "--rate-burst", "2"])
        .await;
    let mut limited = None;
    for _ in 0..20 {
        let r = app.client.get("/api/v1/users").await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("20 requests at once exceed 2 per second");
    r.expect(429, "RATE_LIMITED");
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_can_be_switched_off() {
    let mut world = World::new("nogzip");
    let app = world.start(Mode::Api, &["--compression", "off"]).await;
    let c = &app.client;
    let plain = c
        .send(
            c.http
                .get(c.url("/api/v1/openapi.json"))
                .header("accept-encoding", "gzip"),
        )
        .await;
    assert_eq!(plain.header("content-encoding"), None);
    assert!(plain.json()["paths"].is_object());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_gzip_cors_metrics_openapi_readiness() {
    let mut world = World::new("ops");
    let app = world.start(Mode::All, &[]).await;
    let c = &app.client;

    let echoed = c
        .send(
            c.http
                .get(c.url("/healthz"))
                .header("x-request-id", "trace-me-42"),
        )
        .await;
    assert_eq!(
        echoed.header("x-request-id").as_deref(),
        Some("trace-me-42")
    );
    assert!(c
        .get("/healthz")
        .await
        .header("x-request-id")
        .is_some_and(|id| id.len() >= 32));

    let gz = c
        .send(
            c.http
                .get(c.url("/api/v1/openapi.json"))
                .header("accept-encoding", "gzip"),
        )
        .await;
    assert_eq!(gz.header("content-encoding").as_deref(), Some("gzip"));

    let preflight = c
        .http
        .request(reqwest::Method::OPTIONS, c.url("/api/v1/users"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST");
    let pre = c.send(preflight).await;
    assert_eq!(
        pre.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    // Not a preflight: answered by the routes, in the envelope.
    let plain = c
        .send(
            c.http
                .request(reqwest::Method::OPTIONS, c.url("/api/v1/users")),
        )
        .await;
    plain.expect(405, "METHOD_NOT_ALLOWED");
    let nowhere = c.http.request(reqwest::Method::OPTIONS, c.url("/nowhere"));
    c.send(nowhere).await.expect(404, "NOT_FOUND_ERR");

    let ready = c.get("/readyz").await.expect(200, "OK");
    assert_eq!(
        ready["data"],
        json!({"ready": true, "store": "up", "broker": "up", "broker_required": true})
    );

    let doc = c.get("/api/v1/openapi.json").await.json();
    for path in [
        "/api/v1/users",
        "/api/v1/users/{id}",
        "/api/v1/tasks",
        "/api/v1/tasks/{id}",
        "/api/v1/accounts/{id}",
        "/readyz",
    ] {
        assert!(doc["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let list_params = doc["paths"]["/api/v1/users"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        list_params.iter().all(|p| p["in"] == "query"),
        "paging is in the query: {list_params:?}"
    );
    assert_eq!(
        doc["components"]["schemas"]["UserInput"]["required"],
        json!(["name", "email"])
    );

    c.submit_ok(&json!({"type": "echo", "payload": 1})).await;
    let text = String::from_utf8(c.get("/metrics").await.bytes.to_vec()).unwrap();
    for needle in [
        "reference_http_requests_total{method=\"POST\",route=\"/api/v1/tasks\",status=\"202\"}",
        "reference_http_request_duration_seconds_bucket",
        "reference_broker_connected",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}");
    }
    app.stop().await;
}

async fn boom() -> &'static str {
    panic!("boom")
}

/// The stack's own guards: a panicking handler and a slow one still answer in the envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_and_timeouts_become_envelopes() {
    let mut world = World::new("guards");
    let config = world.config(&["--request-timeout", "100ms"]);
    let router = Router::new()
        .route("/panic", get(boom))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/text-error",
            get(|| async { (axum::http::StatusCode::BAD_GATEWAY, "upstream sad") }),
        );
    let app = reference::http::with_common_layers(router, &config.tuning);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let c = Client::new(format!("http://{addr}"));

    let p = c.get("/panic").await.expect(500, "INTERNAL_ERR");
    assert!(
        !p.to_string().contains("boom"),
        "panic details stay in the log: {p}"
    );
    c.get("/slow").await.expect(503, "UNAVAILABLE");
    c.get("/text-error").await.expect(502, "INTERNAL_ERR");
}
