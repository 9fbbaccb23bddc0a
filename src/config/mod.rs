//! Loading and validating a config repository: files → located YAML → raw kinds → checked
//! desired state, with every problem collected as a diagnostic.

pub mod shape;
