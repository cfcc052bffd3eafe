//! AMQP through the embedded fault proxy: a real lapin connection to the machine's broker
//! (`AMQP_URL`), driven with the unmodified `toxiproxy_rust` client.
//!
//! These tests only connect to the shared broker and declare their own queues (deleted at the
//! end, and set to expire when left behind); they never stop or reconfigure it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Event};
use toxiproxy_rust::client::Client;
use toxiproxy_rust::proxy::ProxyPack;

use crate::support::amqp_url;

/// Bound for broker operations that should be quick; only failures wait this long.
const PATIENCE: Duration = Duration::from_secs(20);

/// A fault proxy in front of the shared broker.
struct BrokerLink {
    server: faultproxy::Server,
    name: String,
    /// `AMQP_URL` pointing at the proxy.
    url: String,
}

impl BrokerLink {
    async fn start(name: &str) -> BrokerLink {
        let server = faultproxy::Server::start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("fault proxy starts");
        let (broker, _) = broker_address();
        let pack = ProxyPack::new(name.into(), "127.0.0.1:0".into(), broker);
        let created = toxi(server.api_addr(), move |c| c.populate(vec![pack])).await;
        let listen: SocketAddr = created[0].proxy_pack.listen.parse().expect("bound address");
        BrokerLink {
            server,
            name: name.into(),
            url: with_address(&amqp_url(), listen),
        }
    }

    /// Runs a `toxiproxy_rust` call on this link's proxy.
    async fn proxy<T, F>(&self, call: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(&toxiproxy_rust::proxy::Proxy) -> Result<T, String> + Send + 'static,
    {
        let name = self.name.clone();
        toxi(self.server.api_addr(), move |c| call(&c.find_proxy(&name)?)).await
    }
}

/// Runs a blocking `toxiproxy_rust` call off the runtime (it panics on a runtime thread).
async fn toxi<T, F>(api: SocketAddr, call: F) -> T
where
    T: Send + 'static,
    F: FnOnce(&Client) -> Result<T, String> + Send + 'static,
{
    tokio::task::spawn_blocking(move || call(&Client::new(api)))
        .await
        .expect("toxiproxy client call")
        .expect("fault proxy accepts the call")
}

/// The broker's `host:port` and the parsed `AMQP_URL`.
fn broker_address() -> (String, url::Url) {
    let url = url::Url::parse(&amqp_url()).expect("AMQP_URL parses");
    let host = url.host_str().expect("AMQP_URL names a host").to_string();
    (format!("{host}:{}", url.port().unwrap_or(5672)), url)
}

/// `url` with its host and port replaced by `addr`'s.
fn with_address(url: &str, addr: SocketAddr) -> String {
    let mut url = url::Url::parse(url).expect("AMQP URL parses");
    url.set_host(Some(&addr.ip().to_string())).expect("host");
    url.set_port(Some(addr.port())).expect("port");
    url.to_string()
}

async fn connect(url: &str) -> Connection {
    tokio::time::timeout(
        PATIENCE,
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .expect("AMQP connect within patience")
    .expect("AMQP connect")
}

async fn confirm_channel(conn: &Connection) -> Channel {
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    ch
}

/// Declares a uniquely named queue that the broker drops by itself if a failed test leaves it.
async fn declare_queue(ch: &Channel, test: &str) -> String {
    let name = format!("it-proxy-{test}-{}", uuid::Uuid::new_v4().simple());
    let mut args = FieldTable::default();
    args.insert("x-expires".into(), AMQPValue::LongUInt(10 * 60 * 1000));
    ch.queue_declare(name.as_str().into(), QueueDeclareOptions::default(), args)
        .await
        .expect("queue.declare");
    name
}

async fn delete_queue(ch: &Channel, queue: &str) {
    ch.queue_delete(queue.into(), Default::default())
        .await
        .expect("queue.delete");
}

/// Publishes `bodies` to `queue` with at most `in_flight` unconfirmed; panics unless every
/// message is acked.
async fn publish_confirmed(
    ch: &Channel,
    queue: &str,
    bodies: impl IntoIterator<Item = Vec<u8>>,
    in_flight: usize,
) {
    let mut window = VecDeque::with_capacity(in_flight);
    for body in bodies {
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default(),
            )
            .await
            .expect("basic.publish");
        window.push_back(confirm);
        if window.len() >= in_flight {
            await_ack(window.pop_front().expect("window not empty")).await;
        }
    }
    for confirm in window {
        await_ack(confirm).await;
    }
}

async fn await_ack(confirm: lapin::PublisherConfirm) {
    let confirmation = tokio::time::timeout(PATIENCE, confirm)
        .await
        .expect("confirm within patience")
        .expect("confirm");
    assert!(confirmation.is_ack(), "broker nacked a message");
}

/// Takes every message of `queue`, in order.
async fn drain(ch: &Channel, queue: &str) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        bodies.push(m.delivery.data);
    }
    bodies
}

