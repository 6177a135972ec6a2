//! The latest bid/ask per symbol, so trades can carry the quote that was in force.

use std::collections::HashMap;

/// Latest top of book by symbol. Lookups by `&str` never allocate; the first quote of a symbol
/// allocates its key once. Bounded: past `max_symbols` the book is cleared (a wildcard
/// subscription cannot grow it without limit); trades then carry no quote until the next one.
#[derive(Debug)]
pub struct QuoteBook {
    quotes: HashMap<Box<str>, (f64, f64)>,
    max_symbols: usize,
}

impl QuoteBook {
    pub fn new(max_symbols: usize) -> Self {
        Self { quotes: HashMap::with_capacity(max_symbols.min(4096)), max_symbols }
    }

    /// Records the latest bid and ask of `symbol`.
    pub(crate) fn update(&mut self, symbol: &str, bid: f64, ask: f64) {
        if let Some(q) = self.quotes.get_mut(symbol) {
            *q = (bid, ask);
            return;
        }
        if self.quotes.len() >= self.max_symbols {
            self.quotes.clear();
        }
        self.quotes.insert(symbol.into(), (bid, ask));
    }

    /// The latest (bid, ask) of `symbol`, if a quote was seen.
    pub(crate) fn get(&self, symbol: &str) -> Option<(f64, f64)> {
        self.quotes.get(symbol).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_latest_and_stays_bounded() {
        let mut b = QuoteBook::new(2);
        assert_eq!(b.get("AAPL"), None);
        b.update("AAPL", 1.0, 1.1);
        b.update("AAPL", 2.0, 2.1);
        assert_eq!(b.get("AAPL"), Some((2.0, 2.1)));
        b.update("MSFT", 3.0, 3.1);
        b.update("NVDA", 4.0, 4.1);
        assert_eq!(b.get("AAPL"), None, "cleared at the bound");
        assert_eq!(b.get("NVDA"), Some((4.0, 4.1)));
    }
}
