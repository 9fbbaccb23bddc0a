//! Loading and validating a config repository: files → located YAML → raw kinds → checked
//! desired state, with every problem collected as a diagnostic.

pub mod check;
pub mod diag;
pub mod inline_secrets;
pub mod load;
pub mod shape;
pub mod snapshot;
pub mod spec;
pub mod state;
pub mod templates;
pub mod yaml;
