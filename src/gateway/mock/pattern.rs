//! Strings that match a JSON Schema `pattern`: the pattern is parsed with `regex-syntax`
//! (literals, classes, quantifiers, groups, alternation, anchors) and a string is built by
//! walking it. Every candidate is checked with the `regex` crate before it is used; when no
//! matching string can be built, the answer is `None` and the caller picks a fallback that it
//! checks too, so a non-matching string is never handed out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use regex_syntax::hir::{Class, Hir, HirKind};

/// Parsed patterns kept for reuse; bounded so client-controlled input cannot grow it.
const CACHE_MAX: usize = 4096;
/// Extra repetitions at most beyond a quantifier's minimum.
const EXTRA_REPEATS: u32 = 3;
/// Longest string built for one pattern.
const MAX_LEN: usize = 4096;

struct Compiled {
    hir: Hir,
    check: regex::Regex,
}

fn compiled(pattern: &str) -> Option<Arc<Compiled>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Arc<Compiled>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Ok(c) = cache.lock()
        && let Some(hit) = c.get(pattern)
    {
        return hit.clone();
    }
    let built = (|| {
        let hir = regex_syntax::ParserBuilder::new()
            .build()
            .parse(pattern)
            .ok()?;
        let check = regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .ok()?;
        Some(Arc::new(Compiled { hir, check }))
    })();
    if let Ok(mut c) = cache.lock() {
        if c.len() >= CACHE_MAX {
            c.clear();
        }
        c.insert(pattern.to_string(), built.clone());
    }
    built
}

/// True when `s` matches `pattern` (an unparseable pattern matches nothing).
pub fn matches(pattern: &str, s: &str) -> bool {
    compiled(pattern).is_some_and(|c| c.check.is_match(s))
}

/// A string matching `pattern` with a length in `min..=max`, or `None`.
pub fn generate(pattern: &str, rng: &mut fastrand::Rng, min: usize, max: usize) -> Option<String> {
    let c = compiled(pattern)?;
    for attempt in 0..16 {
        let mut out = String::new();
        if !walk(&c.hir, rng, &mut out, attempt > 0) {
            return None;
        }
        let len = out.chars().count();
        if len < min {
            // Unanchored patterns match inside a longer string: pad after the match when the
            // pattern allows it.
            let mut padded = out.clone();
            padded.extend(std::iter::repeat_n('a', min - len));
            if c.check.is_match(&padded) && padded.chars().count() <= max {
                return Some(padded);
            }
            continue;
        }
        if len <= max && c.check.is_match(&out) {
            return Some(out);
        }
    }
    None
}

fn walk(hir: &Hir, rng: &mut fastrand::Rng, out: &mut String, vary: bool) -> bool {
    if out.len() > MAX_LEN {
        return false;
    }
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => true,
        HirKind::Literal(l) => match std::str::from_utf8(&l.0) {
            Ok(s) => {
                out.push_str(s);
                true
            }
            Err(_) => false,
        },
        HirKind::Class(Class::Unicode(c)) => {
            let ranges: Vec<(char, char)> =
                c.ranges().iter().map(|r| (r.start(), r.end())).collect();
            match pick_char(&ranges, rng) {
                Some(ch) => {
                    out.push(ch);
                    true
                }
                None => false,
            }
        }
        HirKind::Class(Class::Bytes(c)) => {
            let ranges: Vec<(char, char)> = c
                .ranges()
                .iter()
                .filter(|r| r.start() < 0x80)
                .map(|r| (r.start() as char, (r.end().min(0x7f)) as char))
                .collect();
            match pick_char(&ranges, rng) {
                Some(ch) => {
                    out.push(ch);
                    true
                }
                None => false,
            }
        }
        HirKind::Repetition(r) => {
            let max = r.max.unwrap_or(r.min.saturating_add(EXTRA_REPEATS));
            let span = max.saturating_sub(r.min).min(EXTRA_REPEATS);
            let n = if span == 0 {
                r.min
            } else if vary {
                r.min + rng.u32(0..=span)
            } else {
                r.min + span.min(1)
            };
            for _ in 0..n {
                if !walk(&r.sub, rng, out, vary) {
                    return false;
                }
            }
            true
        }
        HirKind::Capture(c) => walk(&c.sub, rng, out, vary),
        HirKind::Concat(parts) => parts.iter().all(|p| walk(p, rng, out, vary)),
        HirKind::Alternation(alts) => {
            let i = if vary { rng.usize(0..alts.len()) } else { 0 };
            walk(&alts[i], rng, out, vary)
        }
    }
}

/// A character from the class, preferring letters and digits, then other printable ASCII.
fn pick_char(ranges: &[(char, char)], rng: &mut fastrand::Rng) -> Option<char> {
    const PREFERRED: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let inside = |ch: char| ranges.iter().any(|(a, b)| *a <= ch && ch <= *b);
    let good: Vec<char> = PREFERRED.chars().filter(|c| inside(*c)).collect();
    if !good.is_empty() {
        return Some(good[rng.usize(0..good.len())]);
    }
    let printable: Vec<char> = (0x20u8..0x7f)
        .map(char::from)
        .filter(|c| inside(*c))
        .collect();
    if !printable.is_empty() {
        return Some(printable[rng.usize(0..printable.len())]);
    }
    ranges.first().map(|(a, _)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_patterns_generate_matching_strings() {
        let mut rng = fastrand::Rng::with_seed(7);
        for p in [
            "^[a-z]{3}-\\d{2,4}$",
            "^(cus|acct)_[A-Za-z0-9]+$",
            "abc",
            "^\\+?[1-9]\\d{1,14}$",
            "^[^/]+$",
            "^(?:[01]\\d|2[0-3]):[0-5]\\d$",
            "^\\w+@\\w+\\.com$",
            "^.{5,}$",
        ] {
            for _ in 0..20 {
                let s = generate(p, &mut rng, 0, 100).unwrap_or_else(|| panic!("{p}"));
                assert!(matches(p, &s), "{p} -> {s}");
            }
        }
    }

    #[test]
    fn lengths_are_respected_and_impossible_patterns_give_none() {
        let mut rng = fastrand::Rng::with_seed(1);
        let s = generate("[a-z]+", &mut rng, 10, 20).expect("pads");
        assert!((10..=20).contains(&s.len()), "{s}");
        assert!(generate("^a$", &mut rng, 3, 5).is_none());
        assert!(generate("(unclosed", &mut rng, 0, 5).is_none());
        assert!(generate("[^\\x00-\\x{10FFFF}]", &mut rng, 0, 5).is_none());
    }
}
