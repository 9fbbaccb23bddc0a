//! The operations of a description: every (method, path template) with its path item, and the
//! normalised identity that matches endpoints across path-parameter renames
//! (`/pets/{id}` and `/pets/{petId}` are both `/pets/{}`).

use serde_json::Value;

use super::load::Spec;

pub const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// One operation of a spec.
#[derive(Debug, Clone)]
pub struct Operation<'s> {
    /// `GET /pets/{}`: method and normalised path; equal across path-parameter renames.
    pub id: String,
    pub method: &'static str,
    /// The path template as written (`/pets/{petId}`).
    pub path: String,
    /// File the operation object lives in (for resolving its `$ref`s).
    pub file: String,
    pub value: &'s Value,
    /// Path-level parameters followed by operation-level ones, unresolved.
    pub parameters: Vec<&'s Value>,
    /// How many of `parameters` come from the path item.
    pub path_level: usize,
}

impl Operation<'_> {
    /// `GET /pets/{petId}` as written in this spec.
    pub fn display(&self) -> String {
        format!("{} {}", self.method.to_ascii_uppercase(), self.path)
    }
}

/// `/pets/{petId}/toys/{toyId}` -> `/pets/{}/toys/{}`.
pub fn normalize_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0usize;
    for c in path.chars() {
        match c {
            '{' => {
                if depth == 0 {
                    out.push('{');
                }
                depth += 1;
            }
            '}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    out.push('}');
                }
            }
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    out
}

/// Names of the path parameters in template order: `/a/{x}/b/{y}` -> `[x, y]`.
pub fn path_param_names(path: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else { break };
        names.push(&after[..end]);
        rest = &after[end + 1..];
    }
    names
}

/// The path items of `spec` in document order, resolved through `$ref`: (template, file, item).
pub fn path_items(spec: &Spec) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    let Some(paths) = spec.root().get("paths").and_then(Value::as_object) else {
        return out;
    };
    for (path, item) in paths {
        let (item, file) = match item.get("$ref").and_then(Value::as_str) {
            Some(r) => match spec
                .ref_target(&spec.root_path, r)
                .and_then(|t| spec.lookup(&t))
            {
                Some((v, t)) => (v, t.file),
                None => continue,
            },
            None => (item, spec.root_path.clone()),
        };
        out.push((path.clone(), file, item));
    }
    out
}

/// Every operation of `spec`.
pub fn operations(spec: &Spec) -> Vec<Operation<'_>> {
    let mut out = Vec::new();
    for (path, file, item) in path_items(spec) {
        let common: Vec<&Value> = item
            .get("parameters")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        for method in METHODS {
            let Some(op) = item.get(method).filter(|v| v.is_object()) else {
                continue;
            };
            let mut parameters = common.clone();
            let path_level = parameters.len();
            if let Some(own) = op.get("parameters").and_then(Value::as_array) {
                parameters.extend(own.iter());
            }
            out.push(Operation {
                id: format!("{} {}", method.to_ascii_uppercase(), normalize_path(&path)),
                method,
                path: path.clone(),
                file: file.clone(),
                value: op,
                parameters,
                path_level,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_path_parameters_normalise_equal() {
        assert_eq!(
            normalize_path("/pets/{id}"),
            normalize_path("/pets/{petId}")
        );
        assert_eq!(path_param_names("/a/{x}/b/{y}"), vec!["x", "y"]);
    }
}
