//! The EDGAR current-filings Atom feed (docs/providers.md, SEC EDGAR): bytes → entries → one filing per
//! accession number.
//!
//! - The feed declares `ISO-8859-1`; it is decoded byte for byte (every byte is a code point).
//! - Hostile XML is refused before any entity is looked at: a document with a `<!DOCTYPE>`
//!   (where entity declarations, and so "billion laughs" expansions, live) is an error; the
//!   parser (quick-xml) expands only the five predefined entities and character references.
//!   Documents are capped by the HTTP body limit and entries by [`MAX_ENTRIES`].
//! - One filing appears as several entries, one per party (Issuer + Reporting, Subject +
//!   Filed by): they are merged by accession number, parties in feed order.
//! - Titles are `<FORM> - <NAME> (<CIK>) (<Role>)`; forms contain spaces and slashes and names
//!   contain ` - ` and parentheses, so the form ends at the first ` - ` and CIK and role are
//!   read from the end.

use chrono::{DateTime, Utc};
use ingest_core::record::{FilingParty, SecFiling};
use quick_xml::Reader;
use quick_xml::events::Event;

/// Most entries read from one feed page (a real page has at most 100).
pub const MAX_ENTRIES: usize = 1_000;

/// Provider label.
pub const PROVIDER: &str = "sec-edgar";

/// One `<entry>` as the feed gives it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    /// `<title>`.
    pub title: String,
    /// `<link href>`: the filing index page of this party's copy.
    pub link: String,
    /// `<summary>` (the HTML, unescaped once).
    pub summary: String,
    /// `<updated>`: acceptance time with its US/Eastern offset.
    pub updated: String,
    /// `<category term>`: the form type.
    pub form: String,
    /// `<id>`: `urn:tag:sec.gov,2008:accession-number=…`.
    pub id: String,
}

/// Decodes ISO-8859-1 (each byte is the code point of the same value).
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Parses a feed page into entries.
pub fn entries(body: &[u8]) -> Result<Vec<Entry>, String> {
    let text = if std::str::from_utf8(body).is_ok_and(|s| !declares_latin1(s)) {
        String::from_utf8_lossy(body).into_owned()
    } else {
        latin1(body)
    };
    let mut reader = Reader::from_str(&text);
    let mut out = Vec::new();
    let mut cur: Option<Entry> = None;
    let mut field: Option<&'static str> = None;
    let mut saw_feed = false;
    loop {
        match reader.read_event().map_err(|e| format!("malformed XML at byte {}: {e}", reader.buffer_position()))? {
            Event::DocType(_) => {
                return Err("refused: the document has a DOCTYPE (entity declarations are not accepted)".into());
            }
            Event::Start(e) | Event::Empty(e) => {
                let name = e.local_name();
                match name.as_ref() {
                    b"feed" => saw_feed = true,
                    b"entry" => {
                        if out.len() >= MAX_ENTRIES {
                            return Err(format!("more than {MAX_ENTRIES} entries"));
                        }
                        cur = Some(Entry::default());
                    }
                    tag => {
                        if let Some(entry) = cur.as_mut() {
                            let attr = |k: &[u8]| -> Option<String> {
                                e.attributes().flatten().find(|a| a.key.as_ref() == k).and_then(|a| {
                                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0).ok().map(|v| v.into_owned())
                                })
                            };
                            match tag {
                                b"link" => entry.link = attr(b"href").unwrap_or_default(),
                                b"category" => entry.form = attr(b"term").unwrap_or_default(),
                                b"title" => field = Some("title"),
                                b"summary" => field = Some("summary"),
                                b"updated" => field = Some("updated"),
                                b"id" => field = Some("id"),
                                _ => {}
                            }
                        }
                    }
                }
            }
            Event::Text(t) => {
                if let (Some(entry), Some(f)) = (cur.as_mut(), field) {
                    let v = t.decode().map_err(|e| format!("bad text in <{f}>: {e}"))?;
                    slot(entry, f).push_str(&v);
                }
            }
            // `&lt;` and friends arrive apart from the text: only the five XML entities and
            // character references are known; anything else is refused, never expanded.
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| format!("bad entity reference: {e}"))?;
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref().ok().flatten().map(String::from)
                } else {
                    quick_xml::escape::resolve_xml_entity(&name).map(String::from)
                };
                let text = resolved.ok_or_else(|| format!("refused: unknown entity `&{name};`"))?;
                if let (Some(entry), Some(f)) = (cur.as_mut(), field) {
                    slot(entry, f).push_str(&text);
                }
            }
            Event::CData(t) => {
                if let (Some(entry), Some("summary")) = (cur.as_mut(), field) {
                    entry.summary.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"entry" => {
                    if let Some(mut entry) = cur.take() {
                        for f in [&mut entry.title, &mut entry.summary, &mut entry.updated, &mut entry.id] {
                            *f = f.trim().to_string();
                        }
                        out.push(entry);
                    }
                }
                _ => field = None,
            },
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_feed {
        return Err("not an Atom feed (no <feed> element)".into());
    }
    Ok(out)
}

