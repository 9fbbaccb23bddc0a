//! Renderers of a [`DiffReport`]: text for a terminal (grouped by level), JSON (stable,
//! machine-readable), markdown for a pull-request body, and GitHub Actions annotations.

use std::fmt::Write as _;

use super::{Change, DiffReport, Level};
use crate::config::diag::{escape_data, escape_property};

/// Output formats of `mockops diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
    Github,
}

pub fn render(report: &DiffReport, format: Format) -> String {
    match format {
        Format::Text => text(report),
        Format::Json => json(report),
        Format::Markdown => markdown(report),
        Format::Github => github(report),
    }
}

const LEVELS: [(Level, &str); 3] = [
    (Level::Err, "breaking"),
    (Level::Warn, "possibly breaking"),
    (Level::Info, "non-breaking"),
];

fn headline(report: &DiffReport) -> String {
    let s = &report.summary;
    if report.changes.is_empty() {
        return if report.description_only {
            "documentation-only change: no breaking change".to_string()
        } else {
            "no API changes".to_string()
        };
    }
    format!(
        "{} breaking, {} possibly breaking, {} non-breaking",
        s.err, s.warn, s.info
    )
}

fn ops_list(ops: &[String], max: usize, quote: bool) -> String {
    let q = |o: &String| if quote { format!("`{o}`") } else { o.clone() };
    let shown: Vec<String> = ops.iter().take(max).map(q).collect();
    let mut out = shown.join(", ");
    if ops.len() > max {
        let _ = write!(out, " and {} more", ops.len() - max);
    }
    out
}

fn affects(c: &Change) -> String {
    match c.operations.len() {
        0 => String::new(),
        1 => "1 operation".to_string(),
        n => format!("{n} operations"),
    }
}

/// Plain text for a terminal: a headline, then changes grouped by level.
pub fn text(report: &DiffReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} diff {} -> {}: {}",
        report.schema_type.as_str(),
        report.old,
        report.new,
        headline(report)
    );
    for (level, label) in LEVELS {
        let group: Vec<&Change> = report.changes.iter().filter(|c| c.level == level).collect();
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{} {label} ({})", level.as_str(), group.len());
        for c in group {
            let _ = writeln!(out, "  {}", c.id);
            wrap_into(&mut out, &c.message, "    ");
            wrap_into(&mut out, &format!("at {}", c.location), "    ");
            if !c.operations.is_empty() {
                let ops = format!("{}: {}", affects(c), ops_list(&c.operations, 3, false));
                wrap_into(&mut out, &ops, "    ");
            }
        }
    }
    out
}

/// Width the text form wraps at (a terminal of 100 columns; long tokens are not split).
const TEXT_WIDTH: usize = 100;

/// Appends `text` word-wrapped at [`TEXT_WIDTH`], every line starting with `indent`.
fn wrap_into(out: &mut String, text: &str, indent: &str) {
    let mut line = String::from(indent);
    for word in text.split(' ') {
        if line.len() > indent.len() && line.len() + 1 + word.len() > TEXT_WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = format!("{indent}  ");
        } else if line.len() > indent.len() && !line.ends_with("  ") {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

/// The report as pretty JSON (field order fixed by the struct definitions).
pub fn json(report: &DiffReport) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("a report always serialises");
    s.push('\n');
    s
}

/// Most changes listed in the markdown body.
const MARKDOWN_MAX_CHANGES: usize = 150;
/// Size after which the markdown body stops listing changes (a pull-request body or comment
/// holds 65,536 characters; this leaves room for the caller's own text).
const MARKDOWN_MAX_BYTES: usize = 56_000;

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Markdown for a pull-request body: a summary table, then details per level, operation
/// lists truncated, non-breaking changes folded.
pub fn markdown(report: &DiffReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### {} changes: `{}` → `{}`\n",
        match report.schema_type {
            super::SchemaType::Openapi => "OpenAPI",
            super::SchemaType::Protobuf => "Protobuf",
        },
        report.old,
        report.new
    );
    let verdict = if report.breaking {
        "**Breaking.** "
    } else {
        ""
    };
    let _ = writeln!(out, "{verdict}{}.\n", headline(report));
    if report.changes.is_empty() {
        return out;
    }
    // Summary table: one row per rule.
    let mut rows: Vec<(Level, &str, usize, usize)> = Vec::new();
    for c in &report.changes {
        match rows.iter_mut().find(|r| r.0 == c.level && r.1 == c.id) {
            Some(r) => {
                r.2 += 1;
                r.3 = r.3.max(c.operations.len());
            }
            None => rows.push((c.level, &c.id, 1, c.operations.len())),
        }
    }
    let _ = writeln!(out, "| Level | Rule | Changes | Most operations affected |");
    let _ = writeln!(out, "|---|---|---:|---:|");
    for (level, id, n, ops) in &rows {
        let _ = writeln!(out, "| {} | `{id}` | {n} | {ops} |", level.as_str());
    }
    let mut listed = 0usize;
    let mut truncated = false;
    for (level, label) in LEVELS {
        let group: Vec<&Change> = report.changes.iter().filter(|c| c.level == level).collect();
        if group.is_empty() || truncated {
            continue;
        }
        let fold = level == Level::Info;
        if fold {
            let _ = writeln!(
                out,
                "\n<details><summary>{} {label} ({})</summary>\n",
                level.as_str(),
                group.len()
            );
        } else {
            let _ = writeln!(out, "\n#### {} {label} ({})\n", level.as_str(), group.len());
        }
        for c in &group {
            if listed == MARKDOWN_MAX_CHANGES || out.len() > MARKDOWN_MAX_BYTES {
                let rest = report.changes.len() - listed;
                let _ = writeln!(
                    out,
                    "- … and {rest} more changes (see `mockops diff --format json`)"
                );
                truncated = true;
                break;
            }
            listed += 1;
            let _ = write!(
                out,
                "- `{}` {} <sub>at `{}`</sub>",
                c.id,
                md_escape(&c.message),
                md_escape(&c.location)
            );
            if !c.operations.is_empty() {
                let _ = write!(
                    out,
                    "<br>{}: {}",
                    affects(c),
                    ops_list(&c.operations, 5, true)
                );
            }
            out.push('\n');
        }
        if fold {
            let _ = writeln!(out, "\n</details>");
        }
    }
    out
}

