//! The `regenerate_sdk` step: one attempt of running an SDK generator per language on a spec
//! as of the triggering commit, and returning the generated files as step outputs.
//!
//! The spec and the files it references are written from Git blobs into a fresh temporary
//! directory ([`materialize`]); each generator runs there in its own process group with a
//! cleared environment and the step's deadline ([`run`]); the output directories are read back
//! into the `files` output that `create_pr` commits (`from_step`). The temporary directory is
//! removed when the attempt ends, however it ends.

mod bundle;
mod materialize;
mod presets;
mod run;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value as Json, json};
use tokio::time::Instant;

use crate::git::revision::GitFiles;
use crate::model::{RegenerateSdkConfig, SDK_PRESETS};
use crate::pipeline::steps::{Outputs, StepContext, StepError, Target};
use crate::schema_diff::SchemaType;

pub use bundle::{BundleError, bundle};
pub use materialize::{MaterializeError, Materialized, materialize};
pub use presets::Preset;
pub use run::{Finished, Invocation, RunError, Tail};

/// Default time all generators of one attempt may take together.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Caps on what one attempt may produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes of generated files over all languages.
    pub max_total_bytes: u64,
    /// Number of generated files over all languages.
    pub max_files: usize,
    /// Bytes of stdout and of stderr kept per generator (the end is kept).
    pub max_log_bytes: usize,
    /// Bytes of stderr quoted in an error message.
    pub max_error_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_total_bytes: 20 * 1024 * 1024,
            max_files: 10_000,
            max_log_bytes: 64 * 1024,
            max_error_bytes: 4 * 1024,
        }
    }
}

/// Everything one `regenerate_sdk` attempt needs besides the step context.
#[derive(Debug, Clone)]
pub struct SdkRequest {
    /// The config repository: a working directory or a (bare) git dir.
    pub repo: PathBuf,
    /// Revision generated from when the triggering event carries no `commit` (`HEAD`, or the
    /// followed branch such as `refs/heads/main`).
    pub default_rev: String,
    /// The step's config, templates already rendered.
    pub config: RegenerateSdkConfig,
    /// Time all generators of the attempt may take together; a generator still running then
    /// is killed with its children and the attempt fails as retryable.
    pub timeout: Duration,
    /// Directories searched for preset programs before `PATH`.
    pub tool_dirs: Vec<PathBuf>,
    /// `PATH` for finding programs and for the generators (default: the daemon's own).
    pub path: Option<OsString>,
    /// Also look for preset programs where their ecosystems install them when they are not in
    /// `PATH`: `./node_modules/.bin`, `~/.local/bin`, `$CARGO_HOME/bin` or `~/.cargo/bin`,
    /// and `npx --no-install` (default: true).
    pub search_install_dirs: bool,
    /// Whether `generators.<language>.command` (a program the repository names) may run. The
    /// daemon allows it only with `--allow-generator-commands`; presets always run.
    pub allow_commands: bool,
    pub limits: Limits,
}

impl SdkRequest {
    pub fn new(repo: impl Into<PathBuf>, config: RegenerateSdkConfig) -> Self {
        Self {
            repo: repo.into(),
            default_rev: "HEAD".to_string(),
            config,
            timeout: DEFAULT_TIMEOUT,
            tool_dirs: Vec::new(),
            path: None,
            search_install_dirs: true,
            allow_commands: false,
            limits: Limits::default(),
        }
    }
}

/// How one language is generated.
#[derive(Debug, Clone)]
enum Generator {
    Preset(Preset),
    Command(Vec<String>),
}

