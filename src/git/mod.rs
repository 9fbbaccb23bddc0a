//! Everything mockops does with Git: reading the files of one revision ([`revision`]),
//! following a branch in a local repository or through a mirror of a remote ([`follow`]), its
//! history ([`history`]),
//! the trust of SSH host keys ([`hostkey`]), the access policy of every network call
//! ([`access`]), and writing: commits, pushes with a lease, local branch moves ([`write`]).
//! No other module of mockops uses `git2` (a test checks it).

pub mod access;
pub mod follow;
pub mod history;
pub mod hostkey;
pub mod revision;
pub mod write;

/// An error of the Git library, for the operations that return it as it is.
pub use git2::Error;
/// A Git object id (a commit, a tree, a blob).
pub use git2::Oid;

/// The Git blob id of `bytes` (what `git hash-object` prints).
pub fn blob_id(bytes: &[u8]) -> String {
    git2::Oid::hash_object(git2::ObjectType::Blob, bytes)
        .map(|o| o.to_string())
        .unwrap_or_default()
}
