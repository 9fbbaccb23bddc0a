//! Test support: fixture config repositories (copied from `examples/repo-layout`, edited per
//! test), real Git repositories in temp dirs, and the path of the built binary.

#![allow(dead_code)]

pub mod github;
pub mod receivers;
pub mod upstream;

use std::path::{Path, PathBuf};

pub fn example_repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/repo-layout")
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mockops"))
}

/// A directory of the shared comparison corpus (`../shared/corpus` beside the repository:
/// spec histories with the peers' answers). A test that needs it fails when it is missing,
/// saying so, rather than passing without having compared anything.
pub fn corpus(sub: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus")
        .join(sub);
    assert!(
        dir.is_dir(),
        "{} is missing: this test compares against the shared corpus, which must be checked \
         out at ../shared/corpus beside the repository",
        dir.display()
    );
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// A config repository in a temp dir: the example, with edits.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// A copy of `examples/repo-layout`.
    pub fn example() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(&example_repo(), dir.path());
        Self { dir }
    }

    /// An empty repository.
    pub fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> &Self {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
        self
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(rel)).expect("read")
    }

    pub fn remove(&self, rel: &str) -> &Self {
        std::fs::remove_file(self.dir.path().join(rel)).expect("remove");
        self
    }

    pub fn symlink(&self, rel: &str, target: &str) -> &Self {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
        std::os::unix::fs::symlink(target, p).expect("symlink");
        self
    }

    /// Initialises a Git repository here (if needed) and commits the whole tree.
    pub fn commit(&self, message: &str) -> git2::Oid {
        let repo = git2::Repository::open(self.path())
            .or_else(|_| git2::Repository::init(self.path()))
            .expect("git repo");
        let mut index = repo.index().expect("index");
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .expect("add all");
        index.update_all(["*"], None).expect("update all");
        index.write().expect("write index");
        let tree_id = index.write_tree().expect("write tree");
        let tree = repo.find_tree(tree_id).expect("tree");
        let sig = git2::Signature::now("Test Author", "author@example.com").expect("signature");
        let parents: Vec<git2::Commit> = repo
            .head()
            .ok()
            .and_then(|h| h.peel_to_commit().ok())
            .into_iter()
            .collect();
        let parent_refs: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parent_refs)
            .expect("commit")
    }
}
pub mod daemon;
pub mod git_server;
pub mod ssh_server;
