//! market-producer: real-time trades, quotes and bars from market-data WebSockets (Polygon.io /
//! Massive, Alpaca, Finnhub), normalized to `market.tick/v1` on `market.ticks.raw`.
//!
//! The library holds the providers' protocols and the pure normalization; `main.rs` only
//! wires them into `ingest_core::main`. `polygon::elements` is public so that the benchmark
//! measures the production hot path itself.

pub(crate) mod alpaca;
pub mod book;
pub(crate) mod config;
pub(crate) mod emit;
pub(crate) mod exchanges;
pub(crate) mod finnhub;
pub mod frame;
pub mod polygon;
pub(crate) mod replay;
pub(crate) mod shard;
pub(crate) mod source;
pub(crate) mod tick;

pub use config::MarketConfig;
pub use replay::{ReplaySource, Speed};
pub use source::MarketSource;

#[cfg(test)]
mod hostile {
    use chrono::Utc;
    use ingest_core::testkit::hostile_inputs;

    use crate::book::QuoteBook;
    use crate::frame::for_each_element;

    fn data(path: &str) -> Vec<u8> {
        std::fs::read(format!("{}/test_data/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_default()
    }

    /// Hostile frames for the three WebSocket parsers, down the same path as their sessions:
    /// the frame splitter, the borrowed wire types, the normalizers (and the quote book they
    /// update). Mutated recorded frames and random bytes never panic.
    #[test]
    fn hostile_frames_never_panic() {
        let now = Utc::now();
        let polygon_seeds = vec![
            data("polygon/stocks_mixed.frame.json"),
            data("polygon/crypto.frame.json"),
            format!("[{}]", String::from_utf8_lossy(&data("polygon/bad_events.jsonl")).trim().replace('\n', ","))
                .into_bytes(),
        ];
        let tried = hostile_inputs("polygon frames", &polygon_seeds, 3000, |b| {
            let mut book = QuoteBook::new(64);
            let _ = crate::polygon::elements(&String::from_utf8_lossy(b), now, &mut book, |_| {});
        });
        assert_eq!(tried, 3000);

        let tried = hostile_inputs("alpaca frames", &[data("alpaca/data.frame.json")], 3000, |b| {
            let mut book = QuoteBook::new(64);
            let text = String::from_utf8_lossy(b);
            let _ = for_each_element(&text, |el| {
                if let Ok(m) = serde_json::from_str::<crate::alpaca::wire::Msg<'_>>(el) {
                    let _ = crate::alpaca::normalize::normalize(&m, now, &mut book);
                }
            });
        });
        assert_eq!(tried, 3000);

        let finnhub: Vec<Vec<u8>> = String::from_utf8_lossy(&data("finnhub/trades.frames.jsonl"))
            .lines()
            .map(|l| l.as_bytes().to_vec())
            .collect();
        let tried = hostile_inputs("finnhub frames", &finnhub, 3000, |b| {
            let book = QuoteBook::new(64);
            let text = String::from_utf8_lossy(b);
            if let Ok(env) = serde_json::from_str::<crate::finnhub::wire::Envelope<'_>>(&text)
                && let Some(d) = env.data
            {
                let _ = for_each_element(d.get(), |el| {
                    if let Ok(t) = serde_json::from_str::<crate::finnhub::wire::Trade<'_>>(el) {
                        let _ = crate::finnhub::normalize::normalize(&t, now, &book);
                    }
                });
            }
        });
        assert_eq!(tried, 3000);
    }
}