/// Runs every language's generator once on the spec as of the triggering commit.
///
/// Outputs: `files` (`{"<language>/<path>": text}`), `binary_files` (the same for files that
/// are not UTF-8, base64-encoded), `languages`, `spec_path`, `spec_files` (the repo files the
/// generators saw), `commit`, `output_dir` (as configured), `notes` (entries left out).
pub async fn generate(req: &SdkRequest, ctx: &StepContext) -> Result<Outputs, StepError> {
    let deadline = Instant::now() + req.timeout;
    let spec_path = req
        .config
        .spec_path
        .clone()
        .filter(|p| !p.trim().is_empty())
        .or_else(|| event_str(&ctx.event, "spec_path"))
        .ok_or_else(|| {
            StepError::invalid(
                "regenerate_sdk: no spec to generate from: set `config.spec_path`, or trigger the pipeline on an event that carries `spec_path` (schema.changed)",
            )
        })?;
    let rev = event_str(&ctx.event, "commit").unwrap_or_else(|| req.default_rev.clone());
    let languages = check_languages(&req.config)?;

    let work = WorkDir::create().map_err(|e| {
        StepError::io(
            format!(
                "regenerate_sdk: cannot create a temporary directory under {}",
                std::env::temp_dir().display()
            ),
            e,
        )
    })?;
    let spec_root = work.path().join("spec");
    let out_root = work.path().join("out");
    let tmp = work.path().join("tmp");
    let home = work.path().join("home");
    for dir in [&spec_root, &out_root, &tmp, &home] {
        std::fs::create_dir(dir).map_err(|e| {
            StepError::io(
                format!("regenerate_sdk: cannot create {}", dir.display()),
                e,
            )
        })?;
    }

    let (commit, (materialized, bundled)) = {
        let repo = req.repo.clone();
        let rev = rev.clone();
        let spec_path = spec_path.clone();
        let spec_root = spec_root.clone();
        tokio::task::spawn_blocking(move || {
            let files = GitFiles::open(&repo, &rev).map_err(|e| {
                StepError::invalid(format!(
                    "regenerate_sdk: revision `{rev}` not found in the repository at {}: {}",
                    repo.display(),
                    e.message()
                ))
            })?;
            let commit = files
                .commit_id()
                .map_or_else(|| files.tree_id().to_string(), |c| c.to_string());
            let m =
                materialize(&files, &spec_path, &spec_root).map_err(|e| materialize_error(&e))?;
            let bundled = bundled_spec(&files, &m)?;
            Ok::<_, StepError>((commit, (m, bundled)))
        })
        .await
        .map_err(|e| {
            StepError::unavailable(format!("regenerate_sdk: reading the spec failed: {e}"))
        })??
    };

    let generators = choose_generators(&req.config, &languages, materialized.schema_type)?;
    if !req.allow_commands
        && let Some((language, Generator::Command(command))) = generators
            .iter()
            .find(|(_, g)| matches!(g, Generator::Command(_)))
    {
        return Err(StepError::refused(format!(
            "regenerate_sdk: language `{language}` runs a program named by the repository (`{}`); the daemon runs such commands only when its operator starts it with `--allow-generator-commands` (env MOCKOPS_ALLOW_GENERATOR_COMMANDS=true); the presets (typescript, python, rust) need no permission",
            command.first().map(String::as_str).unwrap_or("")
        ))
        .at(Target::Generator {
            language: language.to_string(),
        }));
    }
    let spec_version = match materialized.schema_type {
        SchemaType::Openapi => std::fs::read(spec_root.join(&materialized.spec_path))
            .ok()
            .and_then(|b| {
                crate::schema_diff::openapi::parse_document(&materialized.spec_path, &b).ok()
            })
            .and_then(|d| d.get("openapi").and_then(Json::as_str).map(str::to_string))
            .unwrap_or_default(),
        SchemaType::Protobuf => String::new(),
    };
    let spec_file = spec_root.join(&materialized.spec_path);
    // Presets whose generators do not follow `$ref`s into other files get one bundled document.
    let bundled_file = match &bundled {
        Some(doc) => {
            let dir = work.path().join("bundled");
            let stem = materialized
                .spec_path
                .rsplit('/')
                .next()
                .and_then(|f| f.split('.').next())
                .filter(|s| !s.is_empty())
                .unwrap_or("openapi");
            let file = dir.join(format!("{stem}.json"));
            let text = serde_json::to_vec_pretty(doc).map_err(|e| {
                StepError::invalid(format!("regenerate_sdk: bundling the spec: {e}"))
            })?;
            std::fs::create_dir(&dir)
                .and_then(|()| std::fs::write(&file, text))
                .map_err(|e| {
                    StepError::io(
                        format!("regenerate_sdk: cannot write {}", file.display()),
                        e,
                    )
                })?;
            Some(file)
        }
        None => None,
    };
    let path_var = req.path.clone().or_else(|| std::env::var_os("PATH"));
    let preset_env = child_env(&tmp, &home, path_var.as_ref(), true);
    let command_env = child_env(&tmp, &home, path_var.as_ref(), false);

    let mut collected = Collected::default();
    for (language, generator) in &generators {
        let out = out_root.join(language);
        std::fs::create_dir(&out).map_err(|e| {
            StepError::io(
                format!("regenerate_sdk: cannot create {}", out.display()),
                e,
            )
        })?;
        let inv = match generator {
            Generator::Preset(preset) => {
                if let Some(why) = preset.refuses(&spec_version) {
                    return Err(StepError::invalid(format!(
                        "regenerate_sdk: language `{language}`: {why}; give the language a `generators.{language}.command` that runs a generator for this description instead"
                    )));
                }
                let program = locate_preset(*preset, req, path_var.as_ref(), &spec_root, &preset_env)
                    .await
                    .ok_or_else(|| {
                        StepError::invalid(format!(
                            "regenerate_sdk: language `{language}`: the preset runs `{}`, which is not installed (searched the configured tool directories, PATH and the usual install places); {}, or give the language a `generators.{language}.command`",
                            preset.program(),
                            preset.install_hint()
                        ))
                    })?;
                let mut args = program.prefix_args;
                let spec_for_preset = match (&bundled_file, preset.needs_single_file()) {
                    (Some(b), true) => b,
                    _ => &spec_file,
                };
                args.extend(preset.args(
                    spec_for_preset,
                    &out,
                    &presets::crate_name(&materialized.spec_path),
                ));
                Invocation {
                    program: program.program,
                    args,
                    cwd: spec_root.clone(),
                    env: preset_env.clone(),
                }
            }
            Generator::Command(command) => {
                let fill = |s: &str| -> OsString {
                    let mut out_s = OsString::new();
                    out_s.push(
                        s.replace("{spec}", &spec_file.to_string_lossy())
                            .replace("{out}", &out.to_string_lossy())
                            .replace("{root}", &spec_root.to_string_lossy()),
                    );
                    out_s
                };
                let (program, args) = command.split_first().ok_or_else(|| {
                    StepError::invalid(format!(
                        "regenerate_sdk: `generators.{language}.command` is empty: give the program and its arguments"
                    ))
                })?;
                Invocation {
                    program: PathBuf::from(fill(program)),
                    args: args.iter().map(|a| fill(a)).collect(),
                    cwd: spec_root.clone(),
                    env: command_env.clone(),
                }
            }
        };
        run_one(language, &inv, deadline, req).await.map_err(|e| {
            prefixed(e, &format!("regenerate_sdk: language `{language}`: ")).or_at(
                Target::Generator {
                    language: language.to_string(),
                },
            )
        })?;
        let before = collected.count;
        collected = {
            let (out, lang, limits) = (out.clone(), language.clone(), req.limits.clone());
            tokio::task::spawn_blocking(move || {
                collect_dir(&out, &lang, &limits, &mut collected).map(|()| collected)
            })
            .await
            .map_err(|e| {
                StepError::unavailable(format!(
                    "regenerate_sdk: reading the generated files failed: {e}"
                ))
            })?
            .map_err(|e| {
                StepError::invalid(format!("regenerate_sdk: language `{language}`: {e}"))
            })?
        };
        if collected.count == before {
            return Err(StepError::invalid(format!(
                "regenerate_sdk: language `{language}`: the generator `{}` succeeded but wrote no files into its output directory (`{{out}}`); check that its command writes there",
                inv.program.display()
            )));
        }
    }

    let mut outputs = Map::new();
    outputs.insert("files".into(), Json::Object(collected.text));
    outputs.insert("binary_files".into(), Json::Object(collected.binary));
    outputs.insert("languages".into(), json!(languages));
    outputs.insert("spec_path".into(), json!(materialized.spec_path));
    outputs.insert("spec_files".into(), json!(materialized.files));
    outputs.insert("commit".into(), json!(commit));
    outputs.insert("output_dir".into(), json!(req.config.output_dir));
    outputs.insert("notes".into(), json!(collected.notes));
    Ok(outputs)
}

