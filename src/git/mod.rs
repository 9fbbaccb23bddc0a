//! Everything mockops does with Git: reading the files of one revision ([`revision`]),
//! following a branch in a local repository or through a mirror of a remote ([`follow`]), and
//! the trust of SSH host keys ([`hostkey`]).

pub mod access;
pub mod follow;
pub mod hostkey;
pub mod revision;
