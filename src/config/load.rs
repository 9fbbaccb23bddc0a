//! The loader: reads every file of a snapshot, parses each once per blob id (cache), checks
//! its shape, then runs the cross-file checks and builds the [`DesiredState`]. `mockops
//! validate` and the daemon both call [`Loader::load`], so they agree on what is valid.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value as Json;

// The types a load produces and reads live in `state.rs`, shared with the checks; they are
// re-exported here because they are what `Loader::load` returns.
pub use super::state::{
    DesiredState, Doc, Entity, FederatedService, Federation, FileClass, ParsedFile, SpecFile,
    classify, file_stem,
};

/// Why a commit has no validated desired state (see [`load_valid`]).
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("cannot open commit {sha}: {source}")]
    Open {
        sha: String,
        source: crate::git::Error,
    },
    #[error("cannot load commit {sha}: {message}")]
    Load { sha: String, message: String },
    #[error("commit {sha} is not valid ({errors} errors)")]
    Invalid { sha: String, errors: usize },
}

/// Commit `sha` of the Git directory `repo`: its files and its desired state, when the commit
/// is valid. What everything that follows applied commits builds from (the gateway's routes,
/// drift's contracts): they all ask for the same commit within moments of its being applied,
/// so the state is loaded once and shared (see [`CommitMemo`]); the files are opened for each
/// caller, who reads specs through them.
pub fn load_valid(
    repo: &std::path::Path,
    sha: &str,
) -> Result<(crate::git::revision::GitFiles, Arc<DesiredState>), CommitError> {
    let files = open_commit(repo, sha)?;
    let state = APPLIED.get(repo, sha, || load_state(&files, sha))?;
    Ok((files, state))
}

/// [`load_valid`] for a caller that needs the desired state only (the analytics catalog, a
/// scenario run): the commit is opened only when its state is not loaded yet.
pub fn valid_state(repo: &std::path::Path, sha: &str) -> Result<Arc<DesiredState>, CommitError> {
    APPLIED.get(repo, sha, || load_state(&open_commit(repo, sha)?, sha))
}

fn open_commit(
    repo: &std::path::Path,
    sha: &str,
) -> Result<crate::git::revision::GitFiles, CommitError> {
    crate::git::revision::GitFiles::open(repo, sha).map_err(|source| CommitError::Open {
        sha: sha.to_string(),
        source,
    })
}

fn load_state(
    files: &crate::git::revision::GitFiles,
    sha: &str,
) -> Result<DesiredState, CommitError> {
    let loaded = Loader::new().load(files).map_err(|e| CommitError::Load {
        sha: sha.to_string(),
        message: e.to_string(),
    })?;
    if !loaded.is_valid() {
        return Err(CommitError::Invalid {
            sha: sha.to_string(),
            errors: loaded.errors(),
        });
    }
    Ok(loaded.state)
}

/// Only the applied commit is asked for; a second slot would keep the previous commit's state
/// alive after everything moved on.
static APPLIED: CommitMemo<DesiredState> = CommitMemo::new(1);

/// What was derived from the last commits (their desired states in [`load_valid`], the
/// gateway's route tables, the analytics catalog and Git histories), by repository and commit. Callers asking for the same commit at
/// once wait for one derivation rather than each running their own; a failure is not kept (the
/// next caller tries again).
pub struct CommitMemo<T> {
    capacity: usize,
    /// Most recent last.
    slots: Mutex<Vec<MemoSlot<T>>>,
}

type MemoSlot<T> = (std::path::PathBuf, String, Arc<Mutex<Option<Arc<T>>>>);

impl<T> CommitMemo<T> {
    pub const fn new(capacity: usize) -> Self {
        Self {
            capacity,
            slots: Mutex::new(Vec::new()),
        }
    }