/// The description as one document when it spans several files (OpenAPI only).
fn bundled_spec(files: &GitFiles, m: &Materialized) -> Result<Option<Json>, StepError> {
    if m.schema_type != SchemaType::Openapi || m.files.len() < 2 {
        return Ok(None);
    }
    let fail = |e: String| {
        StepError::invalid(format!(
            "regenerate_sdk: `{}` spans {} files and cannot be bundled into one for the generators: {e}",
            m.spec_path,
            m.files.len()
        ))
    };
    let bytes = crate::git::revision::RevisionFiles::read(files, &m.spec_path)
        .map_err(|e| fail(e.to_string()))?;
    let spec = crate::schema_diff::openapi::load(&m.spec_path, &bytes, files)
        .map_err(|e| fail(e.to_string()))?;
    bundle(&spec).map(Some).map_err(|e| fail(e.to_string()))
}

fn event_str(event: &Json, key: &str) -> Option<String> {
    event
        .get(key)
        .and_then(Json::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The languages in order, without repeats; each must be usable as a directory name.
fn check_languages(config: &RegenerateSdkConfig) -> Result<Vec<String>, StepError> {
    if config.languages.is_empty() {
        return Err(StepError::invalid(format!(
            "regenerate_sdk: `languages` is empty: list at least one (presets: {})",
            SDK_PRESETS.join(", ")
        )));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for language in &config.languages {
        let ok = !language.is_empty()
            && language != "."
            && language != ".."
            && language
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(StepError::invalid(format!(
                "regenerate_sdk: language `{language}` is not a valid name: use letters, digits, `-`, `_` and `.` (it names the output directory)"
            )));
        }
        if seen.insert(language.clone()) {
            out.push(language.clone());
        }
    }
    Ok(out)
}

/// Picks each language's generator, failing before anything runs if one has none.
fn choose_generators(
    config: &RegenerateSdkConfig,
    languages: &[String],
    schema_type: SchemaType,
) -> Result<Vec<(String, Generator)>, StepError> {
    languages
        .iter()
        .map(|language| {
            if let Some(g) = config.generators.get(language) {
                return Ok((language.clone(), Generator::Command(g.command.clone())));
            }
            if schema_type == SchemaType::Protobuf {
                return Err(StepError::invalid(format!(
                    "regenerate_sdk: language `{language}`: there is no preset generator for .proto specs; add `generators: {{{language}: {{command: [...]}}}}` to the step config, e.g. `[protoc, -I, \"{{root}}\", --python_out, \"{{out}}\", \"{{spec}}\"]`"
                )));
            }
            match Preset::for_language(language) {
                Some(p) => Ok((language.clone(), Generator::Preset(p))),
                None => Err(StepError::invalid(format!(
                    "regenerate_sdk: language `{language}` has no preset (presets: {}); add `generators: {{{language}: {{command: [...]}}}}` with `{{spec}}` and `{{out}}` placeholders",
                    SDK_PRESETS.join(", ")
                ))),
            }
        })
        .collect()
}

fn materialize_error(e: &MaterializeError) -> StepError {
    match e {
        MaterializeError::Write { .. } => StepError::unavailable(format!("regenerate_sdk: {e}")),
        _ => StepError::invalid(format!("regenerate_sdk: {e}")),
    }
}

/// The whole environment a generator sees: enough to find programs, an empty home of its own
/// (the daemon's home may hold `.git-credentials`, `.ssh`, `.netrc`, cloud and registry
/// tokens), nothing that could carry a credential of the daemon. Presets, programs the operator
/// installed, also see where Cargo and rustup keep their toolchains; a command the repository
/// names does not.
fn child_env(
    tmp: &Path,
    home: &Path,
    path: Option<&OsString>,
    preset: bool,
) -> Vec<(String, OsString)> {
    let mut env: Vec<(String, OsString)> = vec![(
        "PATH".into(),
        path.cloned()
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
    )];
    for key in ["LANG", "LC_ALL", "TZ"] {
        if let Some(v) = std::env::var_os(key) {
            env.push((key.to_string(), v));
        }
    }
    if preset {
        let daemon_home = std::env::var_os("HOME").map(PathBuf::from);
        for (key, default) in [("CARGO_HOME", ".cargo"), ("RUSTUP_HOME", ".rustup")] {
            let v = std::env::var_os(key).or_else(|| {
                daemon_home
                    .as_ref()
                    .map(|h| h.join(default).into_os_string())
            });
            if let Some(v) = v {
                env.push((key.to_string(), v));
            }
        }
    }
    env.push(("HOME".into(), home.as_os_str().to_owned()));
    if !env.iter().any(|(k, _)| k == "LANG") {
        env.push(("LANG".into(), "C.UTF-8".into()));
    }
    env.push(("TMPDIR".into(), tmp.as_os_str().to_owned()));
    // Generators that phone home or prompt: keep them quiet and non-interactive.
    env.push(("CI".into(), "true".into()));
    env.push(("NO_COLOR".into(), "1".into()));
    // openapi-python-client formats with ruff, which would leave its cache among the files.
    env.push(("RUFF_NO_CACHE".into(), "true".into()));
    env
}

/// A preset's program and the arguments that come before the preset's own.
struct Located {
    program: PathBuf,
    prefix_args: Vec<OsString>,
}

async fn locate_preset(
    preset: Preset,
    req: &SdkRequest,
    path_var: Option<&OsString>,
    cwd: &Path,
    env: &[(String, OsString)],
) -> Option<Located> {
    if let Some(program) = preset.locate(&req.tool_dirs, path_var, req.search_install_dirs) {
        return Some(Located {
            program,
            prefix_args: Vec::new(),
        });
    }
    if preset != Preset::Typescript || !req.search_install_dirs {
        return None;
    }
    // A global npm prefix outside PATH: `npx --no-install` finds it without downloading.
    let npx = presets::find_in("npx", path_var.into_iter().flat_map(std::env::split_paths))?;
    let prefix_args: Vec<OsString> = vec!["--no-install".into(), preset.program().into()];
    let mut args = prefix_args.clone();
    args.push("--version".into());
    let probe = Invocation {
        program: npx.clone(),
        args,
        cwd: cwd.to_path_buf(),
        env: env.to_vec(),
    };
    let done = run::run(&probe, Instant::now() + Duration::from_secs(30), 4096)
        .await
        .ok()?;
    done.status.success().then_some(Located {
        program: npx,
        prefix_args,
    })
}

fn prefixed(e: StepError, prefix: &str) -> StepError {
    e.within(prefix)
}

async fn run_one(
    language: &str,
    inv: &Invocation,
    deadline: Instant,
    req: &SdkRequest,
) -> Result<(), StepError> {
    let limits = &req.limits;
    let quote = |tail: &Tail| {
        let text = tail.text();
        if text.len() <= limits.max_error_bytes {
            return text;
        }
        let mut cut = text.len() - limits.max_error_bytes;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        format!("[…]{}", &text[cut..])
    };
    let program = inv.program.display().to_string();
    tracing::info!(language, program = %program, "running SDK generator");
    match run::run(inv, deadline, limits.max_log_bytes).await {
        Ok(done) if done.status.success() => {
            tracing::info!(
                language,
                elapsed_ms = done.elapsed.as_millis() as u64,
                "SDK generator finished"
            );
            Ok(())
        }
        Ok(done) => {
            use std::os::unix::process::ExitStatusExt;
            let log = if done.stderr.is_empty() {
                format!("stdout:\n{}", quote(&done.stdout))
            } else {
                format!("stderr:\n{}", quote(&done.stderr))
            };
            match (done.status.code(), done.status.signal()) {
                (Some(code), _) => Err(StepError::invalid(format!(
                    "`{program}` exited with status {code}; {log}"
                ))),
                // Killed from outside (out of memory, an operator): it may well work next time.
                (None, signal) => Err(StepError::unavailable(format!(
                    "`{program}` was killed by signal {}; {log}",
                    signal.unwrap_or_default()
                ))),
            }
        }
        Err(RunError::Spawn { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(StepError::invalid(format!(
                "cannot run `{program}`: no such program in PATH; install it, or give its absolute path in `generators.{language}.command`"
            )))
        }
        Err(e @ RunError::Spawn { .. }) => Err(StepError::invalid(e.to_string())),
        Err(RunError::TimedOut { stderr, .. }) => Err(StepError::unavailable(format!(
            "`{program}` did not finish within the step's timeout of {}; it was killed with its child processes{}",
            humantime::format_duration(req.timeout),
            if stderr.is_empty() {
                String::new()
            } else {
                format!("; stderr:\n{}", quote(&stderr))
            }
        ))),
        Err(e @ RunError::Wait { .. }) => Err(StepError::unavailable(e.to_string())),
    }
}

/// Generated files read back so far.
#[derive(Debug, Default)]
struct Collected {
    text: Map<String, Json>,
    binary: Map<String, Json>,
    notes: Vec<String>,
    count: usize,
    bytes: u64,
}

/// Why the generated files could not be taken.
#[derive(Debug, thiserror::Error)]
enum CollectError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the generators wrote more than {0} files; generate fewer languages per step or narrow the spec"
    )]
    TooManyFiles(usize),
    #[error(
        "the generated files exceed {} in total; generate fewer languages per step, or split the spec",
        human_bytes(*.0)
    )]
    TooLarge(u64),
}

