//! What ARCHITECTURE.md says about where things are done, checked on the source tree: one
//! loader, one YAML parser for config files (and one for specs to compare), a schema diff
//! that reads nothing but through `SourceFiles`.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, with its unit tests (`#[cfg(test)] mod tests`) cut off.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read src") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    files.sort();
    assert!(files.len() > 50, "src/ read: {} files", files.len());
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read source");
            let code = match text.find("#[cfg(test)]\nmod tests") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            (rel, code)
        })
        .collect()
}

fn files_using(needle: &str) -> Vec<String> {
    sources()
        .into_iter()
        .filter(|(_, code)| code.contains(needle))
        .map(|(rel, _)| rel)
        .collect()
}

#[test]
fn validate_and_the_daemon_share_the_one_loader() {
    assert_eq!(files_using("pub struct Loader"), ["src/config/load.rs"]);
    for user in ["src/cli/validate.rs", "src/reconcile/mod.rs"] {
        assert!(
            files_using("config::load::").contains(&user.to_string()),
            "{user} loads with config::load::Loader"
        );
    }
}

#[test]
fn config_yaml_is_parsed_by_yaml_rs_and_specs_to_compare_by_the_openapi_loader() {
    assert_eq!(
        files_using("serde_saphyr::"),
        ["src/schema_diff/openapi/load.rs", "src/yaml.rs"]
    );
}

#[test]
fn the_schema_diff_reads_only_through_source_files() {
    let io: Vec<String> = sources()
        .into_iter()
        .filter(|(rel, _)| rel.starts_with("src/schema_diff/"))
        .filter(|(_, code)| {
            ["std::fs", "File::open", "git2::", "tokio::fs", "reqwest"]
                .iter()
                .any(|n| code.contains(n))
        })
        .map(|(rel, _)| rel)
        .collect();
    assert!(io.is_empty(), "IO outside SourceFiles in {io:?}");
}

/// `validate` checks a spec from the tree `yaml.rs` already parsed (`load_root`): the config
/// side never asks the diff engine's loader to parse the text again.
#[test]
fn a_spec_is_parsed_once_per_load() {
    let config: Vec<(String, String)> = sources()
        .into_iter()
        .filter(|(rel, _)| rel.starts_with("src/config/") || rel == "src/cli/validate.rs")
        .collect();
    for (rel, code) in &config {
        for n in ["openapi::load(", "parse_document"] {
            assert!(!code.contains(n), "{rel} parses a spec again with {n}");
        }
    }
    assert!(
        config
            .iter()
            .any(|(rel, code)| rel == "src/config/spec.rs" && code.contains("openapi::load_root(")),
        "config/spec.rs hands the parsed tree to load_root"
    );
}

/// Dependencies point one way: the pipeline engine and its routes use what the daemon uses
/// (`crate::http`, `crate::metrics`), never the daemon itself, which wires them together.
#[test]
fn the_pipeline_does_not_depend_on_the_daemon() {
    let offenders: Vec<String> = files_using("crate::daemon")
        .into_iter()
        .filter(|f| f.starts_with("src/pipeline/"))
        .collect();
    assert!(offenders.is_empty(), "{offenders:?} import from the daemon");
    for shared in ["src/http.rs", "src/metrics.rs"] {
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(shared).exists(),
            "{shared}"
        );
    }
}

/// The mock engine answers from the loaded description alone: no network or file IO, and
/// every validator it builds refuses to retrieve a `$ref` target.
#[test]
fn the_mock_engine_fetches_nothing() {
    let mock: Vec<(String, String)> = sources()
        .into_iter()
        .filter(|(rel, _)| rel.starts_with("src/gateway/mock/"))
        .collect();
    assert!(!mock.is_empty());
    for (rel, code) in &mock {
        for n in [
            "std::fs",
            "tokio::fs",
            "reqwest",
            "std::net::TcpStream",
            "tokio::net",
        ] {
            assert!(!code.contains(n), "{rel} uses {n}");
        }
        let builds = code.matches("jsonschema::options()").count();
        assert_eq!(
            builds,
            code.matches(".offline()").count(),
            "{rel}: every validator is built offline"
        );
    }
}