/// One publish and its confirm, timed.
async fn confirm_time(ch: &Channel, queue: &str) -> Duration {
    let start = Instant::now();
    publish_confirmed(ch, queue, [b"ping".to_vec()], 1).await;
    start.elapsed()
}

async fn median_confirm_time(ch: &Channel, queue: &str, n: usize) -> Duration {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        times.push(confirm_time(ch, queue).await);
    }
    times.sort();
    times[n / 2]
}

/// Message `i`: its number, then bytes derived from it, `len` in all.
fn message(i: u32, len: usize) -> Vec<u8> {
    let mut body = format!("{i:08}:").into_bytes();
    body.extend((0..len.saturating_sub(body.len())).map(|k| (i as usize * 31 + k) as u8));
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_with_confirms_through_the_proxy() {
    let link = BrokerLink::start("amqp-basic").await;
    let conn = connect(&link.url).await;
    let ch = confirm_channel(&conn).await;
    let queue = declare_queue(&ch, "basic").await;
    let sent: Vec<Vec<u8>> = (0..200).map(|i| message(i, 200)).collect();
    publish_confirmed(&ch, &queue, sent.clone(), 20).await;
    assert_eq!(
        drain(&ch, &queue).await,
        sent,
        "every message, intact and in order"
    );
    delete_queue(&ch, &queue).await;
    conn.close(200, "done".into()).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_added_after_connecting_slows_confirms() {
    let link = BrokerLink::start("amqp-latency").await;
    let conn = connect(&link.url).await;
    let ch = confirm_channel(&conn).await;
    let queue = declare_queue(&ch, "latency").await;
    let base = median_confirm_time(&ch, &queue, 7).await;

    link.proxy(|p| {
        p.with_latency("downstream".into(), 100, 0, 1.0);
        Ok(())
    })
    .await;
    let slowed = median_confirm_time(&ch, &queue, 7).await;
    println!("confirm: {base:?} without toxic, {slowed:?} with 100 ms latency added to the open connection");
    assert!(
        slowed >= base + Duration::from_millis(90),
        "the open connection did not get the latency: {base:?} then {slowed:?}"
    );

    link.proxy(|p| p.delete_all_toxics()).await;
    let after = median_confirm_time(&ch, &queue, 7).await;
    assert!(
        after < Duration::from_millis(60),
        "confirm took {after:?} once the toxic went"
    );
    delete_queue(&ch, &queue).await;
    conn.close(200, "done".into()).await.expect("close");
}

/// Latency (both ways, with jitter) and short holds come and go until `stop`; counts the
/// changes in `changes`.
async fn toggle_toxics(link: Arc<BrokerLink>, stop: Arc<AtomicBool>, changes: Arc<AtomicUsize>) {
    let mut round = 0u32;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let hold = round % 5 == 0;
        link.proxy(move |p| {
            if hold {
                // A short blackhole: the connection must survive it with every byte.
                p.with_timeout("upstream".into(), 0, 1.0);
            } else {
                p.with_latency("downstream".into(), 5 + round % 20, 5, 1.0);
                p.with_latency("upstream".into(), round % 7, 2, 1.0);
            }
            Ok(())
        })
        .await;
        changes.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(if hold { 150 } else { 30 })).await;
        link.proxy(|p| p.delete_all_toxics()).await;
        changes.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_message_is_lost_or_corrupted_while_toxics_toggle() {
    const AT_LEAST: u32 = 3000;
    const MIN_CHANGES: usize = 30;
    let link = Arc::new(BrokerLink::start("amqp-churn").await);
    let conn = connect(&link.url).await;
    let ch = confirm_channel(&conn).await;
    let queue = declare_queue(&ch, "churn").await;

    let stop = Arc::new(AtomicBool::new(false));
    let changes = Arc::new(AtomicUsize::new(0));
    let toggler = tokio::spawn(toggle_toxics(link.clone(), stop.clone(), changes.clone()));
    // Batches until both enough messages and enough toxic changes happened.
    let mut sent: Vec<Vec<u8>> = Vec::new();
    while sent.len() < AT_LEAST as usize || changes.load(Ordering::Relaxed) < MIN_CHANGES {
        assert!(sent.len() < 200_000, "the toxics stopped changing");
        let first = sent.len() as u32;
        let batch: Vec<Vec<u8>> = (first..first + 100).map(|i| message(i, 200)).collect();
        publish_confirmed(&ch, &queue, batch.clone(), 50).await;
        sent.extend(batch);
    }
    stop.store(true, Ordering::Relaxed);
    toggler.await.expect("toggler");

    let direct = connect(&amqp_url()).await;
    let reader = direct.create_channel().await.expect("channel");
    let got = drain(&reader, &queue).await;
    println!(
        "{} confirmed publishes through {} toxic changes, {} consumed back",
        sent.len(),
        changes.load(Ordering::Relaxed),
        got.len()
    );
    assert_eq!(got.len(), sent.len(), "messages lost or duplicated");
    if let Some(i) = got.iter().zip(&sent).position(|(a, b)| a != b) {
        panic!("message {i} corrupted or out of order");
    }
    delete_queue(&reader, &queue).await;
    conn.close(200, "done".into()).await.expect("close");
    direct.close(200, "done".into()).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_proxy_makes_lapin_report_a_connection_error() {
    let link = BrokerLink::start("amqp-down").await;
    let conn = connect(&link.url).await;
    let ch = confirm_channel(&conn).await;
    let mut events = Box::pin(conn.events_listener());

    link.proxy(|p| p.disable()).await;
    let error = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = events.next().await {
            if let Event::Error(e) = event {
                return Some(e);
            }
        }
        None
    })
    .await
    .expect("lapin reports the cut within patience");
    println!("lapin reported: {error:?}");
    assert!(error.is_some(), "lapin reports an error");
    assert!(!conn.status().connected());
    let publish = ch
        .basic_publish(
            "".into(),
            "nowhere".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await;
    assert!(publish.is_err(), "publishing on the cut connection fails");

    link.proxy(|p| p.enable()).await;
    let again = connect(&link.url).await;
    again.close(200, "done".into()).await.expect("close");
}

/// Confirmed publishes per second: `count` messages of `size` bytes, `in_flight` unconfirmed.
async fn publish_rate(url: &str, count: u32, size: usize, in_flight: usize) -> f64 {
    let conn = connect(url).await;
    let ch = confirm_channel(&conn).await;
    let queue = declare_queue(&ch, "rate").await;
    let bodies: Vec<Vec<u8>> = (0..count).map(|i| message(i, size)).collect();
    let start = Instant::now();
    publish_confirmed(&ch, &queue, bodies, in_flight).await;
    let rate = f64::from(count) / start.elapsed().as_secs_f64();
    delete_queue(&ch, &queue).await;
    conn.close(200, "done".into()).await.expect("close");
    rate
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// `cargo test -p harness --test it measure_amqp -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run it on purpose"]
async fn measure_amqp_throughput_cost() {
    const COUNT: u32 = 5000;
    const SIZE: usize = 200;
    const IN_FLIGHT: usize = 100;
    let link = BrokerLink::start("amqp-measure").await;
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    for run in 1..=3 {
        let d = publish_rate(&amqp_url(), COUNT, SIZE, IN_FLIGHT).await;
        let p = publish_rate(&link.url, COUNT, SIZE, IN_FLIGHT).await;
        println!("run {run}: direct {d:.0} msg/s, through the proxy {p:.0} msg/s");
        direct.push(d);
        proxied.push(p);
    }
    let (d, p) = (median(direct), median(proxied));
    println!(
        "confirmed publishes ({COUNT} x {SIZE} B, {IN_FLIGHT} in flight), median of 3: \
         direct {d:.0} msg/s, through the proxy {p:.0} msg/s, ratio {:.3}",
        p / d
    );
}
