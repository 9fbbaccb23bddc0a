//! Protobuf schema diff: buf parity on the googleapis Pub/Sub history, one case per rule
//! checked against buf's own output, and properties of the diff.

use std::path::{Path, PathBuf};

use mockops::schema_diff::Level;
use mockops::schema_diff::proto::{
    Category, ProtoFinding, ProtoOptions, diff_proto_findings,
};
use mockops::source::DirFiles;
use serde_json::Value;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus");
const PUBSUB: &str = "google/pubsub/v1/pubsub.proto";

/// One finding in buf's JSON error format, reduced to what both sides can state.
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
                .unwrap_or((0, 0)),
            end: f
                .span
                .map(|s| (u64::from(s.end_line), u64::from(s.end_column)))
                .unwrap_or((0, 0)),
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