fn slot<'e>(entry: &'e mut Entry, field: &str) -> &'e mut String {
    match field {
        "title" => &mut entry.title,
        "summary" => &mut entry.summary,
        "updated" => &mut entry.updated,
        _ => &mut entry.id,
    }
}

/// Whether the XML declaration (in the first 100 bytes) names a Latin-1 encoding. Bytes, not
/// `str` slicing: byte 100 may fall inside a character (a panic, found by the fuzzer).
fn declares_latin1(s: &str) -> bool {
    let head = s.as_bytes()[..s.len().min(100)].to_ascii_lowercase();
    let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    head.starts_with(b"<?xml") && (has(b"iso-8859-1") || has(b"windows-1252"))
}

/// `<FORM> - <NAME> (<CIK>) (<Role>)` → (form, name, 10-digit CIK, role).
pub fn parse_title(title: &str) -> Result<(String, String, String, String), String> {
    let bad = || format!("title is not `FORM - NAME (CIK) (Role)`: {title:?}");
    let (form, rest) = title.split_once(" - ").ok_or_else(bad)?;
    let rest = rest.trim_end();
    let rest = rest.strip_suffix(')').ok_or_else(bad)?;
    let open = rest.rfind('(').ok_or_else(bad)?;
    let role = rest[open + 1..].trim().to_string();
    let rest = rest[..open].trim_end().strip_suffix(')').ok_or_else(bad)?;
    let open = rest.rfind('(').ok_or_else(bad)?;
    let cik = rest[open + 1..].trim();
    if cik.is_empty() || cik.len() > 10 || !cik.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let name = rest[..open].trim().to_string();
    if name.is_empty() || role.is_empty() || form.trim().is_empty() {
        return Err(bad());
    }
    Ok((form.trim().to_string(), name, format!("{cik:0>10}"), role))
}

/// `urn:tag:sec.gov,2008:accession-number=0001493152-25-027595` → the accession number.
pub fn accession(id: &str, summary: &str) -> Option<String> {
    id.rsplit_once("accession-number=")
        .map(|(_, a)| a.trim().to_string())
        .or_else(|| {
            summary.split("AccNo:").nth(1).map(|s| strip_tags(s).split_whitespace().next().unwrap_or("").to_string())
        })
        .filter(|a| a.len() == 20)
}

fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// 8-K items from the summary's `Item 2.02: …` lines.
pub fn items(summary: &str) -> Vec<String> {
    let text = strip_tags(&summary.replace("<br>", "\n"));
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.trim().strip_prefix("Item ")
            && let Some((num, _)) = rest.split_once(':')
        {
            let num = num.trim();
            if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !out.iter().any(|i| i == num)
            {
                out.push(num.to_string());
            }
        }
    }
    out
}

/// Role priority for the primary party: the company the filing is about.
fn role_rank(role: &str) -> u8 {
    match role.to_ascii_lowercase().as_str() {
        "filer" => 0,
        "issuer" => 1,
        "subject" => 2,
        "filed by" => 3,
        "reporting" => 4,
        _ => 5,
    }
}

/// Merges a page's entries into filings (one per accession number, in feed order). Entries
/// that cannot be read are returned apart with the reason.
pub fn filings(entries: &[Entry], received_at: DateTime<Utc>) -> (Vec<SecFiling>, Vec<(Entry, String)>) {
    let mut out: Vec<SecFiling> = Vec::new();
    let mut bad = Vec::new();
    for e in entries {
        let parsed = (|| {
            let (form, name, cik, role) = parse_title(&e.title)?;
            let acc = accession(&e.id, &e.summary).ok_or("no accession number in <id> or the summary")?;
            let filed_at = DateTime::parse_from_rfc3339(e.updated.trim())
                .map_err(|err| format!("`updated` is not an RFC 3339 time ({err}): {:?}", e.updated))?
                .with_timezone(&Utc);
            let form = if e.form.trim().is_empty() { form } else { e.form.trim().to_string() };
            Ok::<_, String>((acc, form, FilingParty { cik, name, role: role.to_lowercase() }, filed_at))
        })();
        let (acc, form, party, filed_at) = match parsed {
            Ok(p) => p,
            Err(reason) => {
                bad.push((e.clone(), reason));
                continue;
            }
        };
        if let Some(f) = out.iter_mut().find(|f| f.accession_number == acc) {
            if !f.parties.contains(&party) {
                f.parties.push(party.clone());
            }
            if role_rank(&party.role) < role_rank(&primary_role(f)) {
                (f.cik, f.company_name, f.url) = (party.cik.clone(), party.name.clone(), e.link.clone());
            }
            continue;
        }
        out.push(SecFiling {
            accession_number: acc,
            cik: party.cik.clone(),
            company_name: party.name.clone(),
            form_type: form,
            filed_at,
            url: e.link.clone(),
            items: items(&e.summary),
            parties: vec![party],
            provider: PROVIDER.into(),
            received_at,
        });
    }
    (out, bad)
}

fn primary_role(f: &SecFiling) -> String {
    f.parties.iter().find(|p| p.cik == f.cik).map(|p| p.role.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
