//! The contract is exact: requests the OpenAPI document calls valid are accepted, and every
//! answer, to valid and mangled requests alike, is a status the document lists for the
//! operation, with a body matching its schema. Run against the reference, or against any
//! system by URL (`CONTRACT_TARGET_URL`, with its read-write token in `CONTRACT_TOKEN`).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use harness::{
    conformance::{Conformance, Contract},
    history::History,
    nemesis::Fault,
    sut::{Store, SutConfig},
};
use proptest::{prelude::*, test_runner::TestCaseError};
use scenarios::{
    config,
    contract::{operations, valid_request, ValidRequest},
    world::{fast_retries, World},
};
use serde_json::{json, Value};

use crate::{
    bad_input::{self, READ_ONLY, READ_WRITE},
    support::{assert_found, assert_held, run_property},
};

/// Statuses a request the document calls valid may get, besides 2xx: for reasons the
/// document lists (unknown ids, conflicts, a reused key or a refused callback host, a rate
/// limit). Never 400, never an authentication failure with the right token, never 5xx.
const ACCEPTABLE: [u16; 4] = [404, 409, 422, 429];

/// Ids that exist, per path template, so that some requests find what they name.
async fn existing_ids(base: &str, token: Option<&str>) -> BTreeMap<String, Vec<String>> {
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let mut req = http
            .post(format!("{base}{path}"))
            .header(contract::IDEMPOTENCY_KEY, uuid::Uuid::new_v4().to_string())
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req
    };
    let mut users = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let res: Value = post("/api/v1/users", user(&fresh_email("existing")))
            .send()
            .await
            .expect("user")
            .json()
            .await
            .expect("JSON");
        users.push(res["data"]["id"].to_string());
        let res: Value = post(
            "/api/v1/tasks",
            json!({"type": "credit", "payload": {"account": "contract-acc", "amount": 1}}),
        )
        .send()
        .await
        .expect("task")
        .json()
        .await
        .expect("JSON");
        tasks.push(
            res["data"]["task_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    BTreeMap::from([
        ("/api/v1/users/{id}".to_string(), users),
        ("/api/v1/tasks/{id}".to_string(), tasks),
        (
            "/api/v1/accounts/{id}".to_string(),
            vec!["contract-acc".to_string()],
        ),
    ])
}

/// Valid requests to every operation of `doc`.
fn valid_requests(
    doc: Arc<Value>,
    ids: &BTreeMap<String, Vec<String>>,
) -> BoxedStrategy<ValidRequest> {
    let each = each_operation(doc, ids);
    prop::sample::select((0..each.len()).collect::<Vec<_>>())
        .prop_flat_map(move |i| each[i].clone())
        .boxed()
}

/// Valid requests to each operation of `doc`, one strategy per operation.
fn each_operation(
    doc: Arc<Value>,
    ids: &BTreeMap<String, Vec<String>>,
) -> Vec<BoxedStrategy<ValidRequest>> {
    operations(&doc)
        .into_iter()
        .map(|op| {
            let known = ids.get(&op.template).cloned().unwrap_or_default();
            valid_request(doc.clone(), op, known)
        })
        .collect()
}

