//! Small leaf pieces every stage uses: timestamps, retry backoff, the template environment.

pub mod backoff;
pub mod template;
pub mod time;
