//! Timestamps: RFC 3339 in UTC everywhere (events, revisions, API).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, as RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A Unix time in seconds, as RFC 3339 UTC.
pub fn unix_rfc3339(secs: i64) -> String {
    let t = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Parses an RFC 3339 time (any offset is not accepted: UTC `Z` or no zone).
pub fn parse(ts: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(ts.trim_end_matches('Z')).ok()
}

/// Whether `ts` is at or after `since`. Unparseable times compare as strings.
pub fn not_before(ts: &str, since: &str) -> bool {
    match (parse(ts), parse(since)) {
        (Some(a), Some(b)) => a >= b,
        _ => ts >= since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_compares() {
        assert_eq!(unix_rfc3339(0), "1970-01-01T00:00:00Z");
        assert!(not_before(
            "2026-01-02T00:00:00.123Z",
            "2026-01-02T00:00:00Z"
        ));
        assert!(!not_before("2026-01-01T23:59:59Z", "2026-01-02T00:00:00Z"));
        assert!(parse(&now_rfc3339()).is_some());
    }
}