/// Reads every regular file under `dir` into `acc` as `<language>/<relative path>`, in path
/// order. Symlinks, `.git` directories and non-UTF-8 names are left out with a note.
fn collect_dir(
    dir: &Path,
    language: &str,
    limits: &Limits,
    acc: &mut Collected,
) -> Result<(), CollectError> {
    let read = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CollectError::Read { path, source }
    };
    let mut stack = vec![(dir.to_path_buf(), language.to_string())];
    while let Some((dir, prefix)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(read(&dir))?
            .collect::<Result<_, _>>()
            .map_err(read(&dir))?;
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for entry in entries {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                acc.notes.push(format!(
                    "{prefix}/{}: skipped, the name is not UTF-8",
                    entry.file_name().to_string_lossy()
                ));
                continue;
            };
            let key = format!("{prefix}/{name}");
            let meta = std::fs::symlink_metadata(&path).map_err(read(&path))?;
            if meta.is_dir() {
                if name == ".git" {
                    acc.notes.push(format!("{key}: skipped, a Git directory"));
                } else {
                    subdirs.push((path, key));
                }
                continue;
            }
            if !meta.is_file() {
                acc.notes
                    .push(format!("{key}: skipped, not a regular file (a symlink?)"));
                continue;
            }
            acc.count += 1;
            acc.bytes += meta.len();
            if acc.count > limits.max_files {
                return Err(CollectError::TooManyFiles(limits.max_files));
            }
            if acc.bytes > limits.max_total_bytes {
                return Err(CollectError::TooLarge(limits.max_total_bytes));
            }
            let bytes = std::fs::read(&path).map_err(read(&path))?;
            match String::from_utf8(bytes) {
                Ok(text) => {
                    acc.text.insert(key, Json::String(text));
                }
                Err(e) => {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(e.as_bytes());
                    acc.binary.insert(key, Json::String(encoded));
                }
            }
        }
        // Depth-first in name order: push in reverse so the first name is visited first.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

