//! Two sites for the altdata producer's example sources (`configs/config.yaml`), served in
//! `make run` demo mode:
//!
//! - `GET /altdata/rates.json[?cursor=…]`: policy rates as `{"data":{"items":[…]},"next":…}`,
//!   two pages linked by a cursor, one new rate a minute;
//! - `GET /altdata/prices.csv`: daily closes as CSV with a header row.

use axum::Router;
use axum::extract::Query;
use axum::http::header;
use axum::routing::get;
use chrono::{Duration, Utc};
use serde_json::json;

/// The routes.
pub fn router() -> Router {
    Router::new()
        .route(
            "/altdata/rates.json",
            get(|Query(q): Query<std::collections::HashMap<String, String>>| async move {
                let now = Utc::now();
                // A new observation each minute: ids are the minute, so repeats are recognisable.
                let minute = now.timestamp() / 60;
                let items: Vec<serde_json::Value> = (0..4)
                    .map(|i| {
                        let m = minute - i;
                        json!({"id": format!("sofr-{m}"), "observed": (now - Duration::minutes(i)).format("%Y-%m-%dT%H:%M:00Z").to_string(),
                               "value": 5.30 + (m % 7) as f64 / 100.0, "label": "SOFR"})
                    })
                    .collect();
                let body = match q.get("cursor").map(String::as_str) {
                    None => json!({"data": {"items": items[..2]}, "next": "page2"}),
                    Some("page2") => json!({"data": {"items": items[2..]}, "next": null}),
                    Some(_) => json!({"data": {"items": []}, "next": null}),
                };
                axum::Json(body)
            }),
        )
        .route(
            "/altdata/prices.csv",
            get(|| async {
                let day = Utc::now().format("%Y-%m-%d");
                (
                    [(header::CONTENT_TYPE, "text/csv")],
                    format!("symbol,date,close\nAAPL,{day},185.64\nMSFT,{day},370.87\nNVDA,{day},495.22\n"),
                )
            }),
        )
}
