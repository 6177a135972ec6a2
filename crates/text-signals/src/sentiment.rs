//! Finance-aware lexicon sentiment for articles whose provider gives no score (NewsAPI).
//!
//! Word lists in the spirit of Loughran & McDonald's finance dictionary: general-purpose
//! lexicons call "liability", "tax" or "cost" negative and "gross" or "share" meaningless; in
//! financial text they are neutral, while "impairment", "restatement" or "downgrade" are
//! clearly negative. The lists below are a compact, hand-picked subset of such terms (stems
//! matched as word prefixes; a trailing `=` asks for the exact word, so "miss" is not
//! "mission"), with negation handling: a negator ("not", "no", "never",
//! "without", "n't", …) within the three preceding words flips a term's polarity ("did not
//! beat" is negative).
//!
//! Score = (positive − negative) / (positive + negative + 1), in (−1, 1); 0 when no term
//! matches. The `+ 1` keeps a single word from claiming full certainty.

/// Positive stems.
const POSITIVE: &[&str] = &[
    "beat",
    "beats",
    "outperform",
    "upgrade",
    "record high",
    "surg",
    "soar",
    "rall",
    "gain",
    "growth",
    "grew",
    "profit",
    "profitab",
    "strong",
    "strength",
    "improv",
    "exceed",
    "raise guidance",
    "raised guidance",
    "bullish",
    "boost",
    "rebound",
    "recover",
    "success",
    "optimis",
    "upbeat",
    "robust",
    "expand",
    "accelerat",
    "win=",
    "wins=",
    "won=",
    "breakthrough",
    "favorable",
    "favourable",
    "positive",
    "dividend increase",
    "buyback",
    "top estimates",
    "jump",
    "climb",
    "higher=",
    "advantage",
    "achiev",
    "innovat",
    "leadership",
    "stabl",
    "resilien",
    "upside",
];

/// Negative stems.
const NEGATIVE: &[&str] = &[
    "miss=",
    "misses=",
    "missed=",
    "downgrade",
    "underperform",
    "loss",
    "lost=",
    "declin",
    "drop=",
    "drops=",
    "dropped=",
    "fall=",
    "falls=",
    "fallen=",
    "fell=",
    "plung",
    "slump",
    "tumbl",
    "crash",
    "weak",
    "impair",
    "restat",
    "writedown",
    "write-down",
    "bankrupt",
    "default",
    "lawsuit",
    "litigat",
    "fraud",
    "investigat",
    "probe",
    "penalt",
    "fine=",
    "fined=",
    "fines=",
    "recall",
    "layoff",
    "cut guidance",
    "lowered guidance",
    "warn",
    "bearish",
    "slowdown",
    "recession",
    "downturn",
    "delist",
    "halt",
    "concern",
    "risk",
    "volatil",
    "uncertain",
    "adverse",
    "negative",
    "lower=",
    "shortfall",
    "deficit",
    "delay",
    "disappoint",
    "sell-off",
    "selloff",
    "downside",
    "worst",
    "fail",
    "collaps",
    "turmoil",
    "breach",
];

const NEGATORS: &[&str] = &[
    "not",
    "no",
    "never",
    "without",
    "neither",
    "nor",
    "hardly",
    "barely",
    "cannot",
    "didn't",
    "doesn't",
    "don't",
    "isn't",
    "wasn't",
    "aren't",
    "won't",
    "failed to",
];

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '-' || c == '’'))
        .filter(|w| !w.is_empty())
        .map(|w| w.replace('’', "'").to_lowercase())
        .collect()
}

/// Length in words of a stem that matches at `i` (multi-word stems match word by word, the
/// last word as a prefix).
fn matches(words: &[String], i: usize, stem: &str) -> Option<usize> {
    let parts: Vec<&str> = stem.split(' ').collect();
    for (k, part) in parts.iter().enumerate() {
        let w = words.get(i + k)?;
        let last = k + 1 == parts.len();
        let ok = match part.strip_suffix('=') {
            Some(exact) => w == exact,
            None if last => w.starts_with(part),
            None => w == part,
        };
        if !ok {
            return None;
        }
    }
    Some(parts.len())
}

fn negated(words: &[String], i: usize) -> bool {
    let from = i.saturating_sub(3);
    words[from..i].iter().any(|w| NEGATORS.contains(&w.as_str()) || w.ends_with("n't"))
}

/// Sentiment of `text` in (−1, 1); 0 when it has no sentiment terms.
pub fn score(text: &str) -> f64 {
    let words = words(text);
    let (mut pos, mut neg) = (0u32, 0u32);
    let mut i = 0;
    while i < words.len() {
        let hit = POSITIVE
            .iter()
            .filter_map(|s| matches(&words, i, s).map(|n| (n, 1i8)))
            .chain(NEGATIVE.iter().filter_map(|s| matches(&words, i, s).map(|n| (n, -1i8))))
            .max_by_key(|(n, _)| *n);
        match hit {
            Some((n, polarity)) => {
                let polarity = if negated(&words, i) { -polarity } else { polarity };
                if polarity > 0 {
                    pos += 1
                } else {
                    neg += 1
                }
                i += n;
            }
            None => i += 1,
        }
    }
    (f64::from(pos) - f64::from(neg)) / (f64::from(pos) + f64::from(neg) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obvious_polarity() {
        let positive = [
            "Apple beats estimates as iPhone sales surge to a record high",
            "Microsoft raises guidance after strong cloud growth",
            "Shares rally as the company reports robust profit and a buyback",
        ];
        let negative = [
            "Bank posts heavy losses and warns of further impairment charges",
            "Retailer shares plunge after it misses estimates and cuts guidance",
            "Regulators open a fraud probe; the company faces a lawsuit and possible bankruptcy",
        ];
        for t in positive {
            assert!(score(t) > 0.3, "{t}: {}", score(t));
        }
        for t in negative {
            assert!(score(t) < -0.3, "{t}: {}", score(t));
        }
        assert_eq!(score("The company will hold its annual meeting on Tuesday in Cupertino"), 0.0);
    }

    #[test]
    fn negation_flips_polarity() {
        assert!(score("The company did not beat estimates") < 0.0);
        assert!(score("Revenue was not weak this quarter") > 0.0);
        assert!(score("Analysts don't expect a recession") > 0.0);
        assert!(score("no growth at all") < 0.0);
    }

    #[test]
    fn finance_neutral_words_stay_neutral() {
        // General lexicons score these negative; in filings and news they are routine.
        assert_eq!(score("The liability and tax cost of the share exchange were disclosed"), 0.0);
        // Prefix look-alikes are not the words.
        assert_eq!(score("The mission of the Windows team in Mississippi"), 0.0);
    }

    #[test]
    fn bounded() {
        let long = "surge ".repeat(500);
        let s = score(&long);
        assert!(s > 0.99 && s < 1.0);
        assert!((-1.0..=1.0).contains(&score(&"crash fraud ".repeat(100))));
    }
}