    /// The value of (`repo`, `sha`), from `load` the first time.
    pub fn get<E>(
        &self,
        repo: &std::path::Path,
        sha: &str,
        load: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            match slots.iter().position(|(r, s, _)| r == repo && s == sha) {
                Some(i) => {
                    let hit = slots.remove(i);
                    let slot = hit.2.clone();
                    slots.push(hit);
                    slot
                }
                None => {
                    let slot = Arc::new(Mutex::new(None));
                    slots.push((repo.to_path_buf(), sha.to_string(), slot.clone()));
                    if slots.len() > self.capacity {
                        slots.remove(0);
                    }
                    slot
                }
            }
        };
        // Held while loading: a second caller for the same commit waits here for the first.
        let mut state = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = &*state {
            return Ok(s.clone());
        }
        let loaded = Arc::new(load()?);
        *state = Some(loaded.clone());
        Ok(loaded)
    }
}

use super::check;
use super::shape;
use super::snapshot::{Entry, EntryKind, Snapshot, SnapshotError};
use super::state::Input;
use crate::config::diag::{self, Diagnostic};
use crate::config::yaml::{self, Limits, Loc, Node, Value};
use crate::git::revision::ReadError;
use crate::model::Kind;
/// What loading a revision produced.
#[derive(Debug)]
pub struct Loaded {
    pub state: DesiredState,
    /// Sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn errors(&self) -> usize {
        diag::counts(&self.diagnostics).0
    }

    pub fn is_valid(&self) -> bool {
        self.errors() == 0
    }
}

/// Counters of the parse cache, for tests and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
}

/// Loads snapshots. Keeps parsed files by (class, blob id), so an unchanged file is never
/// parsed twice; entries unused by the last two loads are dropped.
#[derive(Default)]
pub struct Loader {
    cache: Mutex<Cache>,
    memo: Mutex<check::Memo>,
}

#[derive(Default)]
struct Cache {
    /// Blob id -> the blob parsed as each class it was seen as, with the last generation that
    /// used it. Keyed by blob alone so a lookup needs no owned key.
    entries: HashMap<String, Vec<(FileClass, u64, Arc<ParsedFile>)>>,
    generation: u64,
    stats: CacheStats,
}

fn schema_json(kind: Kind) -> &'static Json {
    static SCHEMAS: OnceLock<Vec<(Kind, Json)>> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| {
        Kind::ALL
            .iter()
            .map(|k| {
                (
                    *k,
                    serde_json::to_value(k.schema()).expect("a generated schema is JSON"),
                )
            })
            .collect()
    });
    &all.iter()
        .find(|(k, _)| *k == kind)
        .expect("every kind has a schema")
        .1
}

fn read_problem(path: &str, e: &ReadError) -> Diagnostic {
    let d = Diagnostic::error(
        "unreadable-file",
        path,
        Loc::new(1, 1),
        format!("cannot read file: {e}"),
    );
    match e {
        ReadError::TooLarge { .. } => {
            d.with_hint("keep config files small; large content belongs under specs/")
        }
        _ => d,
    }
}

impl Loader {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> CacheStats {
        self.cache.lock().map(|c| c.stats).unwrap_or_default()
    }

