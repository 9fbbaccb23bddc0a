//! Compiling one `.proto` file and its imports out of a [`RevisionFiles`] revision with protox:
//! choosing the include roots, collecting the import closure, and turning protox errors into
//! [`ProtoError`]s that carry the repo-relative file, line and column.

use std::collections::{BTreeSet, HashMap};

use prost_reflect::DescriptorPool;
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use super::{ProtoError, ProtoOptions};
use crate::git::revision::{ReadError, RevisionFiles, normalize};

/// Most files one compilation may pull in; an import graph larger than this is refused rather
/// than read without bound.
const MAX_FILES: usize = 4096;

/// Well-known files protox ships; they are taken from protox, never from the repository, so
/// every revision compiles against the same `descriptor.proto`.
const WELL_KNOWN: &[&str] = &[
    "google/protobuf/any.proto",
    "google/protobuf/api.proto",
    "google/protobuf/descriptor.proto",
    "google/protobuf/duration.proto",
    "google/protobuf/empty.proto",
    "google/protobuf/field_mask.proto",
    "google/protobuf/source_context.proto",
    "google/protobuf/struct.proto",
    "google/protobuf/timestamp.proto",
    "google/protobuf/type.proto",
    "google/protobuf/wrappers.proto",
    "google/protobuf/compiler/plugin.proto",
];

/// Whether `name` (an import name) is one of the well-known files bundled with protox.
pub fn is_well_known(name: &str) -> bool {
    WELL_KNOWN.contains(&name)
}

/// One compiled `.proto` file with everything it imports.
#[derive(Debug, Clone)]
pub struct CompiledProto {
    pub(crate) pool: DescriptorPool,
    /// Import name of the target file (relative to its include root).
    pub(crate) target: String,
    /// Import names of the files the diff compares: the target and its imports that came from
    /// the repository (well-known files are left out).
    pub(crate) local_files: BTreeSet<String>,
    /// Include root of each local file, repo-relative (`""` is the repository root).
    pub(crate) roots: HashMap<String, String>,
    /// Source text of each local file, by import name.
    pub(crate) sources: HashMap<String, String>,
}

impl CompiledProto {
    /// Import name of the target file, e.g. `google/pubsub/v1/pubsub.proto`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The compiled descriptors, imports included.
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// Repo-relative path of a local file given its import name.
    pub fn repo_path(&self, name: &str) -> String {
        match self.roots.get(name) {
            Some(root) => join(root, name),
            None => name.to_string(),
        }
    }
}

