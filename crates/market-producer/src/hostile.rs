//! Raw bytes through a provider's protocol session, down the same path as a live connection:
//! the frame splitter, the borrowed wire types, the normalizers, the quote book they update and
//! the serialization of every tick the output receives. [`market_frame`] is the one entry for
//! every provider: the fuzz target (`fuzz/`, `market_frame`) and the hostile-input property
//! test below use it; whatever the bytes, it returns without panicking.

use chrono::Utc;
use ingest_core::config::Secret;
use ingest_core::record::MarketTick;
use ingest_core::ws::{Frame, WsError, WsOutput};

use crate::book::QuoteBook;
use crate::config::MarketConfig;
use crate::provider::MarketProvider;
use ingest_core::ws::emit::TickOutput;

/// The provider an input is for: its first byte, an index into [`MarketProvider::ALL`]
/// (0 Polygon, 1 Alpaca, 2 Finnhub; larger values wrap).
pub fn provider_index(label: &str) -> Option<u8> {
    MarketProvider::ALL.iter().position(|p| p.label() == label).and_then(|i| u8::try_from(i).ok())
}

/// One input: the first byte picks the provider, the rest is one frame, fed to a fresh
/// session after its opening (as text when it is UTF-8; otherwise as a binary frame, which
/// is dead-lettered, and as its lossy text, which reaches the parsers).
pub fn market_frame(data: &[u8]) {
    drive(data);
}

/// [`market_frame`], returning the ticks and dead letters the session gave its output.
fn drive(data: &[u8]) -> (u64, u64) {
    let Some((&pick, frame)) = data.split_first() else { return (0, 0) };
    let provider = MarketProvider::ALL[usize::from(pick) % MarketProvider::ALL.len()];
    let cfg = MarketConfig {
        provider,
        api_key: Secret::new("key"),
        api_secret: Secret::new("secret"),
        symbols: vec!["AAPL".into(), "MSFT".into(), "BINANCE:BTCUSDT".into()],
        ..MarketConfig::default()
    };
    let mut session = provider.get().session(&cfg, QuoteBook::new(64));
    let (mut replies, mut out) = (Vec::new(), Serialized::default());
    session.on_open(&mut replies);
    out.connected(1);
    let now = Utc::now();
    match std::str::from_utf8(frame) {
        Ok(text) => {
            session.on_frame(Frame::Text(text), now, &mut replies, &mut out);
        }
        Err(_) => {
            session.on_frame(Frame::Binary(frame), now, &mut replies, &mut out);
            let lossy = String::from_utf8_lossy(frame);
            session.on_frame(Frame::Text(&lossy), now, &mut replies, &mut out);
        }
    }
    (out.ticks, out.dead)
}

/// An output that does what the production one does with a tick before Kafka: serialize it.
#[derive(Default)]
struct Serialized {
    buf: Vec<u8>,
    ticks: u64,
    dead: u64,
}

impl WsOutput for Serialized {
    fn connected(&mut self, _epoch: u64) {}
    fn transport_error(&mut self, _error: &WsError) {}
}

impl TickOutput for Serialized {
    fn tick(&mut self, tick: &MarketTick<'_>, _raw: &[u8]) {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, tick).expect("a normalized tick serializes");
        self.ticks += 1;
    }
    fn dead_letter(&mut self, _raw: &[u8], reason: &str, _received_at: chrono::DateTime<Utc>) {
        assert!(!reason.is_empty(), "a dead letter says why");
        self.dead += 1;
    }
}

#[cfg(test)]
mod tests {
    use ingest_core::testkit::hostile_inputs;

    use super::provider_index;

