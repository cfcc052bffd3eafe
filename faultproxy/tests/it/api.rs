//! The HTTP API answers as Toxiproxy's does: bodies, statuses, defaults, errors.

use serde_json::{json, Value};

use crate::support::{echo_server, Proxies};

fn error_of(body: &Value) -> (&str, u64) {
    (
        body["error"].as_str().expect("error message"),
        body["status"].as_u64().expect("status"),
    )
}

#[tokio::test]
async fn version_is_json() {
    let p = Proxies::start().await;
    let (status, body) = p.get("/version").await;
    assert_eq!(status, 200);
    assert!(body["version"].as_str().unwrap().starts_with("2."));
}

#[tokio::test]
async fn port_zero_reports_the_bound_port() {
    let p = Proxies::start().await;
    let echo = echo_server().await;
    let (info, addr) = p.proxy("zero", echo).await;
    assert_ne!(addr.port(), 0);
    let (status, body) = p.get("/proxies/zero").await;
    assert_eq!(status, 200);
    assert_eq!(body["listen"], info.listen);
    assert_eq!(body["enabled"], true);
    assert_eq!(body["toxics"], json!([]));
    tokio::net::TcpStream::connect(addr)
        .await
        .expect("listens there");
}

#[tokio::test]
async fn create_conflict_and_not_found() {
    let p = Proxies::start().await;
    let echo = echo_server().await;
    p.proxy("a", echo).await;
    let (status, body) = p
        .post(
            "/proxies",
            json!({"name": "a", "upstream": echo.to_string()}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (409, ("proxy already exists", 409))
    );
    let (status, body) = p.get("/proxies/nope").await;
    assert_eq!((status, error_of(&body)), (404, ("proxy not found", 404)));
    let (status, body) = p.delete("/proxies/nope/toxics/x").await;
    assert_eq!((status, error_of(&body)), (404, ("proxy not found", 404)));
    let (status, body) = p.get("/proxies/a/toxics/nope").await;
    assert_eq!((status, error_of(&body)), (404, ("toxic not found", 404)));
}

#[tokio::test]
async fn bad_requests_get_400_with_a_json_error() {
    let p = Proxies::start().await;
    let echo = echo_server().await;
    p.proxy("a", echo).await;
    let resp = p
        .http
        .post(p.url("/proxies"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(error_of(&body).0.starts_with("bad request body"));

    let cases = [
        (
            "/proxies",
            json!({"name": "b"}),
            "missing required field: upstream",
        ),
        (
            "/proxies",
            json!({"upstream": "x:1"}),
            "missing required field: name",
        ),
        (
            "/proxies/a/toxics",
            json!({"type": "latency", "stream": "sideways"}),
            "stream was invalid, can be either upstream or downstream",
        ),
        (
            "/proxies/a/toxics",
            json!({"type": "lag"}),
            "invalid toxic type",
        ),
        ("/proxies/a/toxics", json!({}), "invalid toxic type"),
    ];
    for (path, body, message) in cases {
        let (status, answer) = p.post(path, body.clone()).await;
        assert_eq!(
            (status, error_of(&answer)),
            (400, (message, 400)),
            "{path} {body}"
        );
    }
    for body in [
        json!({"type": "latency", "attributes": {"latency": -1}}),
        json!({"type": "latency", "attributes": {"latency": "slow"}}),
        json!({"type": "latency", "toxicity": 1.5}),
        json!([1, 2]),
    ] {
        let (status, answer) = p.post("/proxies/a/toxics", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let (status, _) = p.post("/populate", json!({"not": "an array"})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn toxics_get_toxiproxys_defaults_and_can_be_updated() {
    let p = Proxies::start().await;
    let echo = echo_server().await;
    p.proxy("a", echo).await;
    let toxic = p
        .add_toxic(
            "a",
            json!({"type": "latency", "attributes": {"latency": 50}}),
        )
        .await;
    let (_, shown) = p.get("/proxies/a/toxics/latency_downstream").await;
    assert_eq!(
        shown,
        json!({"name": "latency_downstream", "type": "latency", "stream": "downstream",
               "toxicity": 1.0, "attributes": {"latency": 50, "jitter": 0}})
    );
    assert_eq!(toxic.name, "latency_downstream");
    let (status, body) = p
        .post("/proxies/a/toxics", json!({"type": "latency"}))
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (409, ("toxic already exists", 409))
    );

    let (status, updated) = p
        .post(
            "/proxies/a/toxics/latency_downstream",
            json!({"attributes": {"jitter": 5}, "toxicity": 0.5}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(updated["attributes"], json!({"latency": 50, "jitter": 5}));
    assert_eq!(updated["toxicity"], 0.5);

    p.add_toxic(
        "a",
        json!({"name": "cut", "type": "limit_data", "stream": "UPSTREAM", "attributes": {"bytes": 9}}),
    )
    .await;
    let (_, list) = p.get("/proxies/a/toxics").await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["cut", "latency_downstream"],
        "upstream toxics first"
    );
    assert_eq!(list[0]["stream"], "upstream");

    p.remove_toxic("a", "cut").await;
    let (status, _) = p.delete("/proxies/a/toxics/cut").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn populate_creates_replaces_and_keeps_identical_proxies() {
    let p = Proxies::start().await;
    let echo = echo_server().await;
    let (status, body) = p
        .post(
            "/populate",
            json!([
                {"name": "one", "listen": "127.0.0.1:0", "upstream": echo.to_string()},
                {"name": "two", "listen": "127.0.0.1:0", "upstream": echo.to_string(), "enabled": false, "toxics": []},
            ]),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let proxies = body["proxies"].as_array().unwrap();
    assert_eq!(proxies.len(), 2);
    assert_eq!(proxies[1]["enabled"], false);
    let one_listen = proxies[0]["listen"].as_str().unwrap().to_string();

    p.add_toxic("one", json!({"type": "latency"})).await;
    let (status, body) = p
        .post(
            "/populate",
            json!([{"name": "one", "listen": one_listen, "upstream": echo.to_string()}]),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        body["proxies"][0]["toxics"].as_array().unwrap().len(),
        1,
        "kept as it was"
    );

    let (status, body) = p
        .post(
            "/populate",
            json!([{"name": "one", "listen": "127.0.0.1:0", "upstream": echo.to_string()}]),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(body["proxies"][0]["toxics"], json!([]), "replaced");

    let (status, _) = p
        .post(
            "/populate",
            json!([{"name": "three", "upstream": echo.to_string()}, {"name": "four"}]),
        )
        .await;
    assert_eq!(status, 400);
    let (_, all) = p.get("/proxies").await;
    let mut names: Vec<&String> = all.as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(names, ["one", "two"], "an invalid populate changes nothing");
}

#[tokio::test]
async fn update_moves_and_reset_restores() {
    let p = Proxies::start().await;
    let echo = echo_server().await;
    let other = echo_server().await;
    let (_, addr) = p.proxy("a", echo).await;
    let (status, body) = p
        .post("/proxies/a", json!({"upstream": other.to_string()}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["upstream"], other.to_string());
    assert_eq!(body["listen"], addr.to_string(), "keeps its port");

    p.add_toxic("a", json!({"type": "timeout"})).await;
    p.set_enabled("a", false).await;
    let (status, _) = p.post("/reset", Value::Null).await;
    assert_eq!(status, 204);
    let (_, body) = p.get("/proxies/a").await;
    assert_eq!(body["enabled"], true);
    assert_eq!(body["toxics"], json!([]));
    assert_eq!(body["listen"], addr.to_string());

    let (status, _) = p.delete("/proxies/a").await;
    assert_eq!(status, 204);
    let (_, all) = p.get("/proxies").await;
    assert_eq!(all, json!({}));
}

#[tokio::test]
async fn a_listen_address_in_use_is_an_error() {
    let p = Proxies::start().await;
    let echo = echo_server().await;
    let (_, addr) = p.proxy("a", echo).await;
    let (status, body) = p
        .post(
            "/proxies",
            json!({"name": "b", "listen": addr.to_string(), "upstream": echo.to_string()}),
        )
        .await;
    assert_eq!(status, 500, "{body}");
    assert!(body["error"].as_str().unwrap().contains("listen"));
    let (status, _) = p.get("/proxies/b").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn browsers_are_refused() {
    let p = Proxies::start().await;
    let resp = p
        .http
        .get(p.url("/proxies"))
        .header("user-agent", "Mozilla/5.0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}
