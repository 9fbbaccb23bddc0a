//! The pull request body: a readable summary (what changed and why, the triggering event, the
//! files, a unified diff) and a hidden metadata block mockops reads back.

use serde::{Deserialize, Serialize};

use super::{Change, PrRequest};

/// GitHub's limit on a pull request body, in characters. Kept in bytes, which is stricter.
pub const BODY_LIMIT: usize = 65_536;

const MARKER: &str = "<!-- mockops:metadata ";

/// What mockops stores in a body to recognise its pull requests and their content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub pipeline: String,
    pub topic: String,
    pub content_hash: String,
    #[serde(default)]
    pub event_id: Option<String>,
}

impl Metadata {
    pub fn of(req: &PrRequest) -> Self {
        Self {
            pipeline: req.pipeline.clone(),
            topic: req.topic.clone(),
            content_hash: req.content_hash(),
            event_id: req.event.as_ref().map(|e| e.id.clone()),
        }
    }

    /// The HTML comment, with `>` escaped inside the JSON so the comment cannot end early.
    pub fn render(&self) -> String {
        let json = serde_json::to_string(self)
            .unwrap_or_else(|_| "{}".to_string())
            .replace('>', "\\u003e");
        format!("{MARKER}{json} -->")
    }
}

/// The metadata block of a body written by mockops, if any.
pub fn parse_metadata(body: &str) -> Option<Metadata> {
    let start = body.rfind(MARKER)? + MARKER.len();
    let end = body[start..].find(" -->")? + start;
    serde_json::from_str(&body[start..end]).ok()
}

/// One file as the summary shows it.
#[derive(Debug, Clone)]
pub(crate) struct FileDiff {
    pub path: String,
    /// `None`: the file does not exist on the base branch.
    pub old: Option<Vec<u8>>,
    /// `None`: deleted.
    pub new: Option<Vec<u8>>,
    /// The base content was not fetched (too many files).
    pub skipped: bool,
}

impl FileDiff {
    fn kind(&self) -> &'static str {
        match (&self.old, &self.new) {
            (None, Some(_)) if !self.skipped => "added",
            (Some(_), None) | (None, None) => "deleted",
            _ => "modified",
        }
    }
}

