//! The integration-test binary: one module per area.

mod schema_diff_openapi;
