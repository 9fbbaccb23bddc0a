//! The demo config repository: `examples/repo-layout`, built into the binary, committed into a
//! fresh Git repository in the state directory the first time the daemon starts without a
//! repository to follow.

use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};

static EXAMPLE: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/examples/repo-layout");

/// Creates the demo repository under `state_dir` unless it exists; returns its path.
pub fn ensure(state_dir: &Path) -> Result<PathBuf, git2::Error> {
    let path = state_dir.join("demo-repo");
    if path.join(".git").exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&path).map_err(io)?;
    write_dir(&EXAMPLE, &path)?;
    let repo = git2::Repository::init_opts(
        &path,
        git2::RepositoryInitOptions::new().initial_head("main"),
    )?;
    let mut index = repo.index()?;
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = git2::Signature::now("mockops demo", "demo@mockops.invalid")?;
    repo.commit(
        Some("HEAD"),
        &sig,
        &sig,
        "Demo config repository",
        &tree,
        &[],
    )?;
    Ok(path)
}

fn write_dir(dir: &Dir<'_>, root: &Path) -> Result<(), git2::Error> {
    for f in dir.files() {
        let target = root.join(f.path());
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&target, f.contents()).map_err(io)?;
    }
    for d in dir.dirs() {
        write_dir(d, root)?;
    }
    Ok(())
}

fn io(e: std::io::Error) -> git2::Error {
    git2::Error::from_str(&e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_repository_is_the_example_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = ensure(dir.path()).unwrap();
        let repo = git2::Repository::open(&path).unwrap();
        let head = repo.head().unwrap();
        assert_eq!(head.shorthand().unwrap(), "main");
        let tree = head.peel_to_tree().unwrap();
        assert!(
            tree.get_path(Path::new("pipelines/auto-sdk-regeneration.yaml"))
                .is_ok()
        );
        // A second start keeps the repository as the user left it.
        let again = ensure(dir.path()).unwrap();
        assert_eq!(again, path);
    }
}
