//! The Polygon simulator's tape: the REST history (`/v3/trades/{ticker}`) serves exactly the
//! trades the WebSocket streamed or would have, with Polygon's paging and refusals.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use provider_sim::Sim;
use provider_sim::polygon::{PolygonConfig, PolygonHandle};
use provider_sim::tape::Tape;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "history-key";

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap()
}

async fn start(cfg: PolygonConfig, tape: Tape) -> (PolygonHandle, Sim) {
    let polygon = PolygonHandle::new(cfg);
    polygon.tape(tape);
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), polygon.router()).await.unwrap();
    (polygon, sim)
}

fn cfg() -> PolygonConfig {
    PolygonConfig { api_key: KEY.into(), ..PolygonConfig::default() }
}

async fn get(url: &str) -> (u16, Value) {
    let r = reqwest::Client::new().get(url).bearer_auth(KEY).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Every page from `url` on, following `next_url`: the sequence numbers in order.
async fn all_pages(mut url: String) -> (Vec<u64>, usize) {
    let mut seqs = Vec::new();
    let mut pages = 0;
    loop {
        let (status, body) = get(&url).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("OK")), "{body}");
        pages += 1;
        seqs.extend(body["results"].as_array().into_iter().flatten().map(|t| t["sequence_number"].as_u64().unwrap()));
        match body["next_url"].as_str() {
            Some(next) => {
                assert!(
                    next.contains("cursor=") && !next.contains("timestamp"),
                    "the cursor carries the filters: {next}"
                );
                url = next.to_string();
            }
            None => return (seqs, pages),
        }
    }
}

