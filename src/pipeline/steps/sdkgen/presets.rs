//! The built-in generators for OpenAPI descriptions, and finding their programs.
//!
//! | language | generator | install |
//! |---|---|---|
//! | `typescript` | `openapi-typescript` (one `schema.ts`) | `npm install -g openapi-typescript@7` |
//! | `python` | `openapi-python-client` (the package module only) | `pipx install openapi-python-client --include-deps` |
//! | `rust` | `cargo progenitor` (a crate; OpenAPI 3.0 only) | `cargo install cargo-progenitor` |
//!
//! openapi-python-client and progenitor do not follow `$ref`s into other files, so a
//! description spread over several files is bundled into one document for them first
//! ([`super::bundle`]); openapi-typescript reads the files as they are.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A preset generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Typescript,
    Python,
    Rust,
}

impl Preset {
    pub fn for_language(language: &str) -> Option<Preset> {
        match language {
            "typescript" => Some(Preset::Typescript),
            "python" => Some(Preset::Python),
            "rust" => Some(Preset::Rust),
            _ => None,
        }
    }

    /// The program the preset runs, as searched for.
    pub fn program(self) -> &'static str {
        match self {
            Preset::Typescript => "openapi-typescript",
            Preset::Python => "openapi-python-client",
            Preset::Rust => "cargo-progenitor",
        }
    }

    /// How to install the program, for the error that says it is missing.
    pub fn install_hint(self) -> &'static str {
        match self {
            Preset::Typescript => {
                "install it with `npm install -g openapi-typescript@7` (or `npm install openapi-typescript@7` in the daemon's working directory, which puts it in ./node_modules/.bin)"
            }
            Preset::Python => {
                "install it with `pipx install openapi-python-client --include-deps` (or `pip install openapi-python-client`)"
            }
            Preset::Rust => {
                "install it with `cargo install cargo-progenitor` (it needs `rustfmt` in PATH too)"
            }
        }
    }

    /// Whether the generator needs the description as one file: openapi-python-client omits
    /// what `$ref`s into other files point at, and progenitor stops at them, so a
    /// multi-file description is bundled for them first.
    pub fn needs_single_file(self) -> bool {
        matches!(self, Preset::Python | Preset::Rust)
    }

    /// Why the preset cannot generate from a description declaring `openapi: <version>`.
    pub fn refuses(self, version: &str) -> Option<String> {
        match self {
            Preset::Rust if !version.is_empty() && !version.starts_with("3.0") => Some(format!(
                "the preset's generator (progenitor) reads OpenAPI 3.0 only, and the description declares {version}"
            )),
            _ => None,
        }
    }

    /// Arguments after the program. `spec` is the spec file, `out` the language's output
    /// directory (created empty beforehand).
    pub fn args(self, spec: &Path, out: &Path, crate_name: &str) -> Vec<OsString> {
        match self {
            Preset::Typescript => {
                vec![spec.into(), "--output".into(), out.join("schema.ts").into()]
            }
            Preset::Python => vec![
                "generate".into(),
                "--path".into(),
                spec.into(),
                "--output-path".into(),
                out.into(),
                "--meta".into(),
                "none".into(),
                "--overwrite".into(),
            ],
            // Run as a cargo subcommand binary: the first argument is the subcommand name.
            Preset::Rust => vec![
                "progenitor".into(),
                "--input".into(),
                spec.into(),
                "--output".into(),
                out.into(),
                "--name".into(),
                crate_name.into(),
                "--version".into(),
                "0.1.0".into(),
            ],
        }
    }

    /// Directories searched after `extra` and `PATH`, in order.
    fn fallback_dirs(self, home: Option<&Path>, cargo_home: Option<&Path>) -> Vec<PathBuf> {
        match self {
            Preset::Typescript => std::env::current_dir()
                .map(|d| vec![d.join("node_modules/.bin")])
                .unwrap_or_default(),
            Preset::Python => home.map(|h| vec![h.join(".local/bin")]).unwrap_or_default(),
            Preset::Rust => cargo_home
                .map(|c| c.join("bin"))
                .into_iter()
                .chain(home.map(|h| h.join(".cargo/bin")))
                .collect(),
        }
    }

    /// Finds the preset's program: in `extra`, then `path`, then (with `install_dirs`) the
    /// usual install places of its ecosystem. `None` when it is not installed.
    pub fn locate(
        self,
        extra: &[PathBuf],
        path: Option<&OsString>,
        install_dirs: bool,
    ) -> Option<PathBuf> {
        let fallbacks = if install_dirs {
            let home = std::env::var_os("HOME").map(PathBuf::from);
            let cargo_home = std::env::var_os("CARGO_HOME").map(PathBuf::from);
            self.fallback_dirs(home.as_deref(), cargo_home.as_deref())
        } else {
            Vec::new()
        };
        let dirs = extra
            .iter()
            .cloned()
            .chain(path.into_iter().flat_map(std::env::split_paths))
            .chain(fallbacks);
        find_in(self.program(), dirs)
    }
}

/// The first executable regular file named `program` in `dirs`.
pub fn find_in(program: &str, dirs: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dirs.into_iter()
        .filter(|d| d.is_absolute())
        .map(|d| d.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A crate name for the Rust preset from the spec's file name: `specs/pet-store.yaml` gives
/// `pet-store-client`.
pub fn crate_name(spec_path: &str) -> String {
    let stem = spec_path
        .rsplit('/')
        .next()
        .and_then(|f| f.split('.').next())
        .unwrap_or("api");
    let mut name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches('-').to_string();
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name.insert_str(0, "api-");
    }
    format!("{}-client", name.trim_end_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names_are_valid() {
        assert_eq!(crate_name("specs/pet-store.yaml"), "pet-store-client");
        assert_eq!(crate_name("Payments API.v2.json"), "payments-api-client");
        assert_eq!(crate_name("specs/2024.yaml"), "api-2024-client");
    }

    #[test]
    fn finds_only_executables() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("tool");
        std::fs::write(&plain, "#!/bin/sh\n").expect("write");
        assert_eq!(find_in("tool", [dir.path().to_path_buf()]), None);
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(find_in("tool", [dir.path().to_path_buf()]), Some(plain));
        assert_eq!(find_in("tool", [PathBuf::from("relative")]), None);
    }
}