fn fence_for(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

fn unified(d: &FileDiff) -> String {
    if d.skipped {
        return format!("# {}: diff not shown (too many files)\n", d.path);
    }
    let old = d.old.as_deref().unwrap_or_default();
    let new = d.new.as_deref().unwrap_or_default();
    match (std::str::from_utf8(old), std::str::from_utf8(new)) {
        (Ok(o), Ok(n)) => {
            let diff = similar::TextDiff::from_lines(o, n);
            let a = if d.old.is_some() {
                format!("a/{}", d.path)
            } else {
                "/dev/null".into()
            };
            let b = if d.new.is_some() {
                format!("b/{}", d.path)
            } else {
                "/dev/null".into()
            };
            diff.unified_diff()
                .context_radius(3)
                .header(&a, &b)
                .to_string()
        }
        _ => format!("# {}: binary file {}\n", d.path, d.kind()),
    }
}

/// Renders the body; the diff is cut so that the whole stays within [`BODY_LIMIT`].
pub(crate) fn render_body_with(req: &PrRequest, diffs: &[FileDiff]) -> String {
    let mut head = String::new();
    match &req.description {
        Some(d) if !d.trim().is_empty() => {
            head.push_str(d.trim_end());
            head.push_str("\n\n");
        }
        _ => head.push_str(&format!(
            "mockops proposes changes to {} file(s).\n\n",
            diffs.len()
        )),
    }
    head.push_str(&format!(
        "**Pipeline:** `{}` · **Topic:** `{}`\n",
        req.pipeline, req.topic
    ));
    if let Some(e) = &req.event {
        head.push_str(&format!(
            "**Triggered by:** `{}` event `{}`",
            e.event_type, e.id
        ));
        if !e.source.is_empty() {
            head.push_str(&format!(" from `{}`", e.source));
        }
        head.push('\n');
    }
    head.push_str("\n| File | Change |\n|---|---|\n");
    let mut table = String::new();
    for d in diffs {
        table.push_str(&format!(
            "| `{}` | {} |\n",
            d.path.replace('|', "\\|"),
            d.kind()
        ));
    }
    let meta = Metadata::of(req).render();
    let footer = format!(
        "\n---\nThis pull request is maintained by mockops: it updates the branch while only mockops commits to it, and comments instead once someone else pushes.\n\n{meta}\n"
    );
    let mut diff = String::new();
    for d in diffs {
        diff.push_str(&unified(d));
    }
    let budget = BODY_LIMIT.saturating_sub(head.len() + footer.len() + 200);
    let (table, diff_budget) = if table.len() > budget {
        let mut cut = String::new();
        for line in table.lines() {
            if cut.len() + line.len() + 1 > budget.saturating_sub(100) {
                cut.push_str("| … | more files not listed |\n");
                break;
            }
            cut.push_str(line);
            cut.push('\n');
        }
        (cut, 0)
    } else {
        let rest = budget - table.len();
        (table, rest)
    };
    let mut out = head;
    out.push_str(&table);
    if diff_budget > 200 && !diff.is_empty() {
        let fence = fence_for(&diff);
        let wrap = "\n<details><summary>Diff</summary>\n\n".len() + 2 * fence.len() + 40;
        let room = diff_budget.saturating_sub(wrap + 80);
        let shown = if diff.len() > room {
            let mut end = room;
            while !diff.is_char_boundary(end) {
                end -= 1;
            }
            let end = diff[..end].rfind('\n').map_or(0, |i| i + 1);
            format!(
                "{}… diff truncated ({} of {} bytes shown)\n",
                &diff[..end],
                end,
                diff.len()
            )
        } else {
            diff
        };
        out.push_str(&format!(
            "\n<details><summary>Diff</summary>\n\n{fence}diff\n{shown}{fence}\n\n</details>\n"
        ));
    }
    out.push_str(&footer);
    out
}

/// Renders the body for a request whose files are all new (no base contents known).
pub fn render_body(req: &PrRequest) -> String {
    let diffs: Vec<FileDiff> = req
        .normalized_files()
        .into_iter()
        .map(|f| FileDiff {
            path: f.path.to_string(),
            old: None,
            new: match f.change {
                Change::Write(b) => Some(b),
                Change::Delete => None,
            },
            skipped: false,
        })
        .collect();
    render_body_with(req, &diffs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> PrRequest {
        let mut r = PrRequest::new("o/r", "main", "sdk", "pets", "Regenerate");
        r.description = Some("The spec changed.".into());
        r.event = Some(super::super::EventInfo {
            id: "evt-9".into(),
            event_type: "schema.changed".into(),
            source: "commit:abc".into(),
        });
        r
    }

    #[test]
    fn metadata_round_trips_and_cannot_close_the_comment() {
        let mut r = req();
        r.topic = "evil --> <b>".into();
        let r = r.write("a.txt", "x").unwrap();
        let body = render_body(&r);
        let m = parse_metadata(&body).unwrap();
        assert_eq!(m, Metadata::of(&r));
        let block = &body[body.find(MARKER).unwrap()..];
        assert_eq!(block.matches("-->").count(), 1, "{block}");
    }

    #[test]
    fn body_names_event_files_and_diff() {
        let r = req();
        let diffs = vec![FileDiff {
            path: "a.txt".into(),
            old: Some(b"one\ntwo\n".to_vec()),
            new: Some(b"one\nthree\n".to_vec()),
            skipped: false,
        }];
        let body = render_body_with(&r, &diffs);
        assert!(body.starts_with("The spec changed."), "{body}");
        assert!(body.contains("`schema.changed` event `evt-9` from `commit:abc`"));
        assert!(body.contains("| `a.txt` | modified |"));
        assert!(body.contains("-two\n+three\n"), "{body}");
        assert!(body.contains("--- a/a.txt"));
    }

    #[test]
    fn huge_diffs_are_cut_to_fit_the_body_limit() {
        let r = req();
        let big: String = (0..20_000).map(|i| format!("line {i} ```\n")).collect();
        let diffs: Vec<FileDiff> = (0..3)
            .map(|i| FileDiff {
                path: format!("f{i}.txt"),
                old: None,
                new: Some(big.clone().into_bytes()),
                skipped: false,
            })
            .collect();
        let body = render_body_with(&r, &diffs);
        assert!(body.len() <= BODY_LIMIT, "{}", body.len());
        assert!(body.contains("diff truncated"));
        assert!(
            body.contains("````diff"),
            "fence longer than the content's backtick runs"
        );
        assert!(parse_metadata(&body).is_some());
        let many: Vec<FileDiff> = (0..5000)
            .map(|i| FileDiff {
                path: format!("dir/file-with-a-longish-name-{i}.ts"),
                old: None,
                new: Some(b"x".to_vec()),
                skipped: false,
            })
            .collect();
        let body = render_body_with(&r, &many);
        assert!(body.len() <= BODY_LIMIT, "{}", body.len());
        assert!(body.contains("more files not listed"));
        assert!(parse_metadata(&body).is_some());
    }
}
