//! One duration grammar for every field and flag: Go's `time.ParseDuration` as Kubernetes and Flux
//! users write it (`90s`, `5m`, `1h30m`, `500ms`, `1.5h`), without a sign.
//!
//! Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`; a bare `0` is zero. Anything else is refused
//! with the text and, through [`DurationError`]'s callers, the field or flag it came from.
//! [`format`] writes the shortest form this grammar reads back (`5m`, `1h30m`, `500ms`).

use std::time::Duration;

/// The CRD pattern: every string it admits parses (each number has at most nine digits and the
/// whole value at most [`MAX_LEN`] characters, so the sum cannot overflow).
pub const PATTERN: &str = r"^(0|([0-9]{1,9}(\.[0-9]{1,9})?(ns|us|ms|s|m|h))+)$";
/// The longest duration text accepted in a CRD.
pub const MAX_LEN: u32 = 40;

/// A text that is not a duration in this grammar.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a duration like 90s, 5m, 1h30m or 500ms{}", detail.map(|d| format!(" ({d})")).unwrap_or_default())]
pub struct DurationError {
    pub text: String,
    detail: Option<&'static str>,
}

impl DurationError {
    fn new(text: &str, detail: Option<&'static str>) -> Self {
        Self {
            text: text.to_string(),
            detail,
        }
    }
}

/// Parses a duration in Go's grammar (unsigned).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(DurationError::new(text, Some("empty")));
    }
    let mut rest = text;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| DurationError::new(text, Some("missing unit")))?;
        let number = &rest[..number_len];
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_nanos: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(DurationError::new(text, Some("missing unit"))),
            _ => {
                return Err(DurationError::new(
                    text,
                    Some("units are ns, us, ms, s, m and h"),
                ));
            }
        };
        rest = &rest[unit_len..];
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(DurationError::new(text, None));
        }
        let overflow = || DurationError::new(text, Some("too large"));
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| overflow())?
        };
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(overflow)?;
        // The fraction, digit by digit, exactly (no floating point): 1.5h is 90m.
        let mut scale = unit_nanos;
        for digit in fraction.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos += u128::from(digit - b'0') * scale;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(overflow)?;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000)
        .map_err(|_| DurationError::new(text, Some("too large")))?;
    let subsec = u32::try_from(total_nanos % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, subsec))
}

/// The shortest text [`parse`] reads back as `duration`: `1h30m`, `5m`, `90ms`, `0s`.
pub fn format(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".into();
    }
    let mut out = String::new();
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    let nanos = duration.subsec_nanos();
    if nanos > 0 {
        if nanos.is_multiple_of(1_000_000) {
            out.push_str(&format!("{}ms", nanos / 1_000_000));
        } else if nanos.is_multiple_of(1_000) {
            out.push_str(&format!("{}us", nanos / 1_000));
        } else {
            out.push_str(&format!("{nanos}ns"));
        }
    }
    out
}

/// Serde for `Duration` fields written in this grammar, and their JSON schema (a string with
/// [`PATTERN`]): `#[serde(with = "capstan_api::duration::serde_text")]` plus
/// `#[schemars(schema_with = "capstan_api::duration::schema")]`.
pub mod serde_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format(*duration))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The JSON schema of a duration field: a string the CRD pattern admits only when it parses.
pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": PATTERN,
        "maxLength": MAX_LEN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        let table: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("90s", Duration::from_secs(90)),
            ("5m", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5h", Duration::from_secs(5400)),
            ("500ms", Duration::from_millis(500)),
            ("1m30s", Duration::from_secs(90)),
            ("2h45m10s", Duration::from_secs(9910)),
            ("1.25s", Duration::from_millis(1250)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("7ns", Duration::from_nanos(7)),
            (".5s", Duration::from_millis(500)),
        ];
        for (text, want) in table {
            assert_eq!(parse(text), Ok(*want), "{text}");
        }
    }

    #[test]
    fn malformed_durations_are_refused_with_the_text() {
        for text in [
            "", "5", "5d", "m", "1h30", "-5s", "1..5s", "5 s", "s5", "1e3s", "1.2.3s",
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
        let huge = parse("99999999999999999999999999h").expect_err("overflow");
        assert!(huge.to_string().contains("too large"), "{huge}");
    }

    #[test]
    fn format_reads_back() {
        for d in [
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(90),
            Duration::from_secs(300),
            Duration::from_secs(5400),
            Duration::from_millis(1500),
            Duration::from_micros(3),
            Duration::from_nanos(1_000_000_007),
        ] {
            assert_eq!(parse(&format(d)), Ok(d), "{}", format(d));
        }
        assert_eq!(format(Duration::from_secs(300)), "5m");
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_millis(500)), "500ms");
    }

    #[test]
    fn what_the_crd_pattern_admits_parses() {
        // The longest, largest values the pattern admits within MAX_LEN.
        for text in [
            "999999999h999999999h999999999h9h",
            "999999999.999999999h",
            "0",
        ] {
            assert!(text.len() <= MAX_LEN as usize);
            parse(text).expect(text);
        }
    }
}
