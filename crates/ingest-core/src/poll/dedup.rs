//! The dedup window of a poll group: the keys of the records it delivered, bounded.

use std::collections::{HashSet, VecDeque};

/// Bounded set of delivered keys, oldest evicted first. Keys are kept as 64-bit FNV-1a hashes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DedupWindow {
    capacity: usize,
    order: VecDeque<u64>,
    set: HashSet<u64>,
}

impl DedupWindow {
    /// An empty window of `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), order: VecDeque::new(), set: HashSet::new() }
    }

    /// The hash a key is remembered by.
    pub fn hash(key: &str) -> u64 {
        key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
    }

    /// Whether `key` was seen.
    pub fn contains(&self, key: &str) -> bool {
        self.set.contains(&Self::hash(key))
    }

    /// Remembers `key`; returns false if it was already there.
    pub fn insert(&mut self, key: &str) -> bool {
        self.insert_hash(Self::hash(key))
    }

    fn insert_hash(&mut self, h: u64) -> bool {
        if !self.set.insert(h) {
            return false;
        }
        self.order.push_back(h);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The window as stored in `ingest.state`: 16-digit hex hashes, oldest first.
    pub fn to_hex(&self) -> Vec<String> {
        self.order.iter().map(|h| format!("{h:016x}")).collect()
    }

    /// Restores a stored window (the newest `capacity` entries if the capacity shrank).
    pub fn from_hex(capacity: usize, hashes: &[String]) -> Result<Self, String> {
        let mut w = Self::new(capacity);
        for h in hashes {
            w.insert_hash(u64::from_str_radix(h, 16).map_err(|_| format!("`{h}` is not a hex hash"))?);
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_window_is_bounded_and_round_trips() {
        let mut w = DedupWindow::new(3);
        for k in ["a", "b", "c"] {
            assert!(w.insert(k));
        }
        assert!(!w.insert("b"), "already seen");
        assert!(w.insert("d"));
        assert_eq!(w.len(), 3);
        assert!(!w.contains("a"), "oldest evicted");
        assert!(w.contains("b") && w.contains("d"));
        let stored = w.to_hex();
        assert!(stored.iter().all(|h| h.len() == 16));
        assert_eq!(DedupWindow::from_hex(3, &stored).unwrap(), w);
        let smaller = DedupWindow::from_hex(2, &stored).unwrap();
        assert!(!smaller.contains("b") && smaller.contains("c") && smaller.contains("d"), "newest kept");
        assert!(DedupWindow::from_hex(3, &["xyz".into()]).is_err());
        // FNV-1a 64 of "a", a published test vector: stored hashes must never change.
        assert_eq!(DedupWindow::hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
