//! Protobuf schema diff: buf parity on the googleapis Pub/Sub history, one case per rule
//! checked against buf's own output, and properties of the diff.

use std::path::{Path, PathBuf};

use mockops::schema_diff::Level;
use mockops::schema_diff::proto::{Category, ProtoFinding, ProtoOptions, diff_proto_findings};
use mockops::source::DirFiles;
use serde_json::Value;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus");
const PUBSUB: &str = "google/pubsub/v1/pubsub.proto";

/// One finding in buf's JSON error format (buf prints an element without a source span at
/// 1:1-1:1), reduced to what both sides can state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct BufLine {
    rule: String,
    path: String,
    start: (u64, u64),
    end: (u64, u64),
    message: String,
}

fn read_buf_jsonl(path: &Path) -> Vec<BufLine> {
    let text = std::fs::read_to_string(path).expect("peer file is readable");
    let mut lines: Vec<BufLine> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("peer line is JSON");
            let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
            let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            BufLine {
                rule: s("type"),
                path: s("path"),
                start: (n("start_line"), n("start_column")),
                end: (n("end_line"), n("end_column")),
                message: s("message"),
            }
        })
        .collect();
    lines.sort();
    lines
}

fn as_buf_lines(findings: &[ProtoFinding]) -> Vec<BufLine> {
    let mut lines: Vec<BufLine> = findings
        .iter()
        .filter(|f| f.level == Level::Err)
        .map(|f| BufLine {
            rule: f.rule.clone(),
            path: f.import_name.clone().unwrap_or_default(),
            start: f
                .span
                .map(|s| (u64::from(s.line), u64::from(s.column)))
                .unwrap_or((1, 1)),
            end: f
                .span
                .map(|s| (u64::from(s.end_line), u64::from(s.end_column)))
                .unwrap_or((1, 1)),
            message: f.message.clone(),
        })
        .collect();
    lines.sort();
    lines
}

fn module_dir(index: usize) -> PathBuf {
    let dir = Path::new(CORPUS).join("googleapis-pubsub/modules");
    let prefix = format!("{index:03}-");
    std::fs::read_dir(&dir)
        .expect("corpus modules dir exists")
        .map(|e| e.expect("dir entry").path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .expect("module for every index")
}

#[test]
fn pubsub_history_matches_buf_on_every_pair() {
    let mut report = Vec::new();
    let mut mismatches = 0;
    for pair in 1..=11 {
        let old = DirFiles::new(module_dir(pair - 1)).expect("old module");
        let new = DirFiles::new(module_dir(pair)).expect("new module");
        for (category, tag) in [(Category::File, "FILE"), (Category::WireJson, "WIRE_JSON")] {
            let opts = ProtoOptions {
                category,
                ..ProtoOptions::default()
            };
            let findings = diff_proto_findings(&old, PUBSUB, &new, PUBSUB, &opts)
                .unwrap_or_else(|e| panic!("pair {pair:03}: {e}"));
            let ours = as_buf_lines(&findings);
            let peer = read_buf_jsonl(
                &Path::new(CORPUS)
                    .join("googleapis-pubsub/peer")
                    .join(format!("{pair:03}.buf-breaking-{tag}.jsonl")),
            );
            let same = ours == peer;
            if !same {
                mismatches += 1;
            }
            report.push(format!(
                "{pair:03} {tag}: buf {} ours {} {}",
                peer.len(),
                ours.len(),
                if same { "same" } else { "DIFFERENT" }
            ));
            if !same {
                report.push(format!("  buf:  {peer:#?}\n  ours: {ours:#?}"));
            }
        }
    }
    assert_eq!(mismatches, 0, "{}", report.join("\n"));
}

const RULE_CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proto/rules");
const CASE_FILE: &str = "acme/v1/pets.proto";

fn rule_cases() -> Vec<String> {
    let mut cases: Vec<String> = std::fs::read_dir(RULE_CASES)
        .expect("rule cases exist")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    cases.sort();
    cases
}

/// Each case side is a module rooted at its directory, as buf sees it.
fn case_findings(case: &str, category: Category) -> Vec<ProtoFinding> {
    let dir = Path::new(RULE_CASES).join(case);
    let old = DirFiles::new(dir.join("old")).expect("old side");
    let new = DirFiles::new(dir.join("new")).expect("new side");
    let opts = ProtoOptions {
        category,
        proto_paths: vec![".".to_string()],
        ..ProtoOptions::default()
    };
    diff_proto_findings(&old, CASE_FILE, &new, CASE_FILE, &opts)
        .unwrap_or_else(|e| panic!("case {case}: {e}"))
}

/// Every case under `tests/fixtures/proto/rules` agrees with buf 1.75 in all four categories:
/// same rule ids, files, spans and messages (`regen-buf.sh` produced the `buf-*.jsonl` files).
#[test]
fn rule_cases_match_buf_in_every_category() {
    let mut failures = Vec::new();
    for case in rule_cases() {
        for (category, tag) in [
            (Category::File, "FILE"),
            (Category::Package, "PACKAGE"),
            (Category::WireJson, "WIRE_JSON"),
            (Category::Wire, "WIRE"),
        ] {
            let mut ours = as_buf_lines(&case_findings(&case, category));
            // Known difference: buf 1.75 never reports PACKAGE_ENUM_NO_DELETE (not even with
            // `use: [PACKAGE_ENUM_NO_DELETE]` on a module whose only change is a deleted enum);
            // we report it like its message/service/extension siblings. The snapshots show it.
            ours.retain(|l| l.rule != "PACKAGE_ENUM_NO_DELETE");
            let mut peer = read_buf_jsonl(
                &Path::new(RULE_CASES)
                    .join(&case)
                    .join(format!("buf-{tag}.jsonl")),
            );
            // Known difference: buf 1.75 formats a move between two oneofs with a stray `q`
            // (`on message "Pet"q moved from oneof ...`); ours reads `"Pet" moved from oneof`.
            for l in &mut peer {
                l.message = l
                    .message
                    .replace("\"q moved from oneof", "\" moved from oneof");
            }
            peer.sort();
            if ours != peer {
                let show = |l: &BufLine| {
                    format!(
                        "{} {}:{}:{}-{}:{} {}",
                        l.rule, l.path, l.start.0, l.start.1, l.end.0, l.end.1, l.message
                    )
                };
                let missing: Vec<_> = peer
                    .iter()
                    .filter(|l| !ours.contains(l))
                    .map(show)
                    .collect();
                let extra: Vec<_> = ours
                    .iter()
                    .filter(|l| !peer.contains(l))
                    .map(show)
                    .collect();
                failures.push(format!(
                    "{case} {tag}:\n  buf only:  {}\n  ours only: {}",
                    missing.join("\n             "),
                    extra.join("\n             ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
