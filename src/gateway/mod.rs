//! The federation gateway: serves every applied federation at each service's reality level.
pub mod mock;