#[tokio::test]
async fn history_pages_through_a_window_exactly_once_in_both_orders() {
    // 1000 trades/s of each symbol, started 2 s ago: trade n of AAPL at start + n ms.
    let start_ns = now_ns() - 2_000_000_000;
    let (_p, sim) = start(cfg(), Tape::new(vec!["AAPL".into(), "MSFT".into()], start_ns, 1000, 0)).await;
    let at = |n: i64| start_ns + n * 1_000_000;
    let base = format!("{}/v3/trades/AAPL", sim.http_url());

    let (asc, pages) =
        all_pages(format!("{base}?timestamp.gte={}&timestamp.lt={}&order=asc&limit=70", at(100), at(400))).await;
    assert_eq!(asc, (100..400).collect::<Vec<u64>>(), "every trade of the window once, ascending");
    assert_eq!(pages, 5, "300 trades in pages of 70");

    let (desc, _) = all_pages(format!("{base}?timestamp.gt={}&timestamp.lte={}&limit=128", at(100), at(400))).await;
    assert_eq!(desc, (101..=400).rev().collect::<Vec<u64>>(), "default order is desc");

    // The fields, as Polygon's: string ids that are not the sequence number, ns timestamps.
    let (_, body) = get(&format!("{base}?timestamp={}", at(250))).await;
    let t = &body["results"][0];
    assert_eq!((t["sequence_number"].as_u64(), t["sip_timestamp"].as_i64()), (Some(250), Some(at(250))));
    assert!(t["id"].is_string() && t["id"] != "250", "{t}");
    assert!(t["participant_timestamp"].as_i64().unwrap() < at(250));
    for f in ["exchange", "price", "size", "conditions", "tape"] {
        assert!(!t[f].is_null(), "{f}: {t}");
    }
    // Nothing in the window, an unknown ticker, the future: status OK and no `results` at all.
    for url in [
        format!("{base}?timestamp.gt={}&timestamp.lt={}", at(250), at(250) + 500_000),
        format!("{}/v3/trades/NOPE?order=asc", sim.http_url()),
        format!("{base}?timestamp.gte={}", now_ns() + 60_000_000_000),
    ] {
        let (status, body) = get(&url).await;
        assert_eq!(status, 200);
        assert!(body.get("results").is_none() && body.get("next_url").is_none(), "{url}: {body}");
    }
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn history_refuses_as_polygon_does() {
    let tape = || Tape::new(vec!["AAPL".into()], now_ns() - 1_000_000_000, 100, 0);
    let (polygon, sim) = start(PolygonConfig { rest_per_minute: 3, ..cfg() }, tape()).await;
    let url = format!("{}/v3/trades/AAPL?order=asc&limit=10", sim.http_url());
    let client = reqwest::Client::new();
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "API Key was not provided");
    let r = client.get(format!("{url}&apiKey=wrong")).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.json::<Value>().await.unwrap()["error"].clone()),
        (401, "Unknown API Key".into())
    );
    // The key as a query parameter works as the Bearer header does.
    assert_eq!(client.get(format!("{url}&apiKey={KEY}")).send().await.unwrap().status(), 200);

    // An injected 429, then the per-minute limit: 3 authenticated calls a minute, the refused
    // ones included.
    polygon.fail_rest(&[429]);
    let (status, body) = get(&url).await;
    assert_eq!(status, 429);
    assert!(body["error"].as_str().unwrap().contains("exceeded the maximum requests per minute"), "{body}");
    assert_eq!(get(&url).await.0, 200, "the third call of the minute");
    assert_eq!(get(&url).await.0, 429, "the fourth");
    sim.stop().await.unwrap();

    // A plan without trade history: 403, the reason under `message`.
    let (_p, sim) = start(PolygonConfig { history: false, ..cfg() }, tape()).await;
    let (status, body) = get(&format!("{}/v3/trades/AAPL", sim.http_url())).await;
    assert_eq!((status, body["status"].as_str()), (403, Some("NOT_AUTHORIZED")));
    assert!(body["message"].as_str().unwrap().contains("not entitled"), "{body}");
    let (status, _) = get(&format!("{}/v3/trades/AAPL?limit=50001", sim.http_url())).await;
    assert_eq!(status, 403, "the plan is checked first");
    sim.stop().await.unwrap();
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscribed(sim: &Sim) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(sim.ws_url("/stocks")).await.unwrap();
    ws.send(Message::text(format!(r#"{{"action":"auth","params":"{KEY}"}}"#))).await.unwrap();
    ws.send(Message::text(r#"{"action":"subscribe","params":"T.AAPL"}"#)).await.unwrap();
    ws
}

/// Trades (q → (i, t)) read from `ws` until `n` arrived.
async fn read_trades(ws: &mut Ws, n: usize) -> BTreeMap<u64, (String, i64)> {
    let mut got = BTreeMap::new();
    while got.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
        let Message::Text(text) = msg else { continue };
        for e in serde_json::from_str::<Vec<Value>>(&text).unwrap().into_iter().filter(|e| e["ev"] == "T") {
            assert_eq!(e["sym"], "AAPL", "only the subscribed symbol");
            got.insert(e["q"].as_u64().unwrap(), (e["i"].as_str().unwrap().to_string(), e["t"].as_i64().unwrap()));
        }
    }
    got
}

#[tokio::test]
async fn what_a_dropped_connection_missed_is_exactly_in_the_history() {
    let (polygon, sim) = start(cfg(), Tape::new(vec!["AAPL".into(), "MSFT".into()], now_ns(), 500, 0)).await;
    let mut ws = subscribed(&sim).await;
    let before = read_trades(&mut ws, 50).await;
    let seq: Vec<u64> = before.keys().copied().collect();
    assert!(seq.windows(2).all(|w| w[1] == w[0] + 1), "a connection sees every trade from its subscription on");
    polygon.drop_all();
    // Trades go on happening while nobody listens.
    let (last_q, (_, last_t)) = before.last_key_value().map(|(q, v)| (*q, v.clone())).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ws = subscribed(&sim).await;
    let after = read_trades(&mut ws, 20).await;
    let (first_q, (_, first_t)) = after.first_key_value().map(|(q, v)| (*q, v.clone())).unwrap();
    assert!(first_q > last_q + 100, "about 150 trades happened while disconnected: {last_q} → {first_q}");

    // The history of the gap, asked as a client knows it (millisecond times of the edges):
    // every missing trade is there, and the edge trades it repeats are the ones streamed.
    let url = format!(
        "{}/v3/trades/AAPL?timestamp.gte={}&timestamp.lt={}&order=asc&limit=50",
        sim.http_url(),
        last_t * 1_000_000,
        (first_t + 1) * 1_000_000
    );
    let (mut pages, mut history) = (url, BTreeMap::new());
    loop {
        let (_, body) = get(&pages).await;
        for t in body["results"].as_array().into_iter().flatten() {
            history.insert(t["sequence_number"].as_u64().unwrap(), t["id"].as_str().unwrap().to_string());
        }
        let Some(next) = body["next_url"].as_str() else { break };
        pages = next.to_string();
    }
    let missing: BTreeSet<u64> = (last_q + 1..first_q).collect();
    assert!(missing.iter().all(|q| history.contains_key(q)), "every missed trade is in the history");
    for (q, id) in &history {
        if let Some((live_id, _)) = before.get(q).or_else(|| after.get(q)) {
            assert_eq!(id, live_id, "q {q}: the history's id is the streamed one (dedup by id works)");
        } else {
            assert!(missing.contains(q), "q {q} is neither streamed nor missing");
        }
    }
    sim.stop().await.unwrap();
}
