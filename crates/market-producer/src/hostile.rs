//! Raw bytes through the three WebSocket parsers, down the same path as their sessions: the
//! frame splitter, the borrowed wire types, the normalizers and the quote book they update.
//! Used by the fuzz targets (`fuzz/`) and the hostile-input property test below; whatever the
//! bytes, each returns without panicking.

use chrono::Utc;

use crate::book::QuoteBook;
use crate::frame::for_each_element;

/// A Polygon/Massive frame (a JSON array of events).
pub fn polygon_frame(frame: &[u8]) {
    let mut book = QuoteBook::new(64);
    let _ = crate::polygon::elements(&String::from_utf8_lossy(frame), Utc::now(), &mut book, |_| {});
}

/// An Alpaca frame (a JSON array of messages).
pub fn alpaca_frame(frame: &[u8]) {
    let mut book = QuoteBook::new(64);
    let now = Utc::now();
    let _ = for_each_element(&String::from_utf8_lossy(frame), |el| {
        if let Ok(m) = serde_json::from_str::<crate::alpaca::wire::Msg<'_>>(el) {
            let _ = crate::alpaca::normalize::normalize(&m, now, &mut book);
        }
    });
}

/// A Finnhub frame (an envelope whose `data` is an array of trades).
pub fn finnhub_frame(frame: &[u8]) {
    let book = QuoteBook::new(64);
    let now = Utc::now();
    let text = String::from_utf8_lossy(frame);
    if let Ok(env) = serde_json::from_str::<crate::finnhub::wire::Envelope<'_>>(&text)
        && let Some(d) = env.data
    {
        let _ = for_each_element(d.get(), |el| {
            if let Ok(t) = serde_json::from_str::<crate::finnhub::wire::Trade<'_>>(el) {
                let _ = crate::finnhub::normalize::normalize(&t, now, &book);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use ingest_core::testkit::hostile_inputs;

    fn data(path: &str) -> Vec<u8> {
        std::fs::read(format!("{}/test_data/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_default()
    }

    /// Mutated recorded frames and random bytes never panic a parser.
    #[test]
    fn hostile_frames_never_panic() {
        let polygon_seeds = vec![
            data("polygon/stocks_mixed.frame.json"),
            data("polygon/crypto.frame.json"),
            format!("[{}]", String::from_utf8_lossy(&data("polygon/bad_events.jsonl")).trim().replace('\n', ","))
                .into_bytes(),
        ];
        assert_eq!(hostile_inputs("polygon frames", &polygon_seeds, 3000, super::polygon_frame), 3000);
        assert_eq!(hostile_inputs("alpaca frames", &[data("alpaca/data.frame.json")], 3000, super::alpaca_frame), 3000);
        let finnhub: Vec<Vec<u8>> = String::from_utf8_lossy(&data("finnhub/trades.frames.jsonl"))
            .lines()
            .map(|l| l.as_bytes().to_vec())
            .collect();
        assert_eq!(hostile_inputs("finnhub frames", &finnhub, 3000, super::finnhub_frame), 3000);
    }
}

#[cfg(test)]
mod escaped_strings {
    use chrono::Utc;

    use crate::book::QuoteBook;
    use crate::frame::for_each_element;
    use crate::polygon::Element;

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