    /// Loads, checks and assembles one revision. Errors only when the snapshot itself cannot
    /// be listed; everything wrong with its content is a diagnostic.
    pub fn load(&self, snap: &dyn Snapshot) -> Result<Loaded, SnapshotError> {
        let entries = snap.entries()?;
        let mut diagnostics = Vec::new();
        let mut inputs = Vec::new();
        let generation = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.generation += 1;
            cache.generation
        };
        for Entry { path, kind } in entries {
            let class = classify(&path);
            if class == FileClass::Ignored {
                if let Some(d) = ignored_file_warning(&path) {
                    diagnostics.push(d);
                }
                continue;
            }
            let (read_path, blob) = match kind {
                EntryKind::File { blob } => (path.clone(), blob),
                EntryKind::Link { target, blob } => (target, blob),
                EntryKind::LinkOutside { target } => {
                    diagnostics.push(
                        Diagnostic::error(
                            "symlink-outside-repo",
                            &path,
                            Loc::new(1, 1),
                            format!("symlink to `{target}` points outside the repository"),
                        )
                        .with_hint("replace the symlink with the file's content"),
                    );
                    continue;
                }
                EntryKind::Special { what } => {
                    diagnostics.push(Diagnostic::error(
                        "not-a-regular-file",
                        &path,
                        Loc::new(1, 1),
                        format!("{what} where a file was expected"),
                    ));
                    continue;
                }
            };
            let cached = {
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                let hit = cache.entries.get_mut(&blob).and_then(|parsed| {
                    parsed
                        .iter_mut()
                        .find(|(c, _, _)| *c == class)
                        .map(|(_, g, p)| {
                            *g = generation;
                            Arc::clone(p)
                        })
                });
                if hit.is_some() {
                    cache.stats.hits += 1;
                }
                hit
            };
            let parsed = match cached {
                Some(p) => p,
                None => {
                    let parsed = match snap.read_entry(&read_path, &blob) {
                        Ok(bytes) => Arc::new(parse_file(&class, &bytes, snap, &read_path)),
                        Err(e) => {
                            diagnostics.push(read_problem(&path, &e));
                            continue;
                        }
                    };
                    let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                    cache.stats.misses += 1;
                    let seen_as = cache.entries.entry(blob.clone()).or_default();
                    seen_as.retain(|(c, _, _)| *c != class);
                    seen_as.push((class.clone(), generation, Arc::clone(&parsed)));
                    parsed
                }
            };
            diagnostics.extend(parsed.diagnostics.iter().map(|d| Diagnostic {
                file: path.clone(),
                ..d.clone()
            }));
            inputs.push(Input {
                path,
                blob,
                class,
                parsed,
            });
        }
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.entries.retain(|_, parsed| {
                parsed.retain(|(_, g, _)| *g + 1 >= generation);
                !parsed.is_empty()
            });
        }
        let state = {
            let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
            check::check(&inputs, &mut diagnostics, &mut memo)
        };
        diag::sort(&mut diagnostics);
        diagnostics.dedup();
        Ok(Loaded { state, diagnostics })
    }
}

fn ignored_file_warning(path: &str) -> Option<Diagnostic> {
    let top = path.split('/').next().unwrap_or("");
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.starts_with('.') || name.ends_with(".md") || top == "specs" {
        return None;
    }
    let hint = match top {
        "services" | "federations" | "pipelines" | "templates" => {
            format!("{top} are read from `{top}/<name>.yaml` (no subdirectories, .yaml or .yml)")
        }
        _ => "scenarios and personas are read from `environments/<env>/scenarios/*.yaml` and `environments/<env>/personas/*.yaml`".to_string(),
    };
    Some(
        Diagnostic::warning(
            "ignored-file",
            path,
            Loc::new(1, 1),
            "file is not read: it is not where mockops looks for config",
        )
        .with_hint(hint),
    )
}

fn yaml_problem(e: &yaml::YamlError) -> Diagnostic {
    let code = match e {
        yaml::YamlError::TooLarge { .. } => "file-too-large",
        yaml::YamlError::InvalidUtf8 { .. } => "invalid-utf8",
        yaml::YamlError::Syntax { .. } => "yaml-syntax",
        yaml::YamlError::Empty => "empty-file",
    };
    Diagnostic::error(code, "", e.loc(), e.to_string()).with_hint_opt(e.hint())
}

