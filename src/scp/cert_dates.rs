//! When our own TLS certificate stops being valid, read from its DER encoding.
//!
//! rustls checks the dates of the certificates peers show us, never of the one we show: a
//! daemon whose certificate has lapsed keeps serving it, and every modality that checks dates
//! refuses the handshake. Hospitals renew these yearly by hand, so the daemon says, at start,
//! at each reload and once a day, how long is left. Only the few fields before `validity` are
//! walked (RFC 5280 §4.1), which needs no X.509 library.

use chrono::{DateTime, NaiveDateTime, Utc};

/// The universal tags this walk meets.
const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `version [0] EXPLICIT`, absent in v1 certificates.
const VERSION: u8 = 0xa0;

/// The certificate's `notAfter`: the last moment it is valid.
pub(crate) fn not_after(der: &[u8]) -> Result<DateTime<Utc>, String> {
    let (cert, _) = expect(der, SEQUENCE, "Certificate")?;
    let (tbs, _) = expect(cert, SEQUENCE, "TBSCertificate")?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature, issuer
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (validity, _) = expect(rest, SEQUENCE, "Validity")?;
    let (_, _, after_not_before) = element(validity)?;
    let (tag, not_after, _) = element(after_not_before)?;
    time(tag, not_after)
}

/// A DER element at the start of `input`, which must carry `tag`: its contents and what follows.
fn expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), String> {
    match element(input)? {
        (t, contents, rest) if t == tag => Ok((contents, rest)),
        (t, _, _) => Err(format!("{what}: tag {t:#04x}, expected {tag:#04x}")),
    }
}

/// The tag, contents and remainder of the DER element at the start of `input` (single-byte
/// tags and definite lengths only, which is all DER allows in these fields).
fn element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let truncated = || "truncated DER".to_string();
    let (&tag, rest) = input.split_first().ok_or_else(truncated)?;
    let (&first, rest) = rest.split_first().ok_or_else(truncated)?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(format!("bad DER length form {first:#04x}"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(truncated());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// A `Time` (RFC 5280 §4.1.2.5): UTCTime `YYMMDDHHMMSSZ`, whose years 50–99 are 19xx, or
/// GeneralizedTime `YYYYMMDDHHMMSSZ`; the lengths are checked because chrono accepts a field
/// with fewer digits.
fn time(tag: u8, bytes: &[u8]) -> Result<DateTime<Utc>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "a time that is not ASCII".to_string())?;
    let full = match (tag, text.len()) {
        (UTC_TIME, 13) => {
            let yy: u32 = text
                .get(..2)
                .and_then(|y| y.parse().ok())
                .ok_or_else(|| format!("bad UTCTime {text:?}"))?;
            format!("{}{text}", if yy >= 50 { "19" } else { "20" })
        }
        (GENERALIZED_TIME, 15) => text.to_string(),
        (UTC_TIME | GENERALIZED_TIME, _) => return Err(format!("bad certificate time {text:?}")),
        (other, _) => return Err(format!("Time: tag {other:#04x}")),
    };
    NaiveDateTime::parse_from_str(&full, "%Y%m%d%H%M%SZ")
        .map(|t| t.and_utc())
        .map_err(|_| format!("bad certificate time {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DER element of `tag` around `contents` (short or long length form).
    fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if contents.len() < 0x80 {
            out.push(contents.len() as u8);
        } else {
            out.push(0x82);
            out.extend((contents.len() as u16).to_be_bytes());
        }
        out.extend(contents);
        out
    }

    /// A certificate skeleton: what the walk reads, with filler where it only skips, and an
    /// issuer long enough to need the long length form.
    fn certificate(version: bool, not_after: (u8, &str)) -> Vec<u8> {
        let mut tbs = Vec::new();
        if version {
            tbs.extend(der(VERSION, &der(0x02, &[2])));
        }
        tbs.extend(der(0x02, &[0x01, 0x23]));
        tbs.extend(der(SEQUENCE, &der(0x06, &[0x2a, 0x86, 0x48])));
        tbs.extend(der(SEQUENCE, &[0x31; 200]));
        let validity = [
            der(UTC_TIME, b"250101000000Z"),
            der(not_after.0, not_after.1.as_bytes()),
        ]
        .concat();
        tbs.extend(der(SEQUENCE, &validity));
        tbs.extend(der(SEQUENCE, &[0; 10]));
        der(
            SEQUENCE,
            &[der(SEQUENCE, &tbs), der(0x03, &[0; 5])].concat(),
        )
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn reads_utc_time_and_generalized_time() {
        let cert = certificate(true, (UTC_TIME, "271231235959Z"));
        assert_eq!(not_after(&cert).unwrap(), utc("2027-12-31T23:59:59Z"));
        let cert = certificate(false, (GENERALIZED_TIME, "20510630120000Z"));
        assert_eq!(not_after(&cert).unwrap(), utc("2051-06-30T12:00:00Z"));
    }

    #[test]
    fn utc_time_years_from_50_are_the_twentieth_century() {
        let cert = certificate(true, (UTC_TIME, "500101000000Z"));
        assert_eq!(not_after(&cert).unwrap(), utc("1950-01-01T00:00:00Z"));
        let cert = certificate(true, (UTC_TIME, "491231000000Z"));
        assert_eq!(not_after(&cert).unwrap(), utc("2049-12-31T00:00:00Z"));
    }

    #[test]
    fn damaged_input_is_an_error_not_a_panic() {
        let cert = certificate(true, (UTC_TIME, "271231235959Z"));
        for len in 0..cert.len() {
            assert!(not_after(&cert[..len]).is_err(), "accepted {len} bytes");
        }
        assert!(not_after(&certificate(true, (0x04, "271231235959Z"))).is_err());
        assert!(not_after(&certificate(true, (UTC_TIME, "27123123595Z"))).is_err());
        assert!(not_after(&certificate(true, (GENERALIZED_TIME, "271231235959Z"))).is_err());
        assert!(not_after(&certificate(true, (UTC_TIME, "2712312359590"))).is_err());
        assert!(not_after(b"\x30\x85\x00\x00\x00\x00\x01").is_err());
    }
}
