//! `data.sec.gov/submissions/CIK##########.json` as a poller, one per configured CIK: the
//! company's recent filings (columnar arrays, newest first) and, with backfill on, the older
//! pages listed in `filings.files[]` (the same arrays at the top level), once.
//!
//! Filings also seen in the current-filings feed share the group's dedup window (key: the
//! accession number), so each is one record. `acceptanceDateTime` ends in `Z` but is the New
//! York clock for some filers (docs/providers.md, SEC EDGAR); it is taken as given (UTC) and the feed's
//! offset-carrying time wins for filings seen there first.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ingest_core::http::HttpResponse;
use ingest_core::record::{FilingParty, SecFiling};
use ingest_core::resilience::{ErrorClass, classify_http};
use ingest_core::source::{Normalized, Poller, Reject};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::feed::{PROVIDER, classify_403, fatal_message};

/// Filings with their raw rows, and the rows that could not be read.
type Rows = (Vec<(SecFiling, Vec<u8>)>, Vec<Reject>);

/// Where the next poll starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Older pages still to read (`files[].name`), in order.
    pub pending: Vec<String>,
    /// The older pages were listed once (backfill happens once per CIK).
    pub backfilled: bool,
    /// The company's name (older pages do not repeat it).
    pub company: String,
}

/// The submissions poller of one CIK.
#[derive(Debug, Clone)]
pub struct Submissions {
    name: String,
    data_url: String,
    archives_url: String,
    cik: String,
    forms: Vec<String>,
    backfill: bool,
    interval: Duration,
    block: Duration,
}

impl Submissions {
    /// A poller of `cik` (any number of digits; zero-padded to 10). `forms` filters (empty: all).
    pub fn new(
        data_url: &str,
        archives_url: &str,
        cik: &str,
        forms: Vec<String>,
        backfill: bool,
        interval: Duration,
        block: Duration,
    ) -> Self {
        let cik = format!("{cik:0>10}");
        Self {
            name: format!("sec:submissions:{cik}"),
            data_url: data_url.trim_end_matches('/').to_string(),
            archives_url: archives_url.trim_end_matches('/').to_string(),
            cik,
            forms,
            backfill,
            interval,
            block,
        }
    }

    fn rows(&self, cols: &Value, company: &str, received_at: DateTime<Utc>) -> Result<Rows, String> {
        let col = |k: &str| cols.get(k).and_then(Value::as_array).ok_or_else(|| format!("no `{k}` array"));
        let acc = col("accessionNumber")?;
        let form = col("form")?;
        let accepted = col("acceptanceDateTime")?;
        let items = cols.get("items").and_then(Value::as_array);
        if form.len() != acc.len() || accepted.len() != acc.len() {
            return Err("the columnar arrays have different lengths".into());
        }
        let cik_digits = self.cik.trim_start_matches('0');
        let (mut records, mut rejects) = (Vec::new(), Vec::new());
        for i in 0..acc.len() {
            let row = serde_json::json!({"accessionNumber": acc[i], "form": form[i], "acceptanceDateTime": accepted[i],
                                         "items": items.and_then(|it| it.get(i))});
            let raw = row.to_string().into_bytes();
            let (Some(a), Some(f), Some(t)) = (acc[i].as_str(), form[i].as_str(), accepted[i].as_str()) else {
                rejects.push(Reject { raw, reason: "a field of the row is not a string".into() });
                continue;
            };
            if !self.forms.is_empty() && !self.forms.iter().any(|x| x == f) {
                continue;
            }
            let filed_at = match DateTime::parse_from_rfc3339(t) {
                Ok(t) => t.with_timezone(&Utc),
                Err(e) => {
                    rejects.push(Reject { raw, reason: format!("`acceptanceDateTime` is not RFC 3339 ({e})") });
                    continue;
                }
            };
            let its: Vec<String> = items
                .and_then(|it| it.get(i))
                .and_then(Value::as_str)
                .map(|s| s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(String::from).collect())
                .unwrap_or_default();
            let url =
                format!("{}/Archives/edgar/data/{cik_digits}/{}/{a}-index.htm", self.archives_url, a.replace('-', ""));
            let filing = SecFiling {
                accession_number: a.to_string(),
                cik: self.cik.clone(),
                company_name: company.to_string(),
                form_type: f.to_string(),
                filed_at,
                url,
                items: its,
                parties: vec![FilingParty { cik: self.cik.clone(), name: company.to_string(), role: "filer".into() }],
                provider: PROVIDER.into(),
                received_at,
            };
            records.push((filing, raw));
        }
        Ok((records, rejects))
    }
}

impl Poller for Submissions {
    type Record = SecFiling;
    type Cursor = Cursor;

    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> &str {
        PROVIDER
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn request(&self, client: &reqwest::Client, cursor: &Cursor) -> reqwest::RequestBuilder {
        let file = cursor.pending.first().cloned().unwrap_or_else(|| format!("CIK{}.json", self.cik));
        client.get(format!("{}/submissions/{file}", self.data_url))
    }

    fn classify(&self, resp: &HttpResponse, _cursor: &Cursor) -> Option<ErrorClass> {
        match resp.status {
            403 => Some(classify_403(&resp.body, self.block)),
            s => classify_http(s, resp.header("retry-after"), std::time::SystemTime::now()),
        }
    }

    fn fatal_message(&self, what: &str, _resp: Option<&HttpResponse>) -> String {
        fatal_message(what)
    }

    fn normalize(&self, resp: &HttpResponse, cursor: &Cursor) -> Result<Normalized<SecFiling, Cursor>, String> {
        let v: Value = serde_json::from_slice(&resp.body).map_err(|e| format!("malformed submissions JSON: {e}"))?;
        let mut next = cursor.clone();
        let (records, rejects) = if cursor.pending.is_empty() {
            let company = v.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let recent = v.pointer("/filings/recent").ok_or("no `filings.recent`")?;
            next.company.clone_from(&company);
            if self.backfill && !cursor.backfilled {
                next.pending = v
                    .pointer("/filings/files")
                    .and_then(Value::as_array)
                    .map(|fs| fs.iter().filter_map(|f| f.get("name")?.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                next.backfilled = true;
            }
            self.rows(recent, &company, resp.received_at)?
        } else {
            next.pending.remove(0);
            self.rows(&v, &cursor.company, resp.received_at)?
        };
        let more = !next.pending.is_empty();
        Ok(Normalized { records, rejects, cursor: next, more, cut: None, refused: None })
    }
}