/// Compiles the file at repo-relative `path` with its imports.
///
/// Include roots are `opts.proto_paths` when given (the file must lie under one of them), and
/// otherwise the directory its package implies: `a/b/google/pubsub/v1/x.proto` declaring
/// `package google.pubsub.v1` is compiled with root `a/b`, as `protoc -I a/b` would be. A file
/// whose directory does not end with its package path is compiled with its own directory as
/// root. When the imports are not found under that root, the nearest directory above the file
/// under which they all are is the root instead (`protoc -I .` at the repository root for
/// `import "protos/common.proto"`); see [`default_root`].
pub fn compile(
    files: &dyn RevisionFiles,
    path: &str,
    opts: &ProtoOptions,
) -> Result<CompiledProto, ProtoError> {
    let path = normalize(path).map_err(|source| ProtoError::Read {
        path: path.to_string(),
        source,
    })?;
    let text = read_text(files, &path)?;

    let (roots, target) = if opts.proto_paths.is_empty() {
        let parsed = File::from_source(&path, &text).map_err(|e| compile_error(&path, "", e))?;
        let proto = parsed.file_descriptor_proto();
        let imports: Vec<&str> = proto
            .dependency
            .iter()
            .map(String::as_str)
            .filter(|d| !is_well_known(d))
            .collect();
        let root = default_root(files, &path, proto.package(), &imports);
        let name = strip_root(&root, &path).unwrap_or_else(|| path.clone());
        (vec![root], name)
    } else {
        let mut roots = Vec::new();
        for p in &opts.proto_paths {
            let trimmed = p.trim_matches('/');
            if trimmed.is_empty() || trimmed == "." {
                roots.push(String::new());
            } else {
                roots.push(normalize(trimmed).map_err(|source| ProtoError::Read {
                    path: p.clone(),
                    source,
                })?);
            }
        }
        let name = roots
            .iter()
            .find_map(|r| strip_root(r, &path))
            .ok_or_else(|| ProtoError::NotUnderProtoPath {
                path: path.clone(),
                proto_paths: opts.proto_paths.join(", "),
            })?;
        (roots, name)
    };

    // Collect the import closure ourselves: protox's resolver must be `'static`, and the
    // source is a borrowed revision, so every file is read and parsed up front.
    let mut loaded: HashMap<String, File> = HashMap::new();
    let mut file_roots: HashMap<String, String> = HashMap::new();
    let target_root = roots
        .iter()
        .find(|r| strip_root(r, &path).as_deref() == Some(target.as_str()))
        .cloned()
        .unwrap_or_default();
    let target_file = File::from_source(&target, &text).map_err(|e| compile_error(&path, "", e))?;
    let mut queue: Vec<String> = target_file.file_descriptor_proto().dependency.clone();
    loaded.insert(target.clone(), target_file);
    file_roots.insert(target.clone(), target_root);

    while let Some(name) = queue.pop() {
        if loaded.contains_key(&name) || is_well_known(&name) {
            continue;
        }
        if loaded.len() >= MAX_FILES {
            return Err(ProtoError::TooManyFiles {
                path: path.clone(),
                limit: MAX_FILES,
            });
        }
        let Some((root, text)) = find_import(files, &roots, &name)? else {
            // Left for protox to report, with the line of the `import` statement.
            continue;
        };
        let file = File::from_source(&name, &text).map_err(|e| compile_error(&path, &root, e))?;
        queue.extend(file.file_descriptor_proto().dependency.iter().cloned());
        loaded.insert(name.clone(), file);
        file_roots.insert(name, root);
    }

    let loaded_sources: Vec<(String, String)> = loaded
        .iter()
        .filter(|(name, _)| **name != target)
        .filter_map(|(name, file)| file.source().map(|s| (name.clone(), s.to_string())))
        .collect();
    let mut resolver = ChainFileResolver::new();
    resolver.add(GoogleFileResolver::new());
    resolver.add(Preloaded { files: loaded });
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_source_info(true).include_imports(true);
    compiler.open_file(&target).map_err(|e| {
        let root = e
            .file()
            .and_then(|f| file_roots.get(f))
            .cloned()
            .unwrap_or_default();
        compile_error(&path, &root, e)
    })?;

    let pool = compiler.descriptor_pool();
    let mut sources = HashMap::new();
    sources.insert(target.clone(), text);
    for (name, file) in &loaded_sources {
        sources.insert(name.clone(), file.clone());
    }
    let local_files: BTreeSet<String> = pool
        .files()
        .map(|f| f.name().to_string())
        .filter(|n| !is_well_known(n) && file_roots.contains_key(n))
        .collect();
    file_roots.retain(|k, _| local_files.contains(k));
    sources.retain(|k, _| local_files.contains(k));
    Ok(CompiledProto {
        pool,
        target,
        local_files,
        roots: file_roots,
        sources,
    })
}

/// Looks `name` up under each root in order; `None` when no root has it.
fn find_import(
    files: &dyn RevisionFiles,
    roots: &[String],
    name: &str,
) -> Result<Option<(String, String)>, ProtoError> {
    for root in roots {
        let repo_path = join(root, name);
        match files.read(&repo_path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes)
                    .map_err(|_| ProtoError::NotUtf8 { path: repo_path })?;
                return Ok(Some((root.clone(), text)));
            }
            Err(ReadError::NotFound) => continue,
            Err(source) => {
                return Err(ProtoError::Read {
                    path: repo_path,
                    source,
                });
            }
        }
    }
    Ok(None)
}