fn parse_file(class: &FileClass, bytes: &[u8], files: &dyn Snapshot, path: &str) -> ParsedFile {
    let kind = match class {
        FileClass::Config(k) | FileClass::EnvEntity(k, _) => *k,
        FileClass::Spec(t) => {
            let (document, diagnostics) = super::spec::check_spec(*t, path, bytes, files);
            let grpc_services = match t {
                crate::schema_diff::SchemaType::Protobuf => super::spec::grpc_services(path, bytes),
                crate::schema_diff::SchemaType::Openapi => Vec::new(),
            };
            let operations = (document && diagnostics.is_empty())
                .then(|| crate::scenario::catalog::of_spec(*t, path, bytes, files))
                .flatten();
            return ParsedFile {
                node: None,
                doc: Some(Doc::Spec {
                    document,
                    grpc_services,
                    operations,
                }),
                diagnostics,
            };
        }
        FileClass::Ignored => {
            return ParsedFile {
                node: None,
                doc: None,
                diagnostics: Vec::new(),
            };
        }
    };
    let mut node = match yaml::parse(bytes, Limits::CONFIG) {
        Ok(n) => n,
        Err(e) => {
            return ParsedFile {
                node: None,
                doc: None,
                diagnostics: vec![yaml_problem(&e)],
            };
        }
    };
    if kind == Kind::Pipeline {
        merge_step_defaults(&mut node);
    }
    let problems = shape::check(&node, schema_json(kind));
    let mut secret_warnings = Vec::new();
    super::inline_secrets::scan_secrets(&node, &mut secret_warnings);
    // Unknown keys alone do not stop the cross-file checks: they are dropped for those, so a
    // misspelt key and a wrong reference in one file are reported together.
    let only_unknown_keys = problems.iter().all(|p| p.code == "unknown-field");
    let unknown_at: Vec<Loc> = problems.iter().map(|p| p.loc).collect();
    let mut diagnostics: Vec<Diagnostic> = problems
        .into_iter()
        .map(|p| Diagnostic::error(p.code, "", p.loc, p.message).with_hint_opt(p.hint))
        .collect();
    let doc = if only_unknown_keys {
        let json = if diagnostics.is_empty() {
            node.to_json()
        } else {
            without_keys_at(&node, &unknown_at).to_json()
        };
        let result = match kind {
            Kind::Settings => serde_json::from_value(json).map(|s| Doc::Settings(Box::new(s))),
            Kind::Service => serde_json::from_value(json).map(|s| Doc::Service(Arc::new(s))),
            Kind::Federation => serde_json::from_value(json).map(Doc::Federation),
            Kind::Pipeline => serde_json::from_value(json).map(|p| Doc::Pipeline(Arc::new(p))),
            Kind::Scenario => serde_json::from_value(json).map(|s| Doc::Scenario(Arc::new(s))),
            Kind::Persona => serde_json::from_value(json).map(|p| Doc::Persona(Arc::new(p))),
            Kind::Template => serde_json::from_value(json).map(|t| Doc::Template(Arc::new(t))),
        };
        match result {
            Ok(doc) => Some(doc),
            Err(e) => {
                diagnostics.push(Diagnostic::error(
                    "invalid-document",
                    "",
                    node.loc,
                    format!("not a valid {}: {e}", kind.as_str()),
                ));
                None
            }
        }
    } else {
        None
    };
    diagnostics.extend(secret_warnings);
    ParsedFile {
        node: Some(node),
        doc,
        diagnostics,
    }
}

/// A copy of `node` without the mapping entries whose key is at one of `locs`.
fn without_keys_at(node: &Node, locs: &[Loc]) -> Node {
    let value = match &node.value {
        Value::Map(entries) => Value::Map(
            entries
                .iter()
                .filter(|(k, _)| !locs.contains(&k.loc))
                .map(|(k, v)| (k.clone(), without_keys_at(v, locs)))
                .collect(),
        ),
        Value::Seq(items) => Value::Seq(items.iter().map(|n| without_keys_at(n, locs)).collect()),
        other => other.clone(),
    };
    Node {
        loc: node.loc,
        value,
    }
}

