//! Templates in step configs (`{{event.spec_path}}`): minijinja with strict undefined values
//! and no HTML escaping, shared by validation (which checks the names a template uses) and
//! the pipeline runner (which renders it).

use minijinja::{Environment, UndefinedBehavior};

/// The environment every template is parsed and rendered with.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}