/// Sends `r` with `token` (and any extra headers); status and body.
async fn send(
    http: &reqwest::Client,
    base: &str,
    r: &ValidRequest,
    token: Option<&str>,
) -> Result<(u16, Vec<u8>), String> {
    let method = reqwest::Method::from_bytes(r.method.as_bytes()).expect("method");
    let mut req = http.request(method, format!("{base}{}", r.path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (name, value) in &r.headers {
        req = req.header(name.as_str(), value.as_str());
    }
    if let Some(body) = &r.body {
        req = req.json(body);
    }
    let res = req.send().await.map_err(|e| format!("no answer: {e}"))?;
    let status = res.status().as_u16();
    Ok((
        status,
        res.bytes().await.map_err(|e| e.to_string())?.to_vec(),
    ))
}

fn path_of(r: &ValidRequest) -> &str {
    r.path.split('?').next().unwrap_or_default()
}

/// Holds one answer to a valid request: accepted (or refused for a documented reason), and as
/// the document says.
fn judge_valid(
    conformance: &Conformance,
    r: &ValidRequest,
    status: u16,
    body: &[u8],
) -> Result<(), TestCaseError> {
    if let Some(d) = conformance.record(&r.method, path_of(r), status, body) {
        return Err(TestCaseError::fail(format!(
            "disagrees with the contract: {d:?}"
        )));
    }
    prop_assert!(
        (200..300).contains(&status) || ACCEPTABLE.contains(&status),
        "a valid request was refused with {status}: {r:?} → {}",
        String::from_utf8_lossy(body)
    );
    Ok(())
}

/// The system under test: `CONTRACT_TARGET_URL`, or the reference with tokens.
struct Target {
    base: String,
    token: Option<String>,
    world: Option<World>,
}

/// How the system is reached.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reach {
    /// `CONTRACT_TARGET_URL` when set, else the reference.
    Direct,
    /// Through a front that refuses credits above 1,000 with 400: a constraint tightened in
    /// the server that its document does not state.
    Tightened,
}

async fn target(reach: Reach) -> Target {
    if reach == Reach::Direct {
        if let Ok(base) = std::env::var("CONTRACT_TARGET_URL") {
            return Target {
                base: base.trim_end_matches('/').to_string(),
                token: std::env::var("CONTRACT_TOKEN").ok(),
                world: None,
            };
        }
    }
    let args = ["--token", READ_WRITE, "--read-token", READ_ONLY];
    let world = World::start(&args, 1, false).await;
    let reference = world.client.base().to_string();
    let base = match reach {
        Reach::Direct => reference,
        Reach::Tightened => tightened::front(reference).await,
    };
    Target {
        base,
        token: Some(READ_WRITE.to_string()),
        world: Some(world),
    }
}

/// A front for the reference that enforces one constraint more than the document states.
mod tightened {
    use axum::{
        body::{to_bytes, Body},
        extract::Request,
        http::StatusCode,
        response::{IntoResponse, Response},
        Json, Router,
    };
    use serde_json::{json, Value};

    /// Starts the front; its base URL.
    pub async fn front(upstream: String) -> String {
        let http = reqwest::Client::new();
        let app = Router::new()
            .fallback(move |req: Request| forward(http.clone(), upstream.clone(), req));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    async fn forward(http: reqwest::Client, upstream: String, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let bytes = to_bytes(body, 1 << 20).await.unwrap_or_default();
        let credit_above_1000 = parts.uri.path() == "/api/v1/tasks"
            && serde_json::from_slice::<Value>(&bytes)
                .is_ok_and(|v| v["payload"]["amount"].as_i64().is_some_and(|a| a > 1000));
        if credit_above_1000 {
            let refusal = json!({"code": "VALIDATION_ERR", "message": "amount too large",
                "data": null, "errors": [{"field": "payload.amount", "rule": "range",
                "message": "must be at most 1000"}]});
            return (StatusCode::BAD_REQUEST, Json(refusal)).into_response();
        }
        let url = format!(
            "{upstream}{}",
            parts.uri.path_and_query().map_or("", |p| p.as_str())
        );
        let mut out = http.request(parts.method, url).body(bytes);
        for (name, value) in &parts.headers {
            if name != "host" && name != "content-length" {
                out = out.header(name, value);
            }
        }
        match out.send().await {
            Ok(res) => {
                let status = res.status();
                let headers = res.headers().clone();
                let body = res.bytes().await.unwrap_or_default();
                let mut answer = Response::new(Body::from(body));
                *answer.status_mut() = status;
                *answer.headers_mut() = headers;
                answer
            }
            Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        }
    }
}

fn run_schema_valid(
    doc: Value,
    cases: u32,
    reach: Reach,
) -> (
    Result<(), proptest::test_runner::TestError<ValidRequest>>,
    scenarios::report::PropertyRun,
) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let t = rt.block_on(target(reach));
    let conformance = Conformance::new(Contract::new(&doc).expect("the document compiles"));
    let ids = rt.block_on(existing_ids(&t.base, t.token.as_deref()));
    let http = reqwest::Client::new();
    let strategy = valid_requests(Arc::new(doc), &ids);
    let result = run_property(
        "schema-valid-requests",
        config::holds("schema-valid-requests", cases),
        &strategy,
        |r| {
            let (status, body) = rt
                .block_on(send(&http, &t.base, &r, t.token.as_deref()))
                .map_err(TestCaseError::fail)?;
            judge_valid(&conformance, &r, status, &body)?;
            Ok(vec![conformance.since_last()])
        },
    );
    if let Some(world) = t.world {
        rt.block_on(world.stop());
    }
    result
}

/// Requests generated from the document's own schemas (parameters, headers, bodies, each
/// `type` of task) with the read-write token are accepted, or refused only for a reason the
/// document gives (404, 409, 422, 429), never 400 and never 5xx; each answer matches its
/// status's schema.
#[test]
fn schema_valid_requests_are_accepted() {
    let (outcome, run) = run_schema_valid(contract::openapi::document(), 200, Reach::Direct);
    let report = run.holds(&outcome);
    assert_held(outcome, &report);
}

/// A planted mismatch: a server that refuses what its document allows (credits above 1,000,
/// with 400). The same property must find it.
#[test]
fn a_constraint_tightened_in_the_server_is_found() {
    let (outcome, _) = run_schema_valid(contract::openapi::document(), 200, Reach::Tightened);
    assert_found("a constraint tightened in the server", outcome);
}

/// A planted mismatch: a document that no longer lists `404` for `GET /api/v1/users/{id}`
/// (as if the server had started returning a status its document omits). The same property
/// must find it.
#[test]
fn a_status_missing_from_the_document_is_found() {
    let mut doc = contract::openapi::document();
    let responses = doc["paths"]["/api/v1/users/{id}"]["get"]["responses"]
        .as_object_mut()
        .expect("responses");
    responses.remove("404").expect("404 is documented");
    let (outcome, _) = run_schema_valid(doc, 200, Reach::Direct);
    assert_found("a status missing from the document", outcome);
}

/// Which deployment a coverage case needs.
#[derive(Debug, Clone)]
enum Case {
    /// A valid request with these credentials, to the main deployment.
    Valid(ValidRequest, Credentials),
    /// A mangled request (the bad-input property's), to the main deployment.
    Mangled(bad_input::Request),
    /// Three requests at once to a deployment limited to one a second: 429s.
    Burst(ValidRequest),
    /// Two submissions with one key at once, to a deployment that publishes in the request
    /// over a slowed broker link: the second finds the first in flight (409).
    InFlight(ValidRequest),
    /// A request to each operation at once, to a deployment whose store is cut off: 503s.
    /// All at once because one operation drawn per case left an operation's 503 unseen in
    /// about one run in a hundred.
    StoreDown(Vec<ValidRequest>),
    Ops(&'static str),
    /// A user made, read, given a new email and deleted: the 200s of the operations on one
    /// user, which the generated requests reach only while the few users made up front last.
    UserLifecycle,
    /// A user made, then another request with the same email: POST or PUT, 409.
    EmailTaken {
        put: bool,
    },
    /// A list with a query the document does not allow: 400.
    BadQuery(&'static str),
    /// A body over the limit to each operation that takes one: 413.
    Oversized(ValidRequest),
}

#[derive(Debug, Clone, Copy)]
enum Credentials {
    ReadWrite,
    ReadOnly,
    None,
}

/// The four deployments of the coverage run.
struct Deployments {
    main: World,
    limited: World,
    confirm: World,
    store_down: World,
}

async fn deployments() -> Deployments {
    let tokens = ["--token", READ_WRITE, "--read-token", READ_ONLY];
    let with = |extra: &[&str]| -> Vec<String> {
        tokens.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let body_limit = bad_input::BODY_LIMIT.to_string();
    let main = World::start(
        &with(&["--body-limit", &body_limit])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        1,
        false,
    )
    .await;
    let limited = World::start(
        &with(&["--rate-limit", "1", "--rate-burst", "1"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        0,
        false,
    )
    .await;
    let confirm = World::start(
        &with(&["--publish", "confirm"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        0,
        false,
    )
    .await;
    let slow = Fault::Latency {
        link: "api-broker".into(),
        ms: 300,
        jitter_ms: 0,
        stream: Default::default(),
    };
    confirm
        .nemesis(&History::new())
        .start(&slow)
        .await
        .expect("the broker link slows");
    let store_down = World::start_config(SutConfig {
        workers: 0,
        args: with(&["--request-timeout", "1s"]),
        retry_delays: fast_retries(),
        store: Store::Mysql,
        ..SutConfig::default()
    })
    .await;
    store_down
        .nemesis(&History::new())
        .start(&Fault::LinkDown {
            link: "api-store".into(),
        })
        .await
        .expect("the store link goes down");
    Deployments {
        main,
        limited,
        confirm,
        store_down,
    }
}

fn cases(
    doc: Arc<Value>,
    ids: &BTreeMap<String, Vec<String>>,
    routes: Arc<Vec<bad_input::Route>>,
) -> BoxedStrategy<Case> {
    let valid = valid_requests(doc.clone(), ids);
    let submissions = {
        let op = operations(&doc)
            .into_iter()
            .find(|o| o.method == "POST" && o.template == "/api/v1/tasks")
            .expect("task submission");
        valid_request(doc.clone(), op, Vec::new())
    };
    let with_body = {
        let body_ops: Vec<BoxedStrategy<ValidRequest>> = operations(&doc)
            .into_iter()
            .filter(|o| o.body.is_some())
            .map(|op| {
                let known = ids.get(&op.template).cloned().unwrap_or_default();
                valid_request(doc.clone(), op, known)
            })
            .collect();
        prop::sample::select((0..body_ops.len()).collect::<Vec<_>>())
            .prop_flat_map(move |i| body_ops[i].clone())
    };
    let credentials = prop_oneof![
        6 => Just(Credentials::ReadWrite),
        1 => Just(Credentials::ReadOnly),
        1 => Just(Credentials::None),
    ];
    prop_oneof![
        50 => (valid.clone(), credentials).prop_map(|(r, c)| Case::Valid(r, c)),
        40 => bad_input::request(routes).prop_map(Case::Mangled),
        2 => valid.clone().prop_map(Case::Burst),
        1 => submissions.prop_map(Case::InFlight),
        1 => each_operation(doc, ids).prop_map(Case::StoreDown),
        1 => prop::sample::select(vec!["/healthz", "/readyz"]).prop_map(Case::Ops),
        1 => any::<bool>().prop_map(|put| Case::EmailTaken { put }),
        1 => Just(Case::UserLifecycle),
        1 => prop::sample::select(vec!["per_page=0", "page=0", "per_page=abc", "page=1&bogus=2"])
            .prop_map(Case::BadQuery),
        1 => with_body.prop_map(Case::Oversized),
    ]
    .boxed()
}

fn token(c: Credentials) -> Option<&'static str> {
    match c {
        Credentials::ReadWrite => Some(READ_WRITE),
        Credentials::ReadOnly => Some(READ_ONLY),
        Credentials::None => None,
    }
}

/// One case: its requests, each answer recorded; the statuses it got.
async fn play(d: &Deployments, http: &reqwest::Client, case: &Case) -> Result<Vec<Answer>, String> {
    let base = |w: &World| w.client.base().to_string();
    let answered =
        |r: &ValidRequest, (s, b): (u16, Vec<u8>)| (r.method.clone(), path_of(r).to_string(), s, b);
    Ok(match case {
        Case::Valid(r, c) => vec![answered(r, send(http, &base(&d.main), r, token(*c)).await?)],
        Case::Mangled(r) => {
            let (s, b) = bad_input::send(http, &base(&d.main), r).await?;
            vec![(
                r.method.clone(),
                bad_input::normalized(&base(&d.main), r),
                s,
                b,
            )]
        }
        Case::Burst(r) => {
            let b = base(&d.limited);
            let all =
                futures_util::future::join_all((0..3).map(|_| send(http, &b, r, Some(READ_WRITE))))
                    .await;
            all.into_iter()
                .map(|a| a.map(|x| answered(r, x)))
                .collect::<Result<_, _>>()?
        }
        Case::InFlight(r) => {
            let b = base(&d.confirm);
            let (first, second) = tokio::join!(send(http, &b, r, Some(READ_WRITE)), async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                send(http, &b, r, Some(READ_WRITE)).await
            });
            vec![answered(r, first?), answered(r, second?)]
        }
        Case::StoreDown(each) => {
            let b = base(&d.store_down);
            let all = futures_util::future::join_all(
                each.iter().map(|r| send(http, &b, r, Some(READ_WRITE))),
            )
            .await;
            each.iter()
                .zip(all)
                .map(|(r, a)| a.map(|x| answered(r, x)))
                .collect::<Result<_, _>>()?
        }
        Case::EmailTaken { put } => email_taken(http, &base(&d.main), *put).await?,
        Case::UserLifecycle => user_lifecycle(http, &base(&d.main)).await?,
        Case::BadQuery(query) => {
            let r = ValidRequest {
                method: "GET".into(),
                path: format!("/api/v1/users?{query}"),
                template: "/api/v1/users".into(),
                headers: Vec::new(),
                body: None,
                writes: false,
            };
            vec![answered(
                &r,
                send(http, &base(&d.main), &r, Some(READ_WRITE)).await?,
            )]
        }
        Case::Oversized(r) => {
            let mut big = r.clone();
            big.body = Some(json!({"padding": "x".repeat(bad_input::BODY_LIMIT)}));
            vec![answered(
                &big,
                send(http, &base(&d.main), &big, Some(READ_WRITE)).await?,
            )]
        }
        Case::Ops(path) => {
            let mut out = Vec::new();
            for w in [&d.main, &d.store_down] {
                let req = http.get(format!("{}{path}", base(w)));
                out.push(exchange("GET", path.to_string(), req).await?);
            }
            out
        }
    })
}

/// One answer as the coverage run records it: method, path, status, body.
type Answer = (String, String, u16, Vec<u8>);

/// Sends `req`, made for `method` and `path`; its answer.
async fn exchange(
    method: &str,
    path: String,
    req: reqwest::RequestBuilder,
) -> Result<Answer, String> {
    let res = req.send().await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let bytes = res.bytes().await.map_err(|e| e.to_string())?.to_vec();
    Ok((method.to_string(), path, status, bytes))
}

fn fresh_email(prefix: &str) -> String {
    format!("{prefix}-{}@contract.test", uuid::Uuid::new_v4().simple())
}

fn user(email: &str) -> Value {
    json!({"name": "Contract", "email": email})
}

/// Makes a user with `email`: the answer, and the path of the user it made. An answer that
/// is no JSON is recorded all the same, for the contract to judge.
async fn make_user(
    http: &reqwest::Client,
    base: &str,
    email: &str,
) -> Result<(Answer, String), String> {
    let req = http
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(READ_WRITE)
        .json(&user(email));
    let made = exchange("POST", "/api/v1/users".into(), req).await?;
    let id = serde_json::from_slice::<Value>(&made.3).unwrap_or_default()["data"]["id"].clone();
    Ok((made, format!("/api/v1/users/{id}")))
}

/// A user is made; then a second POST with its email, or a PUT giving another user that email.
async fn email_taken(http: &reqwest::Client, base: &str, put: bool) -> Result<Vec<Answer>, String> {
    let email = fresh_email("taken");
    let (first, _) = make_user(http, base, &email).await?;
    let (second, other) = make_user(http, base, &fresh_email("other")).await?;
    let again = if put {
        let req = http
            .put(format!("{base}{other}"))
            .bearer_auth(READ_WRITE)
            .json(&user(&email));
        exchange("PUT", other, req).await?
    } else {
        make_user(http, base, &email).await?.0
    };
    Ok(vec![first, second, again])
}

/// A user is made, read, given a new email and deleted.
async fn user_lifecycle(http: &reqwest::Client, base: &str) -> Result<Vec<Answer>, String> {
    let (made, path) = make_user(http, base, &fresh_email("life")).await?;
    let url = format!("{base}{path}");
    let read = exchange("GET", path.clone(), http.get(&url).bearer_auth(READ_WRITE)).await?;
    let renamed = http
        .put(&url)
        .bearer_auth(READ_WRITE)
        .json(&user(&fresh_email("renamed")));
    let renamed = exchange("PUT", path.clone(), renamed).await?;
    let deleted = exchange("DELETE", path, http.delete(&url).bearer_auth(READ_WRITE)).await?;
    Ok(vec![made, read, renamed, deleted])
}

/// Whether a status is one this case's deployment may give beyond what the document allows:
/// 5xx only where the store is cut off.
fn unexpected_5xx(case: &Case, status: u16) -> bool {
    status >= 500 && !matches!(case, Case::StoreDown(_) | Case::Ops(_))
}

/// At least 5,000 requests, valid and mangled, to four deployments (tokens; a rate limit; a
/// publish in the request over a slowed broker link; a store cut off): every answer is one the
/// document lists for its operation, with a matching body, and every documented status of
/// every operation is seen at least once (`default`, unexpected errors, excepted). The run
/// directory's verdict says how often each was seen.
#[test]
fn every_documented_status_is_seen_and_no_answer_disagrees() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let d = rt.block_on(deployments());
    let doc = Arc::new(contract::openapi::document());
    let conformance = Conformance::of_this_contract();
    let ids = rt.block_on(existing_ids(d.main.client.base(), Some(READ_WRITE)));
    let routes = Arc::new(bad_input::routes(&doc));
    let http = reqwest::Client::new();
    let (outcome, run) = run_property(
        "contract-coverage",
        config::holds("contract-coverage", 5000),
        &cases(doc, &ids, routes),
        |case| {
            let answers = rt
                .block_on(play(&d, &http, &case))
                .map_err(TestCaseError::fail)?;
            for (method, path, status, body) in &answers {
                if let Some(dis) = conformance.record(method, path, *status, body) {
                    return Err(TestCaseError::fail(format!(
                        "disagrees with the contract: {dis:?}"
                    )));
                }
                prop_assert!(
                    !unexpected_5xx(&case, *status),
                    "{case:?} answered {status}"
                );
            }
            Ok(Vec::new())
        },
    );
    let uncovered = conformance.uncovered();
    let mut verdict = conformance.verdict();
    for (op, status) in &uncovered {
        verdict.anomaly(
            "status_not_seen",
            json!({"operation": op, "status": status}),
        );
    }
    if !uncovered.is_empty() {
        // The failure message is all CI keeps of a run: it names what was missed.
        let never: Vec<String> = uncovered
            .iter()
            .map(|(op, s)| format!("{op} {s}"))
            .collect();
        let summary = format!("{}; never seen: {}", verdict.summary, never.join(", "));
        verdict.summary(summary);
    }
    eprintln!("contract coverage: {}", verdict.summary);
    let report = run.holds_with(&outcome, vec![verdict]);
    for w in [d.main, d.limited, d.confirm, d.store_down] {
        rt.block_on(w.stop());
    }
    assert_held(outcome, &report);
    assert!(
        uncovered.is_empty(),
        "documented statuses never seen: {uncovered:?}"
    );
}