/// Merges `definition.step_defaults.<type>` under each step's `config` (the step's keys win),
/// keeping the defaults' own locations, so checks see what will run.
fn merge_step_defaults(root: &mut Node) {
    let Some(defaults) = root
        .get("definition")
        .and_then(|d| d.get("step_defaults"))
        .cloned()
    else {
        return;
    };
    let Value::Map(root_entries) = &mut root.value else {
        return;
    };
    let Some((_, def)) = root_entries
        .iter_mut()
        .find(|(k, _)| k.name == "definition")
    else {
        return;
    };
    let Value::Map(def_entries) = &mut def.value else {
        return;
    };
    let Some((_, steps)) = def_entries.iter_mut().find(|(k, _)| k.name == "steps") else {
        return;
    };
    let Value::Seq(steps) = &mut steps.value else {
        return;
    };
    for step in steps {
        let Some(step_type) = step
            .get("step_type")
            .and_then(Node::as_str)
            .map(str::to_owned)
        else {
            continue;
        };
        let Some(default_cfg) = defaults.get(&step_type) else {
            continue;
        };
        let Value::Map(step_entries) = &mut step.value else {
            continue;
        };
        let step_loc = step_entries.first().map_or(Loc::UNKNOWN, |(k, _)| k.loc);
        if !step_entries.iter().any(|(k, _)| k.name == "config") {
            step_entries.push((
                yaml::Key {
                    loc: step_loc,
                    name: "config".into(),
                },
                Node {
                    loc: step_loc,
                    value: Value::Map(Vec::new()),
                },
            ));
        }
        let Some((_, config)) = step_entries.iter_mut().find(|(k, _)| k.name == "config") else {
            continue;
        };
        let Value::Map(cfg) = &mut config.value else {
            continue;
        };
        for (k, v) in default_cfg.as_map() {
            if !cfg.iter().any(|(ck, _)| ck.name == k.name) {
                cfg.push((k.clone(), v.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::revision::DirFiles;

    /// A small repository written file by file; `None` deletes.
    struct Repo(tempfile::TempDir);

    impl Repo {
        fn new(files: &[(&str, &str)]) -> Self {
            let repo = Self(tempfile::tempdir().expect("tempdir"));
            for (path, text) in files {
                repo.write(path, Some(text));
            }
            repo
        }

        fn write(&self, path: &str, text: Option<&str>) {
            let p = self.0.path().join(path);
            match text {
                Some(t) => {
                    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                    std::fs::write(p, t).expect("write");
                }
                None => std::fs::remove_file(p).expect("remove"),
            }
        }

        fn load(&self, loader: &Loader) -> Loaded {
            loader
                .load(&DirFiles::new(self.0.path()).expect("dir"))
                .expect("load")
        }
    }

    fn codes_in(loaded: &Loaded, file: &str) -> Vec<&'static str> {
        loaded
            .diagnostics
            .iter()
            .filter(|d| d.file == file)
            .map(|d| d.code)
            .collect()
    }

    const SETTINGS: &str = "environments: [dev]\nvariables:\n  team: api\n";
    const PIPELINE: &str = "name: p\ndefinition:\n  triggers:\n    - event: schema.changed\n      filters:\n        spec_path: \"specs/**\"\n  steps:\n    - name: tell\n      step_type: notify\n      config:\n        type: webhook\n        webhook_url: https://hooks.example.com/x\n        message: \"{{variables.team}}: {{event.spec_path}}\"\n";

    fn base() -> Repo {
        Repo::new(&[
            ("mockops.yaml", SETTINGS),
            ("pipelines/p.yaml", PIPELINE),
            (
                "services/a.yaml",
                "name: a\nworkspace_id: ws-a\nbase_path: /a\ndependencies: [b]\n",
            ),
            (
                "services/b.yaml",
                "name: b\nworkspace_id: ws-b\nbase_path: /b\n",
            ),
            (
                "environments/dev/scenarios/s.yaml",
                "name: S\nversion: 1\nworkspace_id: ws-a\nsteps:\n  - service: b\n    request: {path: /call}\n",
            ),
        ])
    }

    #[test]
    fn a_change_elsewhere_is_reported_on_an_unchanged_file() {
        let repo = base();
        let loader = Loader::new();
        let first = repo.load(&loader);
        assert_eq!(first.diagnostics, vec![]);

        // The pipeline's blob is unchanged, but the variable its template uses is gone.
        repo.write("mockops.yaml", Some("environments: [dev]\n"));
        let second = repo.load(&loader);
        assert_eq!(
            codes_in(&second, "pipelines/p.yaml"),
            vec!["template-unknown-variable"]
        );
        // Back again: the error goes with it.
        repo.write("mockops.yaml", Some(SETTINGS));
        assert_eq!(repo.load(&loader).diagnostics, vec![]);

        // Deleting `b` breaks the references of the unchanged `a` and scenario `s`.
        repo.write("services/b.yaml", None);
        let third = repo.load(&loader);
        assert_eq!(codes_in(&third, "services/a.yaml"), vec!["unknown-service"]);
        assert_eq!(
            codes_in(&third, "environments/dev/scenarios/s.yaml"),
            vec!["unknown-service"]
        );
        repo.write(
            "services/b.yaml",
            Some("name: b\nworkspace_id: ws-b\nbase_path: /b\n"),
        );
        assert_eq!(repo.load(&loader).diagnostics, vec![]);
    }

    #[test]
    fn a_warm_loader_agrees_with_a_fresh_one_after_every_edit() {
        let repo = base();
        let warm = Loader::new();
        let edits: &[(&str, Option<&str>)] = &[
            ("mockops.yaml", Some("environments: [dev]\n")),
            (
                "pipelines/q.yaml",
                Some(&*PIPELINE.replace("name: p", "name: q")),
            ),
            (
                "pipelines/p.yaml",
                Some(&*PIPELINE.replace("{{event.spec_path}}", "{{event.spec_path")),
            ),
            ("mockops.yaml", Some(SETTINGS)),
            (
                "pipelines/q.yaml",
                Some(
                    &*PIPELINE
                        .replace("name: p", "name: q")
                        .replace("specs/**", "["),
                ),
            ),
            ("services/b.yaml", None),
            ("mockops.yaml", None),
            ("pipelines/p.yaml", Some(PIPELINE)),
        ];
        let check = |warm_loaded: Loaded| {
            let fresh = repo.load(&Loader::new());
            assert_eq!(warm_loaded.diagnostics, fresh.diagnostics);
            assert_eq!(warm_loaded.state, fresh.state);
        };
        check(repo.load(&warm));
        let mut saw_problems = 0;
        for (path, text) in edits {
            repo.write(path, *text);
            let loaded = repo.load(&warm);
            saw_problems += usize::from(!loaded.diagnostics.is_empty());
            check(loaded);
        }
        assert!(saw_problems >= 5, "the edits exercise failing loads");
    }

    #[test]
    fn memoized_templates_are_dropped_when_no_longer_used() {
        let repo = base();
        let loader = Loader::new();
        repo.load(&loader);
        let lens = || loader.memo.lock().expect("memo").len();
        assert_eq!(lens(), (1, 1));
        for i in 0..3 {
            repo.write(
                "pipelines/p.yaml",
                Some(
                    &*PIPELINE
                        .replace("{{variables.team}}", &format!("{{{{variables.team}}}} {i}")),
                ),
            );
            repo.load(&loader);
        }
        // The current template and the two before it; the first is gone.
        assert_eq!(lens(), (3, 1));
    }

    #[test]
    fn the_commit_memo_derives_each_commit_once_and_keeps_the_last_few() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let cache = CommitMemo::new(2);
        let repo = std::path::Path::new("/r");
        let loads = AtomicUsize::new(0);
        let load = || {
            loads.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok::<_, CommitError>(DesiredState::default())
        };
        // Four callers at once: one load, one shared state.
        let got: Vec<Arc<DesiredState>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| cache.get(repo, "a", load).expect("state")))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert!(got.iter().all(|g| Arc::ptr_eq(g, &got[0])));

        // A failed load is not kept.
        let invalid = || {
            Err(CommitError::Invalid {
                sha: "b".into(),
                errors: 1,
            })
        };
        assert!(cache.get(repo, "b", invalid).is_err());
        cache.get(repo, "b", load).expect("second try loads");
        assert_eq!(loads.load(Ordering::SeqCst), 2);

        // The same commit of another repository is another state; "a" is the oldest, so it goes.
        cache
            .get(std::path::Path::new("/other"), "b", load)
            .expect("other");
        assert_eq!(loads.load(Ordering::SeqCst), 3);
        cache.get(repo, "b", load).expect("still kept");
        assert_eq!(loads.load(Ordering::SeqCst), 3);
        cache.get(repo, "a", load).expect("loaded again");
        assert_eq!(loads.load(Ordering::SeqCst), 4);
    }
}