    fn data(path: &str) -> Vec<u8> {
        std::fs::read(format!("{}/test_data/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_default()
    }

    /// `seed` prefixed with the index byte of `provider`.
    fn for_provider(provider: &str, seed: Vec<u8>) -> Vec<u8> {
        let mut v = vec![provider_index(provider).expect("a known provider")];
        v.extend(seed);
        v
    }

    /// Mutated recorded frames and random bytes never panic a provider's session.
    #[test]
    fn hostile_frames_never_panic() {
        let mut seeds = vec![
            for_provider("polygon", data("polygon/stocks_mixed.frame.json")),
            for_provider("polygon", data("polygon/crypto.frame.json")),
            for_provider(
                "polygon",
                format!("[{}]", String::from_utf8_lossy(&data("polygon/bad_events.jsonl")).trim().replace('\n', ","))
                    .into_bytes(),
            ),
            for_provider("alpaca", data("alpaca/data.frame.json")),
        ];
        seeds.extend(
            String::from_utf8_lossy(&data("finnhub/trades.frames.jsonl"))
                .lines()
                .map(|l| for_provider("finnhub", l.as_bytes().to_vec())),
        );
        assert!(seeds.iter().all(|s| s.len() > 1), "every seed fixture was read");
        assert_eq!(hostile_inputs("market frames", &seeds, 9000, super::market_frame), 9000);
    }

    /// The index byte reaches the provider's parser: each provider's recorded frame yields its
    /// ticks under its own index and none under another's.
    #[test]
    fn the_index_byte_picks_the_provider() {
        assert_eq!(["polygon", "alpaca", "finnhub", "nope"].map(provider_index), [Some(0), Some(1), Some(2), None]);
        let finnhub = String::from_utf8_lossy(&data("finnhub/trades.frames.jsonl")).lines().next().map(String::from);
        let frames = [
            ("polygon", data("polygon/stocks_mixed.frame.json")),
            ("alpaca", data("alpaca/data.frame.json")),
            ("finnhub", finnhub.expect("a finnhub frame").into_bytes()),
        ];
        for (own, frame) in &frames {
            for (other, _) in &frames {
                let (ticks, _) = super::drive(&for_provider(other, frame.clone()));
                assert_eq!(ticks > 0, own == other, "{own} frame under the {other} index: {ticks} ticks");
            }
        }
    }
}

#[cfg(test)]
mod escaped_strings {
    use chrono::Utc;

    use crate::book::QuoteBook;
    use crate::polygon::Element;
    use ingest_core::ws::frame::for_each_element;

    /// JSON escapes are JSON: `\u00c4PFEL` and `ÄPFEL` are the same symbol for every provider.
    #[test]
    fn escaped_and_raw_symbols_normalize_the_same() {
        let now = Utc::now();
        for frame in [
            r#"[{"ev":"T","sym":"\u00c4PFEL","x":4,"i":"1","p":1.5,"s":10,"t":1704205800000,"q":1}]"#,
            r#"[{"ev":"T","sym":"ÄPFEL","x":4,"i":"1","p":1.5,"s":10,"t":1704205800000,"q":1}]"#,
            r#"[{"ev":"\u0054","sym":"\u00C4PFEL","x":4,"i":"1","p":1.5,"s":10,"t":1704205800000,"q":1}]"#,
        ] {
            let mut book = QuoteBook::new(8);
            let mut got = Vec::new();
            crate::polygon::elements(frame, now, &mut book, |e| match e {
                Element::Tick(t, _) => got.push(t.symbol.to_string()),
                Element::Bad(_, why) => panic!("{frame}: dead-lettered: {why}"),
                Element::Status(..) => {}
            })
            .expect("frame");
            assert_eq!(got, ["ÄPFEL"], "{frame}");
        }
        for frame in [
            r#"[{"T":"t","i":1,"S":"\u00c4PFEL","x":"\u0044","p":1.5,"s":1,"t":"2024-01-02T14:30:00Z"}]"#,
            r#"[{"T":"t","i":1,"S":"ÄPFEL","x":"D","p":1.5,"s":1,"t":"2024-01-02T14:30:00Z"}]"#,
        ] {
            let mut book = QuoteBook::new(8);
            let mut got = Vec::new();
            for_each_element(frame, |el| {
                let m: crate::alpaca::wire::Msg<'_> = serde_json::from_str(el).expect("wire");
                let t = crate::alpaca::normalize::normalize(&m, now, &mut book).expect("tick");
                got.push((t.symbol.to_string(), t.exchange.map(|e| e.to_string())));
            })
            .expect("frame");
            assert_eq!(got, [("ÄPFEL".to_string(), Some("FINRA ADF".to_string()))], "{frame}");
        }
        for frame in [
            r#"{"data":[{"p":1.5,"s":"\u00c4PFEL","t":1704205800000,"v":1}],"type":"trade"}"#,
            r#"{"data":[{"p":1.5,"s":"ÄPFEL","t":1704205800000,"v":1}],"type":"\u0074rade"}"#,
        ] {
            let env: crate::finnhub::wire::Envelope<'_> = serde_json::from_str(frame).expect("envelope");
            assert_eq!(&*env.kind, "trade");
            let data = env.data.expect("data");
            let book = QuoteBook::new(8);
            let mut got = Vec::new();
            for_each_element(data.get(), |el| {
                let t: crate::finnhub::wire::Trade<'_> = serde_json::from_str(el).expect("trade");
                got.push(crate::finnhub::normalize::normalize(&t, now, &book).expect("tick").symbol.to_string());
            })
            .expect("frame");
            assert_eq!(got, ["ÄPFEL"], "{frame}");
        }
    }
}