fn read_text(files: &dyn RevisionFiles, path: &str) -> Result<String, ProtoError> {
    let bytes = files.read(path).map_err(|source| ProtoError::Read {
        path: path.to_string(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| ProtoError::NotUtf8 {
        path: path.to_string(),
    })
}

/// The include root of the file at `path` when no proto path is given: the root its package
/// implies when its `imports` (well-known ones left out) are found there; otherwise the
/// nearest directory above the file (the file's own first, the repository root last) under
/// which they all are; otherwise the implied root, where protox reports the missing import.
fn default_root(files: &dyn RevisionFiles, path: &str, package: &str, imports: &[&str]) -> String {
    let implied = implied_root(path, package);
    let resolves = |root: &str| imports.iter().all(|i| files.read(&join(root, i)).is_ok());
    if resolves(&implied) {
        return implied;
    }
    let mut dir = path.rsplit_once('/').map(|(d, _)| d);
    while let Some(d) = dir {
        if d != implied && resolves(d) {
            return d.to_string();
        }
        dir = d.rsplit_once('/').map(|(up, _)| up);
    }
    if !implied.is_empty() && resolves("") {
        return String::new();
    }
    implied
}

/// Import names a `.proto` source declares, the well-known files left out; `None` when the
/// source does not parse.
pub fn local_imports(text: &str) -> Option<Vec<String>> {
    let file = File::from_source("input.proto", text).ok()?;
    Some(
        file.file_descriptor_proto()
            .dependency
            .iter()
            .filter(|d| !is_well_known(d))
            .cloned()
            .collect(),
    )
}

/// The include root implied by a file's package: its directory minus the package's path.
fn implied_root(path: &str, package: &str) -> String {
    let dir: Vec<&str> = match path.rsplit_once('/') {
        Some((d, _)) => d.split('/').collect(),
        None => Vec::new(),
    };
    let pkg: Vec<&str> = if package.is_empty() {
        Vec::new()
    } else {
        package.split('.').collect()
    };
    if pkg.len() <= dir.len() && dir[dir.len() - pkg.len()..] == pkg[..] {
        dir[..dir.len() - pkg.len()].join("/")
    } else {
        dir.join("/")
    }
}

/// `path` relative to `root`, or `None` when it is not under it.
fn strip_root(root: &str, path: &str) -> Option<String> {
    if root.is_empty() {
        return Some(path.to_string());
    }
    path.strip_prefix(root)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|rest| !rest.is_empty())
        .map(str::to_string)
}

fn join(root: &str, name: &str) -> String {
    if root.is_empty() {
        name.to_string()
    } else {
        format!("{root}/{name}")
    }
}

/// Turns a protox error into [`ProtoError::Compile`], mapping the import name protox reports
/// back to a repo-relative path and splitting off `line:column` when protox gives them.
fn compile_error(target: &str, root: &str, err: protox::Error) -> ProtoError {
    let display = err.to_string();
    let debug = format!("{err:?}");
    let (file, line, column, message) = match err.file() {
        Some(name) => {
            let rest = debug.strip_prefix(name).and_then(|r| r.strip_prefix(':'));
            let (line, column, message) = match rest {
                Some(rest) => split_line_col(rest),
                None => (None, None, display.clone()),
            };
            let file = if is_well_known(name) {
                name.to_string()
            } else {
                join(root, name)
            };
            (Some(file), line, column, message)
        }
        None => (None, None, None, display),
    };
    ProtoError::Compile {
        path: target.to_string(),
        file,
        line,
        column,
        message,
    }
}

/// Parses `"12:5: message"` (or `" message"`) into its parts.
fn split_line_col(rest: &str) -> (Option<u32>, Option<u32>, String) {
    let mut parts = rest.splitn(3, ':');
    let first = parts.next().unwrap_or_default();
    let second = parts.next();
    let third = parts.next();
    if let (Ok(line), Some(col), Some(msg)) = (first.trim().parse::<u32>(), second, third)
        && let Ok(col) = col.trim().parse::<u32>()
    {
        return (Some(line), Some(col), msg.trim().to_string());
    }
    (None, None, rest.trim().to_string())
}

/// Files read and parsed before compilation, served to protox by import name.
struct Preloaded {
    files: HashMap<String, File>,
}

impl FileResolver for Preloaded {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        self.files
            .get(name)
            .cloned()
            .ok_or_else(|| protox::Error::file_not_found(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_implied_by_package() {
        assert_eq!(
            implied_root("a/b/google/pubsub/v1/pubsub.proto", "google.pubsub.v1"),
            "a/b"
        );
        assert_eq!(
            implied_root("google/pubsub/v1/pubsub.proto", "google.pubsub.v1"),
            ""
        );
        assert_eq!(implied_root("specs/pets.proto", "acme.v1"), "specs");
        assert_eq!(implied_root("pets.proto", ""), "");
        assert_eq!(implied_root("specs/pets.proto", ""), "specs");
    }

    #[test]
    fn strip_root_needs_a_separator() {
        assert_eq!(strip_root("a", "a/b.proto").as_deref(), Some("b.proto"));
        assert_eq!(strip_root("a", "ab/b.proto"), None);
        assert_eq!(strip_root("", "b.proto").as_deref(), Some("b.proto"));
    }

    #[test]
    fn line_col_split() {
        assert_eq!(
            split_line_col("3:7: expected ';'"),
            (Some(3), Some(7), "expected ';'".to_string())
        );
        assert_eq!(split_line_col(" oops"), (None, None, "oops".to_string()));
    }
}