/// GitHub Actions workflow commands: one annotation per change, on the new file.
pub fn github(report: &DiffReport) -> String {
    let mut out = String::new();
    for c in &report.changes {
        let cmd = match c.level {
            Level::Err => "error",
            Level::Warn => "warning",
            Level::Info => "notice",
        };
        let mut msg = format!("{} (at {})", c.message, c.location);
        if !c.operations.is_empty() {
            let _ = write!(
                msg,
                "; {}: {}",
                affects(c),
                ops_list(&c.operations, 5, false)
            );
        }
        let _ = writeln!(
            out,
            "::{cmd} file={},title={}::{}",
            escape_property(&report.path),
            escape_property(&c.id),
            escape_data(&msg)
        );
    }
    if report.changes.is_empty() {
        let _ = writeln!(
            out,
            "::notice file={}::{}",
            escape_property(&report.path),
            escape_data(&headline(report))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_diff::{Direction, SchemaType};

    fn report(n_ops: usize, message: &str) -> DiffReport {
        let change = Change {
            id: "response-property-enum-value-added".into(),
            level: Level::Warn,
            direction: Direction::Response,
            location: "#/components/schemas/Error/properties/code".into(),
            message: message.into(),
            operations: (0..n_ops)
                .map(|i| format!("GET /v1/things/{i:03}"))
                .collect(),
        };
        DiffReport::new(
            SchemaType::Openapi,
            "a".into(),
            "b".into(),
            "specs/api.yaml".into(),
            vec![change],
            false,
        )
    }

    #[test]
    fn long_operation_lists_are_truncated() {
        let r = report(454, "added `x`");
        let md = markdown(&r);
        assert!(md.contains("454 operations: `GET /v1/things/000`"), "{md}");
        assert!(md.contains("and 449 more"), "{md}");
        assert!(text(&r).contains("and 451 more"));
        assert!(github(&r).contains("and 449 more"));
    }

    #[test]
    fn text_fits_a_terminal() {
        let long = "word ".repeat(60);
        let out = text(&report(40, long.trim()));
        assert!(out.lines().all(|l| l.len() <= TEXT_WIDTH), "{out}");
    }

    #[test]
    fn github_commands_are_escaped() {
        let r = report(1, "50% of\nvalues");
        let out = github(&r);
        assert!(out.starts_with("::warning file=specs/api.yaml,title=response-property-enum-value-added::50%25 of%0Avalues"), "{out}");
        assert_eq!(out.lines().count(), 1);
    }

    #[test]
    fn github_properties_are_escaped() {
        let mut r = report(0, "m");
        r.path = "specs/a,b:c.yaml".into();
        assert!(
            github(&r).starts_with("::warning file=specs/a%2Cb%3Ac.yaml,title="),
            "{}",
            github(&r)
        );
        r.changes.clear();
        assert!(
            github(&r).starts_with("::notice file=specs/a%2Cb%3Ac.yaml::"),
            "{}",
            github(&r)
        );
    }

    #[test]
    fn markdown_tables_escape_pipes_and_cap_the_list() {
        let mut r = report(1, "a | b");
        let one = r.changes[0].clone();
        r.changes = std::iter::repeat_n(one, MARKDOWN_MAX_CHANGES + 10).collect();
        let md = markdown(&r);
        assert!(md.contains("a \\| b"));
        assert!(md.contains("and 10 more changes"), "{md}");
    }

    #[test]
    fn markdown_fits_a_pull_request_body() {
        let mut r = report(454, &"long message ".repeat(40));
        let one = r.changes[0].clone();
        r.changes = std::iter::repeat_n(one, 1000).collect();
        let md = markdown(&r);
        assert!(md.len() < 65_536, "{}", md.len());
        assert!(md.contains("more changes"));
    }

    #[test]
    fn json_round_trips() {
        let r = report(2, "m");
        let back: DiffReport = serde_json::from_str(&json(&r)).expect("valid json");
        assert_eq!(back, r);
    }
}
