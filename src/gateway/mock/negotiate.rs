//! The `Prefer` header as Prism reads it (`code=`, `example=`, `dynamic=`) and content
//! negotiation from `Accept`.

/// What a `Prefer` header asks of the mock.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Prefer {
    pub code: Option<u16>,
    pub example: Option<String>,
    pub dynamic: bool,
}

/// Why a `Prefer` header cannot be followed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreferError {
    #[error("`code={0}` is not an HTTP status code (100-599)")]
    BadCode(String),
}

/// Parses every `Prefer` value: preferences are separated by `,` or `;`, values may be quoted;
/// unknown preferences are ignored (RFC 7240).
pub fn parse_prefer<'a>(values: impl Iterator<Item = &'a str>) -> Result<Prefer, PreferError> {
    let mut p = Prefer::default();
    for value in values {
        for token in value.split([',', ';']) {
            let (k, v) = match token.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim().trim_matches('"')),
                None => (token.trim(), ""),
            };
            match k.to_ascii_lowercase().as_str() {
                "code" => match v.parse::<u16>() {
                    Ok(c) if (100..=599).contains(&c) => p.code = Some(c),
                    _ => return Err(PreferError::BadCode(v.chars().take(32).collect())),
                },
                "example" if !v.is_empty() => p.example = Some(v.to_string()),
                "dynamic" => p.dynamic = v.is_empty() || v.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
    }
    Ok(p)
}

/// The media type (without parameters), lower-cased.
pub fn essence(media: &str) -> String {
    media
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// True when `range` (`*/*`, `type/*` or a type) covers `media`.
pub fn covers(range: &str, media: &str) -> bool {
    let (r, m) = (essence(range), essence(media));
    if r == "*/*" || r == "*" || r == m {
        return true;
    }
    match (r.split_once('/'), m.split_once('/')) {
        (Some((rt, "*")), Some((mt, _))) => rt == mt,
        // A declared `*/*` or `application/*` answers any request of that kind.
        (_, Some(("*", "*"))) => true,
        (Some((rt, _)), Some((mt, "*"))) => rt == mt,
        _ => false,
    }
}

/// The declared media type to answer with, given the `Accept` values: the highest quality
/// range that a declared type satisfies, declared order breaking ties. `None` when nothing
/// declared is acceptable. No `Accept` (or an empty one) takes the first declared type.
pub fn negotiate<'d>(accept: &[&str], declared: &'d [String]) -> Option<&'d str> {
    let mut ranges: Vec<(f32, usize, &str)> = Vec::new();
    for value in accept {
        for part in value.split(',') {
            let mut pieces = part.split(';');
            let range = pieces.next().unwrap_or("").trim();
            if range.is_empty() {
                continue;
            }
            let q = pieces
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            ranges.push((q, ranges.len(), range));
        }
    }
    if ranges.is_empty() {
        return declared.first().map(String::as_str);
    }
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (q, _, range) in ranges {
        if q <= 0.0 {
            continue;
        }
        // A declared JSON type first when the client accepts anything.
        let found = declared
            .iter()
            .filter(|d| covers(range, d))
            .min_by_key(|d| usize::from(!is_json(d)) * usize::from(range.starts_with('*')));
        if let Some(d) = found {
            return Some(d);
        }
    }
    None
}

/// True for `application/json` and `+json` types.
pub fn is_json(media: &str) -> bool {
    let e = essence(media);
    e == "application/json" || e.ends_with("+json") || e == "*/*" || e == "application/*"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_values_are_parsed() {
        let p = parse_prefer(["code=404, example=\"cat\"", "dynamic=true"].into_iter())
            .expect("parses");
        assert_eq!(
            p,
            Prefer {
                code: Some(404),
                example: Some("cat".into()),
                dynamic: true
            }
        );
        assert_eq!(
            parse_prefer(["respond-async; wait=5"].into_iter()),
            Ok(Prefer::default())
        );
        assert!(parse_prefer(["code=abc"].into_iter()).is_err());
        assert!(parse_prefer(["code=1000"].into_iter()).is_err());
    }

    #[test]
    fn accept_picks_by_quality_then_declared_order() {
        let declared = vec!["application/json".to_string(), "text/csv".to_string()];
        assert_eq!(negotiate(&[], &declared), Some("application/json"));
        assert_eq!(negotiate(&["text/*"], &declared), Some("text/csv"));
        assert_eq!(
            negotiate(&["text/csv;q=0.5, application/json"], &declared),
            Some("application/json")
        );
        assert_eq!(
            negotiate(&["application/json;q=0.1, text/csv;q=0.9"], &declared),
            Some("text/csv")
        );
        assert_eq!(negotiate(&["image/png"], &declared), None);
        assert_eq!(negotiate(&["*/*"], &declared), Some("application/json"));
        assert_eq!(
            negotiate(&["application/json; charset=utf-8"], &declared),
            Some("application/json")
        );
    }
}
