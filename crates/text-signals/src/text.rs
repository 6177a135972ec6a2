//! Text clean-up and ticker extraction shared by the news and social sources.

/// Removes NewsAPI's truncation marker (`… [+1234 chars]` at the end of `content`) and says
/// whether it was there.
pub fn strip_truncation(content: &str) -> (String, bool) {
    let t = content.trim_end();
    let Some(rest) = t.strip_suffix(" chars]") else { return (content.to_string(), false) };
    let Some(open) = rest.rfind("[+") else { return (content.to_string(), false) };
    let digits = &rest[open + 2..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return (content.to_string(), false);
    }
    let head = rest[..open].trim_end();
    let head = head.strip_suffix('…').unwrap_or(head).trim_end();
    (head.to_string(), true)
}

/// Cashtags in `text`: `$` + 1-6 letters (optionally `.` + 1-2 letters, as `$BRK.B`), not
/// preceded by a letter or digit and not followed by one. `$5` and `US$` are not tickers.
pub fn cashtags(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out: Vec<String> = Vec::new();
    for (i, _) in text.match_indices('$') {
        if i > 0 && b[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_alphabetic() && end - start < 7 {
            end += 1;
        }
        let letters = end - start;
        if !(1..=6).contains(&letters) {
            continue;
        }
        // Class suffix: `.B`, `.WS`.
        if end + 1 < b.len() && b[end] == b'.' && b[end + 1].is_ascii_alphabetic() {
            let mut e = end + 1;
            while e < b.len() && b[e].is_ascii_alphabetic() && e - end <= 2 {
                e += 1;
            }
            if e - end - 1 <= 2 && !(e < b.len() && b[e].is_ascii_alphanumeric()) {
                end = e;
            }
        }
        if end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            continue;
        }
        let tag = text[start..end].to_ascii_uppercase();
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    out
}

/// Configured symbols that appear in `text` as whole upper-case words (`AAPL` in "AAPL rose",
/// not in "AAPLX").
pub fn known_symbols<'a>(text: &str, symbols: &'a [String]) -> Vec<&'a str> {
    let words: Vec<&str> =
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.')).map(|w| w.trim_end_matches('.')).collect();
    symbols.iter().filter(|s| words.contains(&s.as_str())).map(String::as_str).collect()
}

/// Tickers a text is about: `known` first (symbols the provider tagged it with), then its
/// cashtags, then configured `symbols` named in it as whole words; each once, in that order.
pub fn tickers(text: &str, known: &[String], symbols: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let found =
        known.iter().cloned().chain(cashtags(text)).chain(known_symbols(text, symbols).into_iter().map(String::from));
    for t in found {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// Unescapes the HTML entities providers put in text (StockTwits bodies, X `text`): `&amp;`,
/// `&lt;`, `&gt;`, `&quot;`, `&apos;`, `&nbsp;` and numeric references (`&#39;`, `&#x1F600;`).
/// Anything else is kept as written; the text is decoded once (`&amp;lt;` becomes `&lt;`).
pub fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let decoded = after.find(';').filter(|&end| end <= 10).and_then(|end| {
            let name = &after[..end];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                n => n
                    .strip_prefix("#x")
                    .or_else(|| n.strip_prefix("#X"))
                    .map(|h| u32::from_str_radix(h, 16))
                    .or_else(|| n.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newsapi_truncation_marker_is_removed_and_flagged() {
        let cases = [
            ("The hype surrounding DeFi … many time… [+10090 chars]", "The hype surrounding DeFi … many time", true),
            ("Shares rose 5%… [+12 chars]", "Shares rose 5%", true),
            ("Shares rose [+3 chars]", "Shares rose", true),
            ("Complete text.", "Complete text.", false),
            ("Ends with [+x chars]", "Ends with [+x chars]", false),
            ("Mentions [+10 chars] mid-text", "Mentions [+10 chars] mid-text", false),
            ("", "", false),
        ];
        for (input, text, flagged) in cases {
            assert_eq!(strip_truncation(input), (text.to_string(), flagged), "{input}");
        }
    }

    #[test]
    fn cashtags_are_tickers_not_prices() {
        assert_eq!(
            cashtags("$AAPL and $msft rally; $5 coffee; US$10; $BRK.B up, $TSLA."),
            ["AAPL", "MSFT", "BRK.B", "TSLA"]
        );
        assert_eq!(cashtags("$AAPL $AAPL"), ["AAPL"], "once each");
        assert!(cashtags("costs $ 5, $ABCDEFGH is too long, a$B, $A1").is_empty());
    }

    #[test]
    fn tickers_in_order_each_once() {
        let symbols = vec!["AAPL".to_string(), "NVDA".to_string()];
        assert_eq!(
            tickers("$TSLA beat; NVDA and AAPL up, $TSLA again", &["F".into()], &symbols),
            ["F", "TSLA", "AAPL", "NVDA"]
        );
        assert!(tickers("nothing here", &[], &symbols).is_empty());
    }

    #[test]
    fn html_entities_are_decoded_once() {
        assert_eq!(
            html_unescape("Let&#39;s go &amp; buy $F &lt;3 &quot;now&quot; &#x1F680;"),
            "Let's go & buy $F <3 \"now\" \u{1F680}"
        );
        assert_eq!(html_unescape("&amp;lt; stays &lt; once"), "&lt; stays < once");
        assert_eq!(html_unescape("AT&T & co &unknown; &#xZZ; &"), "AT&T & co &unknown; &#xZZ; &");
    }

    #[test]
    fn known_symbols_match_whole_words() {
        let symbols = vec!["AAPL".to_string(), "MSFT".to_string(), "F".to_string()];
        assert_eq!(known_symbols("AAPL rose while AAPLX fell. MSFT.", &symbols), ["AAPL", "MSFT"]);
        assert_eq!(known_symbols("Ford (F) gains", &symbols), ["F"]);
        assert!(known_symbols("aapl lower-case is not a symbol", &symbols).is_empty());
    }
}
