//! news-producer's library: the pure parts of news normalization, table-tested.
//!
//! - [`canon`]: canonical article URLs and the UUID v5 record id derived from them.
//! - [`text`]: NewsAPI truncation markers, cashtags, configured symbols in text.
//! - [`sentiment`]: the built-in finance lexicon scorer for articles without a provider score.

pub mod canon;
pub mod sentiment;
pub mod text;
