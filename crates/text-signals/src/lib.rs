//! What the news and social producers read out of text: tickers (cashtags and known symbols),
//! provider truncation markers, HTML entities ([`text`]), and a finance lexicon sentiment score
//! with negation ([`sentiment`]). Pure functions of their input, shared by the two producers
//! that handle free text; the rest of the workspace does not depend on them.

pub mod sentiment;
pub mod text;
