//! HTML building blocks of the dashboard: the one escape function every text and attribute
//! value goes through, the page layout (navigation, title, the stylesheet link), and the
//! pager links. Nothing here reads the store.

use std::fmt::Write as _;

/// `s` safe as HTML text and as a double-quoted attribute value (also in SVG).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as one query-string value (percent-encoded, so it is also safe inside an attribute).
pub fn query_value(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The pages of the navigation bar: (path, label).
pub const NAV: &[(&str, &str)] = &[
    ("/ui", "Overview"),
    ("/ui/revisions", "Revisions"),
    ("/ui/events", "Events"),
    ("/ui/executions", "Pipelines"),
    ("/ui/federations", "Federations"),
    ("/ui/drift", "Drift"),
    ("/ui/coverage", "Coverage"),
    ("/ui/usage", "Scenarios & personas"),
];

/// A whole page: `title` (text, escaped here), the navigation with `current` marked, and
/// `body` (HTML, already escaped by its builder).
pub fn page(title: &str, current: &str, body: &str, signed_in: bool) -> String {
    let mut nav = String::new();
    for (path, label) in NAV {
        let mark = if *path == current {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(nav, "<li><a href=\"{path}\"{mark}>{label}</a></li>");
    }
    let logout = if signed_in {
        "<form method=\"post\" action=\"/ui/logout\" class=\"logout\">\
         <button type=\"submit\">Sign out</button></form>"
    } else {
        ""
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · mockops</title>\
         <link rel=\"stylesheet\" href=\"/ui/assets/style.css\">\
         <link rel=\"icon\" href=\"/ui/assets/icon.svg\" type=\"image/svg+xml\"></head>\
         <body><header><span class=\"brand\">mockops</span>\
         <nav aria-label=\"Dashboard pages\"><ul>{nav}</ul></nav>{logout}</header>\
         <main><h1>{title}</h1>\n{body}</main></body></html>\n",
        title = esc(title),
    )
}

/// A bare page without navigation (the sign-in form).
pub fn bare_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · mockops</title>\
         <link rel=\"stylesheet\" href=\"/ui/assets/style.css\">\
         <link rel=\"icon\" href=\"/ui/assets/icon.svg\" type=\"image/svg+xml\"></head>\
         <body><main class=\"narrow\"><h1>{title}</h1>\n{body}</main></body></html>\n",
        title = esc(title),
    )
}

/// A "next page" link (`href` built from escaped or encoded parts), or nothing.
pub fn pager(prev: Option<String>, next: Option<String>) -> String {
    let mut out = String::from("<nav class=\"pager\" aria-label=\"Pages\">");
    match prev {
        Some(h) => {
            let _ = write!(out, "<a href=\"{}\" rel=\"prev\">← Newest</a>", esc(&h));
        }
        None => out.push_str("<span></span>"),
    }
    match next {
        Some(h) => {
            let _ = write!(out, "<a href=\"{}\" rel=\"next\">Older →</a>", esc(&h));
        }
        None => out.push_str("<span>End of the list</span>"),
    }
    out.push_str("</nav>");
    out
}

/// A status word as a badge whose text says what the colour does.
pub fn badge(kind: &str, text: &str) -> String {
    format!(
        "<span class=\"badge b-{}\">{}</span>",
        esc(&class_token(kind)),
        esc(text)
    )
}

/// `s` reduced to `[a-z0-9_-]` (for class names built from data).
pub fn class_token(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// An optional text, escaped, or an em dash.
pub fn opt(s: Option<&str>) -> String {
    s.map(esc).unwrap_or_else(|| "—".into())
}

/// The first `n` characters of a commit id.
pub fn short(sha: &str) -> String {
    esc(&sha.chars().take(12).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text_and_attributes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(class_token("Mock V3<"), "mock-v3-");
        assert_eq!(query_value("a b&c=<d>"), "a+b%26c%3D%3Cd%3E");
    }

    #[test]
    fn page_escapes_its_title_and_marks_the_current_page() {
        let p = page("<b>", "/ui/events", "", true);
        assert!(p.contains("<title>&lt;b&gt; · mockops</title>"));
        assert!(p.contains("<a href=\"/ui/events\" aria-current=\"page\">Events</a>"));
        assert!(!p.contains("<b>"));
    }
}
