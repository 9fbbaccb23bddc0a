//! Diagnostics: what is wrong with a config repository, where, and how to fix it; and the
//! three ways `mockops validate` prints them (compiler-like text, JSON, GitHub annotations).

use std::fmt::Write as _;

use serde::Serialize;

use crate::config::yaml::Loc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One problem in one file. `code` is stable (tests and users filter on it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, file: &str, loc: Loc, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            file: file.to_string(),
            line: loc.line,
            column: loc.column,
            message: message.into(),
            hint: None,
        }
    }

    pub fn warning(code: &'static str, file: &str, loc: Loc, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, file, loc, message)
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

/// Sorts diagnostics by file, position, then message, so output is stable.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (&a.file, a.line, a.column, &a.message, a.code)
            .cmp(&(&b.file, b.line, b.column, &b.message, b.code))
    });
}

/// Counts (errors, warnings).
pub fn counts(diags: &[Diagnostic]) -> (usize, usize) {
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    (errors, diags.len() - errors)
}

/// Suggests the candidate closest to `input`, if any is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let input_l = input.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&input_l, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(d, c)| {
            *d <= (c.len().max(input.len()) / 3).max(1) && *d > 0
                || c.eq_ignore_ascii_case(input) && c != &input
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Compiler-like layout: `error[code]: message`, ` --> file:line:col`, the source line with a
/// caret, and `= help:` for the hint. `source` returns a file's text when it is available.
pub fn render_text(diags: &[Diagnostic], source: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    for d in diags {
        let sev = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{sev}[{}]: {}", d.code, d.message);
        let _ = writeln!(out, "  --> {}:{}:{}", d.file, d.line, d.column);
        if d.line > 0
            && let Some(text) = source(&d.file)
            && let Some(line) = text.lines().nth(d.line as usize - 1)
        {
            let num = d.line.to_string();
            let pad = " ".repeat(num.len());
            let shown: String = line.chars().take(160).collect();
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{num} | {shown}");
            let caret_col = (d.column.max(1) as usize - 1).min(shown.chars().count());
            let _ = writeln!(out, "{pad} | {}^", " ".repeat(caret_col));
        }
        if let Some(h) = &d.hint {
            let _ = writeln!(out, "  = help: {h}");
        }
        out.push('\n');
    }
    let (e, w) = counts(diags);
    let _ = writeln!(
        out,
        "{} error{}, {} warning{}",
        e,
        if e == 1 { "" } else { "s" },
        w,
        if w == 1 { "" } else { "s" }
    );
    out
}

/// GitHub Actions workflow commands, one annotation per diagnostic.
pub fn render_github(diags: &[Diagnostic], root_prefix: &str) -> String {
    let mut out = String::new();
    for d in diags {
        let kind = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut msg = d.message.clone();
        if let Some(h) = &d.hint {
            msg.push('\n');
            msg.push_str(h);
        }
        let _ = writeln!(
            out,
            "::{kind} file={},line={},col={},title={}::{}",
            escape_property(&format!("{root_prefix}{}", d.file)),
            d.line,
            d.column,
            escape_property(d.code),
            escape_data(&msg)
        );
    }
    out
}

/// Escapes the message of a GitHub Actions workflow command (after `::`): `%`, CR and LF.
/// Shared by every GitHub rendering (diagnostics here, `schema_diff::render::github`).
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a property value of a workflow command (`file=`, `title=`): as `escape_data`,
/// plus `:` and `,`, which end a property.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("stpes", ["steps", "triggers"]), Some("steps"));
        assert_eq!(
            did_you_mean("notfy", ["notify", "create_pr"]),
            Some("notify")
        );
        assert_eq!(did_you_mean("zzzzzzzz", ["steps"]), None);
        assert_eq!(did_you_mean("Steps", ["steps"]), Some("steps"));
    }

    #[test]
    fn workflow_command_escapes() {
        assert_eq!(escape_data("100%\r\nnext: a,b"), "100%25%0D%0Anext: a,b");
        assert_eq!(escape_property("C:\\x,y%\n"), "C%3A\\x%2Cy%25%0A");
        // `%` first, so an escape is never escaped again.
        assert_eq!(escape_data("%0A"), "%250A");
    }

    #[test]
    fn github_escaping() {
        let d = Diagnostic::error("x", "a,b.yaml", Loc::new(1, 2), "50% bad\nline");
        assert_eq!(
            render_github(&[d], ""),
            "::error file=a%2Cb.yaml,line=1,col=2,title=x::50%25 bad%0Aline\n"
        );
    }
}
