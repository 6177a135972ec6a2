//! `sec.filing/v1`: one EDGAR filing (one record per accession number, with all parties).
//!
//! ```json
//! {"accession_number":"0001104659-24-000123","cik":"0000320193","company_name":"Apple Inc.",
//!  "form_type":"8-K","filed_at":"2024-01-02T21:05:12Z",
//!  "url":"https://www.sec.gov/Archives/edgar/data/320193/000110465924000123/","items":["2.02","9.01"],
//!  "parties":[{"cik":"0000320193","name":"Apple Inc.","role":"filer"}],
//!  "provider":"sec-edgar","received_at":"2024-01-02T21:05:40.3Z"}
//! ```

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Record, TopicKind, ValidationError, check, ts};

/// A company or person named on a filing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilingParty {
    /// Ten-digit, zero-padded CIK.
    pub cik: String,
    /// Name as EDGAR gives it.
    pub name: String,
    /// `filer`, `subject`, `reporting`, `filed by`, … as the feed labels it.
    pub role: String,
}

/// A normalized SEC filing (docs/contracts.md, Records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecFiling {
    /// `##########-##-######`; Kafka key.
    pub accession_number: String,
    /// Ten-digit, zero-padded CIK of the primary filer.
    pub cik: String,
    /// Primary filer's name.
    pub company_name: String,
    /// `10-K`, `8-K`, `4`, …
    pub form_type: String,
    /// Acceptance time.
    #[serde(with = "ts")]
    pub filed_at: DateTime<Utc>,
    /// Filing index URL.
    pub url: String,
    /// 8-K items, when given.
    #[serde(default)]
    pub items: Vec<String>,
    /// Every party of the filing.
    #[serde(default)]
    pub parties: Vec<FilingParty>,
    /// `sec-edgar`.
    pub provider: String,
    /// When we received it.
    #[serde(with = "ts")]
    pub received_at: DateTime<Utc>,
}

/// `0001104659-24-000123`: 10 digits, 2 digits, 6 digits.
pub(crate) fn is_accession_number(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b[10] == b'-'
        && b[13] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 10 || i == 13 || c.is_ascii_digit())
}

fn is_cik(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|c| c.is_ascii_digit())
}

impl Record for SecFiling {
    const SCHEMA: &'static str = "sec.filing/v1";
    const TOPIC: TopicKind = TopicKind::SecFilings;

    fn key(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.accession_number)
    }
    fn provider(&self) -> &str {
        &self.provider
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.filed_at
    }
    fn received_at(&self) -> DateTime<Utc> {
        self.received_at
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if !is_accession_number(&self.accession_number) {
            return Err(ValidationError::new("accession_number", "must be ##########-##-######"));
        }
        if !is_cik(&self.cik) {
            return Err(ValidationError::new("cik", "must be 10 digits, zero-padded"));
        }
        check::non_empty("company_name", &self.company_name)?;
        check::non_empty("form_type", &self.form_type)?;
        check::event_time("filed_at", self.filed_at, self.received_at)?;
        check::http_url("url", &self.url)?;
        if self.parties.iter().any(|p| !is_cik(&p.cik)) {
            return Err(ValidationError::new("parties", "every party needs a 10-digit CIK"));
        }
        check::non_empty("provider", &self.provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testutil::t0;

    fn filing() -> SecFiling {
        SecFiling {
            accession_number: "0001104659-24-000123".into(),
            cik: "0000320193".into(),
            company_name: "Apple Inc.".into(),
            form_type: "8-K".into(),
            filed_at: t0(),
            url: "https://www.sec.gov/Archives/edgar/data/320193/000110465924000123/".into(),
            items: vec!["2.02".into()],
            parties: vec![FilingParty { cik: "0000320193".into(), name: "Apple Inc.".into(), role: "filer".into() }],
            provider: "sec-edgar".into(),
            received_at: t0(),
        }
    }

    #[test]
    fn validation_table() {
        assert_eq!(filing().validate(), Ok(()));
        type Mutate = fn(&mut SecFiling);
        let cases: &[(&str, Mutate)] = &[
            ("accession_number", |f| f.accession_number = "0001104659-24-00012".into()),
            ("accession_number", |f| f.accession_number = "000110465a-24-000123".into()),
            ("cik", |f| f.cik = "320193".into()),
            ("form_type", |f| f.form_type.clear()),
            ("parties", |f| f.parties[0].cik = "x".into()),
        ];
        for (field, mutate) in cases {
            let mut f = filing();
            mutate(&mut f);
            assert_eq!(f.validate().expect_err(field).field, *field);
        }
    }
}
