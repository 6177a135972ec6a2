//! HTML scraping for `kind: html` sources: CSS selectors pick the items, and per field an
//! *extraction* picks a value inside each item.
//!
//! An extraction is written `selector`, `selector@attribute` or `@attribute`:
//! - `td.price` → the text of the first element matching `td.price` inside the item, entities
//!   decoded and whitespace collapsed (`None` if nothing matches);
//! - `a.story@href` → that element's `href` attribute;
//! - `@data-id` → the item element's own attribute.
//!
//! Parsing is html5ever's (the WHATWG algorithm browsers use), so broken markup parses the way a
//! browser would show it; the body was already capped by the fetch. html5ever's tree building
//! is quadratic in nesting depth (50,000 nested `<div>`s take 3.5 s in a release build, a
//! 16 MiB page of them hours), so a linear pre-scan refuses pages nested deeper than
//! [`MAX_DEPTH`] before they are parsed.

use std::collections::HashMap;

use scraper::{ElementRef, Html, Selector};
use serde_json::{Map, Value};

/// A compiled extraction.
#[derive(Debug, Clone)]
pub struct Extract {
    selector: Option<Selector>,
    attr: Option<String>,
}

fn selector(s: &str) -> Result<Selector, String> {
    Selector::parse(s).map_err(|e| format!("`{s}` is not a CSS selector ({e})"))
}

impl Extract {
    /// Compiles `spec` (`selector`, `selector@attr` or `@attr`).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        // `@` splits off an attribute only after the last `]`, so attribute selectors whose
        // values hold an `@` (`a[href^="mailto:x@y"]`) stay whole.
        let tail_from = spec.rfind(']').map_or(0, |i| i + 1);
        let (sel, attr) = match spec[tail_from..].rfind('@') {
            Some(at) => {
                let at = tail_from + at;
                let attr = &spec[at + 1..];
                if attr.is_empty() || !attr.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b)) {
                    return Err(format!("`{spec}`: `{attr}` is not an attribute name"));
                }
                (spec[..at].trim(), Some(attr.to_ascii_lowercase()))
            }
            None => (spec, None),
        };
        if sel.is_empty() && attr.is_none() {
            return Err("an empty extraction (give a selector, selector@attribute or @attribute)".into());
        }
        let selector = if sel.is_empty() { None } else { Some(selector(sel)?) };
        Ok(Self { selector, attr })
    }

    /// The value inside `item`, if present.
    pub fn apply(&self, item: ElementRef<'_>) -> Option<String> {
        let el = match &self.selector {
            Some(s) => item.select(s).next()?,
            None => item,
        };
        match &self.attr {
            Some(a) => el.value().attr(a).map(str::to_string),
            None => Some(text(el)),
        }
    }
}

/// An element's text, whitespace runs collapsed to one space and trimmed.
pub fn text(el: ElementRef<'_>) -> String {
    let mut out = String::new();
    for word in el.text().flat_map(str::split_whitespace) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// How one `kind: html` source reads a page.
#[derive(Debug, Clone)]
pub struct Plan {
    items: Selector,
    fields: Vec<(String, Extract)>,
    next: Option<Extract>,
}

/// What a page yields: one JSON object per item, `{"text": …, "selected": {spec: value|null}}`,
/// and the next-page value (a URL or a token) when the plan has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Scraped {
    /// The items.
    pub items: Vec<Value>,
    /// The next page, from the `next` extraction applied to the whole document.
    pub next: Option<String>,
}

impl Plan {
    /// `items` selects the item elements (empty: the whole document as one item); `specs` are
    /// the extractions to apply to each (id, time, fields); `next` is read from the document.
    pub fn new<'a>(items: &str, specs: impl IntoIterator<Item = &'a str>, next: Option<&str>) -> Result<Self, String> {
        let items = selector(if items.trim().is_empty() { ":root" } else { items })?;
        let mut fields = Vec::new();
        for spec in specs {
            if !spec.is_empty() && !fields.iter().any(|(s, _)| s == spec) {
                fields.push((spec.to_string(), Extract::parse(spec)?));
            }
        }
        let next = next.filter(|n| !n.is_empty()).map(Extract::parse).transpose()?;
        Ok(Self { items, fields, next })
    }

    /// Scrapes `body` (decoded as UTF-8; invalid sequences become U+FFFD). Refuses pages nested
    /// deeper than [`MAX_DEPTH`].
    pub fn scrape(&self, body: &[u8]) -> Result<Scraped, String> {
        if let Some(deep) = too_deep(body, MAX_DEPTH) {
            return Err(format!(
                "HTML nested deeper than {MAX_DEPTH} elements (at byte {}): refused unparsed, since parsing \
                 such pages takes time quadratic in the depth",
                deep.at
            ));
        }
        let doc = Html::parse_document(&String::from_utf8_lossy(body));
        let items = doc
            .select(&self.items)
            .map(|el| {
                let selected: Map<String, Value> = self
                    .fields
                    .iter()
                    .map(|(spec, x)| (spec.clone(), x.apply(el).map_or(Value::Null, Value::String)))
                    .collect();
                serde_json::json!({"text": text(el), "selected": selected})
            })
            .collect();
        let next = self.next.as_ref().and_then(|n| n.apply(doc.root_element())).filter(|n| !n.is_empty());
        Ok(Scraped { items, next })
    }
}

