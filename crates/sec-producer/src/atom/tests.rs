use chrono::TimeZone;

use super::*;

fn fixture() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/test_data/current_8k_4_13d.atom")).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 12, 12, 23, 5, 0).unwrap()
}

#[test]
fn a_feed_page_becomes_one_filing_per_accession_number() {
    let es = entries(&fixture()).unwrap();
    assert_eq!(es.len(), 5);
    let (fs, bad) = filings(&es, now());
    assert_eq!(fs.len(), 3, "{fs:#?}");
    assert_eq!(bad.len(), 1);
    assert!(bad[0].1.contains("title"), "{}", bad[0].1);

    let k = &fs[0];
    assert_eq!(k.accession_number, "0001493152-25-027595");
    assert_eq!(
        (k.cik.as_str(), k.company_name.as_str(), k.form_type.as_str()),
        ("0001083743", "Flux Power Holdings, Inc.", "8-K")
    );
    assert_eq!(k.filed_at, Utc.with_ymd_and_hms(2025, 12, 12, 22, 31, 8).unwrap(), "-05:00 converted to UTC");
    assert_eq!(
        k.url,
        "https://www.sec.gov/Archives/edgar/data/1083743/000149315225027595/0001493152-25-027595-index.htm"
    );
    assert_eq!(k.items, ["8.01", "9.01"]);
    assert_eq!(
        k.parties,
        [FilingParty { cik: "0001083743".into(), name: "Flux Power Holdings, Inc.".into(), role: "filer".into() }]
    );
    assert_eq!(k.provider, "sec-edgar");

    // Form 4: the reporting person and the issuer are two entries of one filing; the issuer is
    // the primary party whatever the order.
    let four = &fs[1];
    assert_eq!(four.accession_number, "0002063236-25-000004");
    assert_eq!((four.cik.as_str(), four.company_name.as_str()), ("0001673743", "Hinge Health, Inc."));
    assert!(four.url.contains("/data/1673743/"), "{}", four.url);
    assert_eq!(four.parties.len(), 2);
    assert_eq!(
        four.parties[0],
        FilingParty { cik: "0002063236".into(), name: "Perez Daniel Antonio".into(), role: "reporting".into() }
    );
    assert_eq!(four.parties[1].role, "issuer");
    assert!(four.items.is_empty());

    // ISO-8859-1 decoded; the name keeps its " - " and parentheses; the form keeps its slash.
    let d = &fs[2];
    assert_eq!(d.form_type, "SCHEDULE 13D/A");
    assert_eq!(d.company_name, "Société Générale - Holdings (Europe) S.A.");
    assert_eq!(d.cik, "0000123456");
    assert_eq!(d.filed_at, Utc.with_ymd_and_hms(2025, 6, 2, 13, 15, 0).unwrap(), "-04:00 (EDT) converted");
}

#[test]
fn entities_keep_their_surrounding_spaces() {
    let feed = br#"<feed xmlns="http://www.w3.org/2005/Atom"><entry>
<title>8-K - Johnson &amp; Johnson &#x2014; Consumer (0000200406) (Filer)</title>
<updated>2025-12-12T17:31:08-05:00</updated>
<id>urn:tag:sec.gov,2008:accession-number=0000200406-25-000001</id></entry></feed>"#;
    let es = entries(feed).unwrap();
    assert_eq!(es[0].title, "8-K - Johnson & Johnson \u{2014} Consumer (0000200406) (Filer)");
    let (fs, _) = filings(&es, now());
    assert_eq!(fs[0].company_name, "Johnson & Johnson \u{2014} Consumer");
}

#[test]
fn titles_are_read_from_both_ends() {
    assert_eq!(
        parse_title("SC 13G/A - ACME - Widgets (Holdings) Inc (0000000042) (Filed by)").unwrap(),
        ("SC 13G/A".into(), "ACME - Widgets (Holdings) Inc".into(), "0000000042".into(), "Filed by".into())
    );
    assert_eq!(parse_title("4 - Doe John (123) (Reporting)").unwrap().2, "0000000123", "CIK zero-padded");
    for bad in
        ["8-K Flux (0001083743) (Filer)", "8-K - Flux (abc) (Filer)", "8-K - Flux (0001083743)", "8-K - (1) (Filer)"]
    {
        assert!(parse_title(bad).is_err(), "{bad}");
    }
}

#[test]
fn hostile_and_malformed_xml_is_refused() {
    let bomb = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<feed xmlns="http://www.w3.org/2005/Atom"><entry><title>&lol3;</title></entry></feed>"#;
    assert!(entries(bomb).unwrap_err().contains("DOCTYPE"));
    let external = br#"<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><feed><entry><title>&xxe;</title></entry></feed>"#;
    assert!(entries(external).unwrap_err().contains("DOCTYPE"));
    let undeclared = br#"<feed xmlns="http://www.w3.org/2005/Atom"><entry><title>&xxe;</title></entry></feed>"#;
    assert!(entries(undeclared).is_err(), "an unknown entity is an error, never expanded");
    assert!(entries(b"<html><body>This page is temporarily unavailable</body></html>").unwrap_err().contains("Atom"));
    assert!(entries(b"<feed><entry><title>x</entry></feed>").is_err(), "mismatched tags");
    let many = format!("<feed>{}</feed>", "<entry><title>t</title></entry>".repeat(MAX_ENTRIES + 1));
    assert!(entries(many.as_bytes()).unwrap_err().contains("entries"));
}

/// Found by `make fuzz` (sec_feed): a UTF-8 page with a character across byte 100 made the
/// encoding sniffing slice a `str` inside it and panic. Now an ordinary malformed-XML error,
/// and a well-formed page with such a character parses.
#[test]
fn a_character_across_the_sniffed_prefix_is_not_a_panic() {
    let crash = b"<\x03\x04\x01\x04 version=\"1.0p+daded>20<b5-1entry>\n<<entry>\n<title>1<updaded>20<b5-0entry>\nKKKKKKKKKKKKKKKKKK<\xda\x99eed>\n";
    assert!(entries(crash).is_err());
    let mut page =
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><feed xmlns=\"http://www.w3.org/2005/Atom\"><entry><title>"
            .to_vec();
    page.resize(99, b'x');
    page.extend_from_slice("é (0000000001) (Filer)</title></entry></feed>".as_bytes());
    let e = entries(&page).unwrap();
    assert!(e[0].title.ends_with("é (0000000001) (Filer)"), "{:?}", e[0].title);
    assert!(!declares_latin1(std::str::from_utf8(&page).unwrap()));
    assert!(declares_latin1("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><feed/>"));
}
