//! Splitting the symbol universe across replicas: replica `i` of `n` streams the symbols whose
//! stable hash is `i` modulo `n`, so `n` replicas with indexes `0..n` cover every symbol exactly
//! once, whatever the order of the list and on every platform (FNV-1a 64 of the UTF-8 bytes,
//! never `std`'s randomized hasher).

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The replica (`0..count`) that owns `symbol`.
pub(crate) fn owner(symbol: &str, count: u32) -> u32 {
    u32::try_from(fnv1a(symbol.as_bytes()) % u64::from(count.max(1))).unwrap_or(0)
}

/// The symbols replica `index` of `count` streams, in their configured order.
pub(crate) fn select(symbols: &[String], index: u32, count: u32) -> Vec<String> {
    symbols.iter().filter(|s| owner(s, count) == index).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn universe(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("SYM{i}")).collect()
    }

    #[test]
    fn replicas_cover_every_symbol_exactly_once() {
        let all = universe(500);
        for count in 1..=7 {
            let mut seen: Vec<String> = (0..count).flat_map(|i| select(&all, i, count)).collect();
            seen.sort();
            let mut want = all.clone();
            want.sort();
            assert_eq!(seen, want, "count {count}");
        }
    }

    #[test]
    fn split_is_roughly_even_and_stable() {
        let all = universe(1000);
        for i in 0..4 {
            let n = select(&all, i, 4).len();
            assert!((180..=320).contains(&n), "replica {i} of 4 got {n} of 1000");
        }
        // Pinned values: a change of the hash would move symbols between running replicas.
        // (Computed independently with a Python FNV-1a.)
        assert_eq!([owner("AAPL", 4), owner("MSFT", 4), owner("NVDA", 4), owner("SPY", 4)], [3, 3, 2, 1]);
        assert_eq!(owner("AAPL", 1), 0);
    }
}