fn human_bytes(n: u64) -> String {
    if n >= 1024 * 1024 && n.is_multiple_of(1024 * 1024) {
        format!("{} MiB", n / (1024 * 1024))
    } else {
        format!("{n} bytes")
    }
}

/// A private temporary directory removed on drop.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create() -> std::io::Result<WorkDir> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        let mut last = None;
        for _ in 0..16 {
            let path = base.join(format!(
                "mockops-sdk-{}-{:016x}",
                std::process::id(),
                fastrand::u64(..)
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(WorkDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free name")))
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the SDK generator's temporary directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(languages: &[&str]) -> RegenerateSdkConfig {
        serde_json::from_value(json!({"languages": languages})).expect("config")
    }

    #[test]
    fn languages_are_checked_and_deduplicated() {
        assert_eq!(
            check_languages(&config(&["typescript", "rust", "typescript"])).expect("ok"),
            ["typescript", "rust"]
        );
        for bad in ["..", "a/b", "", "x y"] {
            let e = check_languages(&config(&[bad])).expect_err(bad);
            assert!(!e.retryable());
            assert!(
                e.rendered().contains("not a valid name"),
                "{}",
                e.rendered()
            );
        }
        assert!(check_languages(&config(&[])).is_err());
    }

    #[test]
    fn proto_needs_a_command_and_unknown_languages_say_so() {
        let e = choose_generators(
            &config(&["python"]),
            &["python".into()],
            SchemaType::Protobuf,
        )
        .expect_err("no preset for proto");
        assert!(
            e.rendered().contains("no preset generator for .proto"),
            "{}",
            e.rendered()
        );
        let e = choose_generators(&config(&["go"]), &["go".into()], SchemaType::Openapi)
            .expect_err("no go preset");
        assert!(e.rendered().contains("has no preset"), "{}", e.rendered());
        assert!(
            e.rendered().contains("typescript, python, rust"),
            "{}",
            e.rendered()
        );
    }

    #[test]
    fn child_env_carries_no_daemon_secrets() {
        for preset in [true, false] {
            let env = child_env(Path::new("/tmp/x"), Path::new("/tmp/x-home"), None, preset);
            let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
            assert!(keys.contains(&"PATH") && keys.contains(&"HOME") && keys.contains(&"TMPDIR"));
            assert!(
                !keys
                    .iter()
                    .any(|k| k.contains("TOKEN") || k.contains("SECRET"))
            );
            let home: Vec<_> = env.iter().filter(|(k, _)| k == "HOME").collect();
            assert_eq!(home.len(), 1);
            assert_eq!(
                home[0].1, "/tmp/x-home",
                "the daemon's home is never handed over"
            );
            if !preset {
                assert!(!keys.contains(&"CARGO_HOME") && !keys.contains(&"RUSTUP_HOME"));
            }
        }
    }

    #[test]
    fn collected_files_are_keyed_and_capped() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("src/nested")).expect("mkdir");
        std::fs::write(dir.path().join("src/nested/b.ts"), "b").expect("write");
        std::fs::write(dir.path().join("a.ts"), "a").expect("write");
        std::fs::write(dir.path().join("logo.bin"), [0xff, 0x00, 0xfe]).expect("write");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).expect("symlink");
        let mut acc = Collected::default();
        collect_dir(dir.path(), "ts", &Limits::default(), &mut acc).expect("collect");
        let keys: Vec<&String> = acc.text.keys().collect();
        assert_eq!(keys, ["ts/a.ts", "ts/src/nested/b.ts"]);
        assert_eq!(acc.binary["ts/logo.bin"], json!("/wD+"));
        assert_eq!(acc.notes.len(), 1, "{:?}", acc.notes);

        let small = Limits {
            max_total_bytes: 2,
            ..Limits::default()
        };
        let e = collect_dir(dir.path(), "ts", &small, &mut Collected::default())
            .expect_err("over the cap");
        assert!(e.to_string().contains("exceed 2 bytes"), "{e}");
    }

    #[test]
    fn work_dir_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let w = WorkDir::create().expect("create");
        let p = w.path().to_path_buf();
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::write(p.join("f"), "x").expect("write");
        drop(w);
        assert!(!p.exists());
    }
}