/// Deepest element nesting accepted. Real pages stay under a few hundred; Blink stops nesting at
/// 512. Checked by [`too_deep`], an estimate that can only err high, and by at most a small
/// factor (table rows, list items and paragraphs close themselves and are not counted, while
/// their `table`/`ul` parents are).
pub const MAX_DEPTH: usize = 2048;

/// Where a page went too deep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    /// Byte offset of the tag that crossed the limit.
    pub at: usize,
}

/// Elements that never have content.
const VOID: &[&str] = &[
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "img", "input", "keygen", "link",
    "meta", "param", "source", "track", "wbr",
];
/// Elements a parser closes when a sibling opens (`<li>…<li>`), so they do not nest by themselves.
const SELF_CLOSING_SIBLINGS: &[&str] = &[
    "p", "li", "dt", "dd", "option", "optgroup", "td", "th", "tr", "tbody", "thead", "tfoot", "rb", "rp", "rt", "rtc",
];
/// Elements whose content is text up to their end tag.
const RAW_TEXT: &[&str] =
    &["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "plaintext"];

/// A linear upper-bound estimate of the open-element depth `body` reaches, tracking open
/// elements the way the tree builder does in the cases that matter for nesting: an end tag closes
/// up to its element only if one is open (`</q>` with no `<q>` open closes nothing), `/>` closes
/// only inside `svg`/`math` (HTML ignores it: `<div/>` opens a `div`), void elements never open,
/// raw-text elements (`script`, `style`, …) are skipped to their end tag. `Some` when the depth
/// exceeds `limit`.
pub fn too_deep(body: &[u8], limit: usize) -> Option<TooDeep> {
    let mut stack: Vec<String> = Vec::new();
    let mut open: HashMap<String, usize> = HashMap::new();
    let find = |from: usize, needle: &[u8]| -> Option<usize> {
        body.get(from..)?.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle)).map(|p| from + p)
    };
    let mut i = 0;
    while let Some(lt) = body.get(i..).and_then(|b| b.iter().position(|&c| c == b'<')).map(|p| i + p) {
        let at = lt;
        i = lt + 1;
        match body.get(i) {
            Some(b'!') if body.get(i..i + 3) == Some(b"!--") => {
                i = find(i + 3, b"-->").map_or(body.len(), |p| p + 3);
                continue;
            }
            Some(b'!' | b'?') => {
                i = find(i, b">").map_or(body.len(), |p| p + 1);
                continue;
            }
            _ => {}
        }
        let closing = body.get(i) == Some(&b'/');
        if closing {
            i += 1;
        }
        let start = i;
        while body.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b':') {
            i += 1;
        }
        if i == start || !body[start].is_ascii_alphabetic() {
            continue; // `<` as text (`a < b`)
        }
        let name = String::from_utf8_lossy(&body[start..i]).to_ascii_lowercase();
        // The tag's end, quotes respected.
        let mut quote = None;
        while let Some(&c) = body.get(i) {
            i += 1;
            match (quote, c) {
                (None, b'"' | b'\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, b'>') => break,
                _ => {}
            }
        }
        let self_closed = body.get(..i).is_some_and(|b| b.ends_with(b"/>"));
        if closing {
            if let Some(n) = open.get_mut(&name).filter(|n| **n > 0) {
                *n -= 1;
                while let Some(top) = stack.pop() {
                    if top == name {
                        break;
                    }
                    if let Some(n) = open.get_mut(&top) {
                        *n -= 1;
                    }
                }
            }
            continue;
        }
        if VOID.contains(&name.as_str()) || SELF_CLOSING_SIBLINGS.contains(&name.as_str()) {
            continue;
        }
        let foreign = open.get("svg").is_some_and(|n| *n > 0) || open.get("math").is_some_and(|n| *n > 0);
        if self_closed && (foreign || name == "svg" || name == "math") {
            continue;
        }
        if RAW_TEXT.contains(&name.as_str()) {
            let end = format!("</{name}");
            i = find(i, end.as_bytes()).unwrap_or(body.len());
            continue;
        }
        *open.entry(name.clone()).or_default() += 1;
        stack.push(name);
        if stack.len() > limit {
            return Some(TooDeep { at });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
    use serde_json::json;

    use super::*;

    const PAGE: &str = r#"<!doctype html><html><body>
      <table id="calendar">
        <tr><th>When</th><th>Event</th><th>Actual</th></tr>
        <tr class="event" data-id="cpi-2024-01">
          <td class="when">2024-01-11</td>
          <td class="name"><a href="/e/cpi">CPI   &amp; core
             CPI</a></td>
          <td class="actual">3.4%</td>
        </tr>
        <tr class="event" data-id="nfp-2024-01"><td class="when">2024-01-05</td><td class="name">Payrolls</td></tr>
      </table>
      <a rel="next" href="?page=2">Next &raquo;</a>
    </body></html>"#;

    #[test]
    fn items_fields_attributes_and_next() {
        let plan = Plan::new(
            "tr.event",
            ["@data-id", "td.when", "td.name", "td.name a@href", "td.actual"],
            Some("a[rel=next]@href"),
        )
        .unwrap();
        let s = plan.scrape(PAGE.as_bytes()).unwrap();
        assert_eq!(s.next.as_deref(), Some("?page=2"));
        assert_eq!(s.items.len(), 2);
        assert_eq!(
            s.items[0],
            json!({"text": "2024-01-11 CPI & core CPI 3.4%", "selected": {
                "@data-id": "cpi-2024-01", "td.when": "2024-01-11", "td.name": "CPI & core CPI",
                "td.name a@href": "/e/cpi", "td.actual": "3.4%"}})
        );
        assert_eq!(s.items[1]["selected"]["td.actual"], Value::Null, "missing → null, not an empty string");
        assert_eq!(s.items[1]["selected"]["td.name a@href"], Value::Null);
    }

    #[test]
    fn extraction_specs() {
        assert!(Extract::parse("").is_err());
        assert!(Extract::parse("@").is_err());
        assert!(Extract::parse("a@hr ef").is_err());
        assert!(Extract::parse("td..x").is_err(), "bad selector");
        assert!(Extract::parse("div >").is_err());
        // `@` inside an attribute selector is part of the selector.
        let x = Extract::parse(r#"a[href^="mailto:ir@example.com"]"#).unwrap();
        assert!(x.attr.is_none() && x.selector.is_some());
        let x = Extract::parse(r#"a[href^="mailto:ir@example.com"]@href"#).unwrap();
        assert_eq!(x.attr.as_deref(), Some("href"));
        assert!(Plan::new("tr..", [], None).is_err());
    }

    #[test]
    fn garbage_and_broken_markup_do_not_fail() {
        let plan = Plan::new("li", ["b"], None).unwrap();
        let s = plan.scrape(b"<ul><li><b>one<li>two</ul></div></span>\xff\xfe<li>").unwrap();
        assert_eq!(s.items.len(), 3, "browser-style recovery: {s:?}");
        assert_eq!(s.items[0]["selected"]["b"], "one");
        assert_eq!(plan.scrape(b"").unwrap().items.len(), 0);
    }

    /// Pages nested past the limit are refused before parsing, including the ways to nest
    /// that a naive tag count misses; deep-looking pages that do not really nest pass.
    #[test]
    fn deep_nesting_is_refused_unparsed() {
        let plan = Plan::new("li", ["b"], None).unwrap();
        let over = MAX_DEPTH + 1;
        for (why, page) in [
            ("nested divs", "<div>".repeat(50_000)),
            ("`/>` is ignored on HTML elements", "<div/>".repeat(over)),
            ("end tags of elements not open close nothing", "<div></q>".repeat(over)),
            ("unclosed formatting elements", "<b>".repeat(over)),
            ("svg subtrees", "<svg><g>".repeat(over)),
            ("a `>` inside a quoted attribute", r#"<div title="a>b">"#.repeat(over)),
        ] {
            let err = plan.scrape(page.as_bytes()).unwrap_err();
            assert!(err.contains("nested deeper than 2048"), "{why}: {err}");
        }
        for (why, page) in [
            ("closed siblings", "<div><span>x</span></div>".repeat(20_000)),
            ("list items close each other", format!("<ul>{}</ul>", "<li>x".repeat(20_000))),
            ("paragraphs close each other", "<p>x".repeat(20_000)),
            ("void elements", "<br><img src=x>".repeat(20_000)),
            ("self-closing inside svg", format!("<svg>{}</svg>", "<path d='M0'/>".repeat(20_000))),
            (
                "tags inside scripts and comments",
                format!("<script>{}</script><!--{}-->", "<div>".repeat(20_000), "<div>".repeat(20_000)),
            ),
            ("text with `<`", "a < b <3 ".repeat(20_000)),
            ("deep but under the limit", "<div>".repeat(MAX_DEPTH - 8) + "<li><b>ok</b>"),
        ] {
            assert!(too_deep(page.as_bytes(), MAX_DEPTH).is_none(), "{why}");
            assert!(plan.scrape(page.as_bytes()).is_ok(), "{why}");
        }
        assert_eq!(
            plan.scrape(("<div>".repeat(MAX_DEPTH - 8) + "<li><b>ok</b>").as_bytes()).unwrap().items[0]["selected"]["b"],
            "ok"
        );
    }

    #[test]
    fn whole_document_when_no_item_selector() {
        let plan = Plan::new("", ["h1"], None).unwrap();
        let s = plan.scrape(b"<h1>Rates</h1><p>5.33</p>").unwrap();
        assert_eq!(s.items.len(), 1);
        assert_eq!(s.items[0]["selected"]["h1"], "Rates");
        assert_eq!(s.items[0]["text"], "Rates 5.33");
    }
}
