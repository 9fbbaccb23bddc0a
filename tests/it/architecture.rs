//! What ARCHITECTURE.md says about where things are done, checked on the source tree: one
//! loader, one YAML parser for config files (and one for specs to compare), a schema diff
//! that reads nothing but through `RevisionFiles`.

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
        ["src/config/yaml.rs", "src/schema_diff/openapi/load.rs"]
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
    assert!(io.is_empty(), "IO outside RevisionFiles in {io:?}");
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

/// The config loader's dependencies point one way: `load` runs `check`, and both read the
/// shared types of `state`; neither `check` nor `state` reaches back into the loader.
#[test]
fn the_config_checks_do_not_depend_on_the_loader() {
    for (rel, code) in sources() {
        if rel == "src/config/check.rs" || rel == "src/config/state.rs" {
            for needle in ["super::load", "config::load"] {
                assert!(!code.contains(needle), "{rel} uses {needle}");
            }
        }
        if rel == "src/config/state.rs" {
            for needle in ["super::check", "config::check"] {
                assert!(!code.contains(needle), "{rel} uses {needle}");
            }
        }
    }
    assert!(
        files_using("use super::state::").contains(&"src/config/check.rs".to_string()),
        "check.rs reads the shared types from state.rs"
    );
}

/// Git has one home: every `git2` call is made in `src/git/` (reading revisions, following the
/// branch, history, commits and pushes), so every network Git call shares `git::access`'s
/// credentials, pinned host keys and deadline. Unit tests elsewhere may build fixtures with it.
#[test]
fn git2_is_used_only_in_the_git_module() {
    let offenders: Vec<String> = sources()
        .into_iter()
        .filter(|(rel, _)| !rel.starts_with("src/git/"))
        .filter(|(_, code)| {
            ["git2::", "use git2", "extern crate git2"]
                .iter()
                .any(|n| code.contains(n))
        })
        .map(|(rel, _)| rel)
        .collect();
    assert!(
        offenders.is_empty(),
        "git2 used outside src/git/ in {offenders:?}"
    );
}

/// ARCHITECTURE.md's codemap names every file under `src/`: by its path, or (for a file of a
/// directory the codemap describes) by its name in that directory's entry; a `mod.rs` by its
/// directory.
#[test]
fn the_codemap_names_every_source_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let start = doc.find("## Codemap").expect("a codemap section");
    let end = doc[start..]
        .find("\n## ")
        .map_or(doc.len(), |e| start + e + 1);
    let codemap = &doc[start..end];
    let named = |s: &str| codemap.contains(&format!("`{s}`"));
    let missing: Vec<String> = sources()
        .into_iter()
        .map(|(rel, _)| rel)
        .filter(|rel| {
            if named(rel) {
                return false;
            }
            let parts: Vec<&str> = rel.split('/').collect();
            let name = parts[parts.len() - 1];
            let parent = parts[parts.len() - 2];
            let dirs: Vec<String> = (2..parts.len())
                .map(|i| format!("{}/", parts[..i].join("/")))
                .collect();
            if name == "mod.rs" {
                let own = &dirs[dirs.len() - 1];
                return !(named(own) || named(&format!("{parent}/")));
            }
            let stem = name.trim_end_matches(".rs");
            let in_listed_dir = dirs.iter().any(|d| named(d));
            !(in_listed_dir && (named(name) || named(stem) || named(&format!("{parent}/{name}"))))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not in ARCHITECTURE.md's codemap: {missing:?}"
    );
}

/// The error type of every `Result<T, E>` in `src/` (outside unit tests), and of every
/// `FromStr`, is a typed error, never a bare `String`.
#[test]
fn no_result_has_a_string_error() {
    /// The top-level generic arguments of the `Result<...>` starting at `text`.
    fn args(text: &str) -> Vec<String> {
        let mut depth = 0usize;
        let mut out = vec![String::new()];
        for c in text.chars() {
            match c {
                '<' | '(' | '[' => depth += 1,
                '>' | ')' | ']' if depth == 0 => break,
                '>' | ')' | ']' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(String::new());
                    continue;
                }
                _ => {}
            }
            if let Some(last) = out.last_mut() {
                last.push(c);
            }
        }
        out.into_iter().map(|a| a.trim().to_string()).collect()
    }
    let mut offenders = Vec::new();
    for (rel, code) in sources() {
        let flat: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
        for (i, _) in flat.match_indices("Result<") {
            let a = args(&flat[i + "Result<".len()..]);
            if a.get(1).is_some_and(|e| e == "String") {
                offenders.push(format!("{rel}: {}", &flat[i..(i + 60).min(flat.len())]));
            }
        }
        if flat.contains("type Err = String") {
            offenders.push(format!("{rel}: type Err = String"));
        }
    }
    assert!(offenders.is_empty(), "string errors: {offenders:#?}");
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
