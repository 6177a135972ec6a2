//! US equity venues: readable name and ISO 10383 MIC for the providers' exchange codes.
//!
//! Polygon/Massive stocks send a numeric exchange id (`"x":4`) from its `/v3/reference/exchanges`
//! list; Alpaca sends the single-letter CTA/UTP participant code (`"x":"D"`). Polygon's list
//! carries the same participant code per id (`{"id":1,"mic":"XASE","participant_id":"A",…}`),
//! so one table serves both. An unknown code keeps its raw value in `exchange_code` and gets no
//! name: never a guess.

/// A venue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Venue {
    /// Readable name, as in our records (`NASDAQ`).
    pub(crate) name: &'static str,
    /// ISO 10383 MIC.
    pub(crate) mic: &'static str,
}

/// (Polygon id, participant code, venue).
const VENUES: &[(u16, u8, Venue)] = &[
    (1, b'A', Venue { name: "NYSE American", mic: "XASE" }),
    (2, b'B', Venue { name: "Nasdaq BX", mic: "XBOS" }),
    (3, b'C', Venue { name: "NYSE National", mic: "XCIS" }),
    (4, b'D', Venue { name: "FINRA ADF", mic: "XADF" }),
    (6, b'I', Venue { name: "Nasdaq ISE", mic: "XISE" }),
    (7, b'J', Venue { name: "Cboe EDGA", mic: "EDGA" }),
    (8, b'K', Venue { name: "Cboe EDGX", mic: "EDGX" }),
    (9, b'M', Venue { name: "NYSE Chicago", mic: "XCHI" }),
    (10, b'N', Venue { name: "NYSE", mic: "XNYS" }),
    (11, b'P', Venue { name: "NYSE Arca", mic: "ARCX" }),
    (12, b'T', Venue { name: "NASDAQ", mic: "XNAS" }),
    (14, b'L', Venue { name: "LTSE", mic: "LTSE" }),
    (15, b'V', Venue { name: "IEX", mic: "IEXG" }),
    (17, b'X', Venue { name: "Nasdaq PSX", mic: "XPHL" }),
    (18, b'Y', Venue { name: "Cboe BYX", mic: "BATY" }),
    (19, b'Z', Venue { name: "Cboe BZX", mic: "BATS" }),
    (20, b'H', Venue { name: "MIAX Pearl", mic: "EPRL" }),
    (21, b'U', Venue { name: "MEMX", mic: "MEMX" }),
];

/// Participant codes with no Polygon id of their own: Nasdaq reports UTP-listed trades as `Q`
/// (`T` on the CTA tape, Polygon's id 12).
const PARTICIPANT_ONLY: &[(u8, Venue)] = &[(b'Q', Venue { name: "NASDAQ", mic: "XNAS" })];

/// The venue of a Polygon stocks exchange id.
pub(crate) fn by_polygon_id(id: i64) -> Option<Venue> {
    VENUES.iter().find(|(pid, _, _)| i64::from(*pid) == id).map(|(_, _, v)| *v)
}

/// The venue of a participant code (Alpaca's `x`).
pub(crate) fn by_participant(code: &str) -> Option<Venue> {
    match code.as_bytes() {
        [c] => VENUES
            .iter()
            .find(|(_, p, _)| p == c)
            .map(|(_, _, v)| *v)
            .or_else(|| PARTICIPANT_ONLY.iter().find(|(p, _)| p == c).map(|(_, v)| *v)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_map_to_name_and_mic() {
        let cases: &[(i64, &str, &str, &str)] = &[
            (1, "A", "NYSE American", "XASE"),
            (10, "N", "NYSE", "XNYS"),
            (12, "T", "NASDAQ", "XNAS"),
            (11, "P", "NYSE Arca", "ARCX"),
            (15, "V", "IEX", "IEXG"),
            (19, "Z", "Cboe BZX", "BATS"),
        ];
        for (id, letter, name, mic) in cases {
            let want = Some(Venue { name, mic });
            assert_eq!(by_polygon_id(*id), want, "polygon {id}");
            assert_eq!(by_participant(letter), want, "participant {letter}");
        }
    }

    #[test]
    fn unknown_codes_have_no_venue() {
        assert_eq!(by_polygon_id(999), None);
        assert_eq!(by_polygon_id(-1), None);
        assert_eq!(by_participant("Q"), by_polygon_id(12), "Nasdaq's UTP code");
        assert_eq!(by_participant("?"), None);
        assert_eq!(by_participant("QQ"), None);
        assert_eq!(by_participant(""), None);
    }

    #[test]
    fn table_has_no_duplicate_keys() {
        for (i, (id, p, _)) in VENUES.iter().enumerate() {
            assert!(VENUES[i + 1..].iter().all(|(id2, p2, _)| id2 != id && p2 != p), "duplicate {id}/{}", *p as char);
        }
    }
}
