//! Secrets at run time: `${env:NAME}` and `${file:/path}` references in config strings are
//! resolved when a step runs (never at load time, never stored), and every value resolved is
//! registered with a [`Redactor`] that masks it in anything mockops writes out.
//!
//! A reference may be a whole value (`${env:SLACK_WEBHOOK_URL}`) or part of a longer string
//! (`Bearer ${file:/run/secrets/token}`). `$${` writes a literal `${`. Other `${...}` text is
//! left alone. `crate::config::secrets` warns about secrets written inline at validation time.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use serde_json::Value as Json;

/// Largest secret file read, in bytes: a credential, not a data file.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Values shorter than this are not redacted: masking every `abc` would mangle logs and hide
/// nothing worth hiding.
pub const MIN_REDACTED_LEN: usize = 4;

/// What the redactor writes in place of a secret.
pub const MASK: &str = "***";

/// A reference to a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "${{env:{name}}}"),
            SecretRef::File(path) => write!(f, "${{file:{}}}", path.display()),
        }
    }
}

/// A piece of a config string: literal text or a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(Cow<'a, str>),
    Ref(SecretRef),
}

/// Why a reference could not be resolved. Messages name the reference, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "secret `{reference}` is not set: the daemon's environment has no `{name}`; set it \
         (systemd: `Environment=` or `EnvironmentFile=`; Kubernetes: `env` with \
         `valueFrom.secretKeyRef`) and restart the daemon"
    )]
    MissingEnv { reference: String, name: String },
    #[error(
        "secret `{reference}` is empty: give `{name}` a value in the daemon's environment, or \
         remove the reference"
    )]
    EmptyEnv { reference: String, name: String },
    #[error("secret `{reference}` is not valid UTF-8: store the secret as text")]
    EnvNotUnicode { reference: String },
    #[error(
        "cannot read secret file `{reference}`: {reason}; create it or mount the secret at that \
         path (Kubernetes: a Secret volume; systemd: `LoadCredential=`), readable by the daemon's \
         user"
    )]
    FileUnreadable { reference: String, reason: String },
    #[error(
        "secret file `{reference}` is not a regular file: point the reference at the file that \
         holds the secret"
    )]
    NotAFile { reference: String },
    #[error(
        "secret file `{reference}` is {size} bytes; a secret file holds at most 64 KiB: point \
         the reference at the secret itself"
    )]
    FileTooLarge { reference: String, size: u64 },
    #[error("secret file `{reference}` is empty: write the secret into it")]
    EmptyFile { reference: String },
    #[error("secret file `{reference}` is not valid UTF-8: store the secret as text")]
    FileNotUnicode { reference: String },
    #[error("malformed secret reference `{text}`: {reason}")]
    Malformed { text: String, reason: String },
}

const ENV_PREFIX: &str = "${env:";
const FILE_PREFIX: &str = "${file:";
const ESCAPE: &str = "$${";

/// Splits a config string into literal text and references. `$${` becomes a literal `${`.
pub fn parse(s: &str) -> Result<Vec<Piece<'_>>, SecretError> {
    let mut pieces: Vec<Piece<'_>> = Vec::new();
    let mut text = String::new();
    // Start of literal text not yet copied into `text`.
    let mut lit = 0;
    let mut i = 0;
    while let Some(off) = s[i..].find('$') {
        let at = i + off;
        let rest = &s[at..];
        if rest.starts_with(ESCAPE) {
            text.push_str(&s[lit..at]);
            text.push_str("${");
            i = at + ESCAPE.len();
            lit = i;
        } else if let Some(prefix) = [ENV_PREFIX, FILE_PREFIX]
            .into_iter()
            .find(|p| rest.starts_with(p))
        {
            let body_start = at + prefix.len();
            let Some(len) = s[body_start..].find('}') else {
                return Err(SecretError::Malformed {
                    text: excerpt(rest),
                    reason: "no closing `}`".into(),
                });
            };
            let body = &s[body_start..body_start + len];
            let reference = if prefix == ENV_PREFIX {
                env_ref(body)?
            } else {
                file_ref(body)?
            };
            text.push_str(&s[lit..at]);
            if !text.is_empty() {
                pieces.push(Piece::Text(Cow::Owned(std::mem::take(&mut text))));
            }
            pieces.push(Piece::Ref(reference));
            i = body_start + len + 1;
            lit = i;
        } else {
            i = at + 1;
        }
    }
    if pieces.is_empty() && text.is_empty() {
        if !s.is_empty() {
            pieces.push(Piece::Text(Cow::Borrowed(s)));
        }
        return Ok(pieces);
    }
    text.push_str(&s[lit..]);
    if !text.is_empty() {
        pieces.push(Piece::Text(Cow::Owned(text)));
    }
    Ok(pieces)
}

fn excerpt(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

fn env_ref(name: &str) -> Result<SecretRef, SecretError> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(SecretError::Malformed {
            text: format!("{ENV_PREFIX}{name}}}"),
            reason: "an environment variable name is letters, digits and `_`, not starting \
                     with a digit"
                .into(),
        });
    }
    Ok(SecretRef::Env(name.to_string()))
}

fn file_ref(path: &str) -> Result<SecretRef, SecretError> {
    if !Path::new(path).is_absolute() {
        return Err(SecretError::Malformed {
            text: format!("{FILE_PREFIX}{path}}}"),
            reason: "the path must be absolute, e.g. `${file:/run/secrets/smtp-password}`".into(),
        });
    }
    Ok(SecretRef::File(PathBuf::from(path)))
}

/// The references in a config string (checks their syntax without resolving them).
pub fn references(s: &str) -> Result<Vec<SecretRef>, SecretError> {
    Ok(parse(s)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Ref(r) => Some(r),
            Piece::Text(_) => None,
        })
        .collect())
}

/// Whether a string contains a reference (or something that starts like one).
pub fn has_references(s: &str) -> bool {
    s.contains(ENV_PREFIX) || s.contains(FILE_PREFIX)
}

/// A resolved value that may hold a secret. It has no `Display`, and `Debug` masks it, so it
/// cannot end up in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value known to be secret (given directly, e.g. in tests).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_exposed(self) -> String {
        self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Clone)]
enum Env {
    Process,
    Fixed(Arc<BTreeMap<String, String>>),
}

/// Resolves references and registers what it resolves with its redactor. Cheap to clone.
#[derive(Clone)]
pub struct Secrets {
    redactor: Redactor,
    env: Env,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env = match &self.env {
            Env::Process => "process",
            Env::Fixed(_) => "fixed",
        };
        f.debug_struct("Secrets")
            .field("env", &env)
            .field("redactor", &self.redactor)
            .finish()
    }
}

impl Secrets {
    /// Reads `${env:...}` from the process environment.
    pub fn new(redactor: Redactor) -> Self {
        Self {
            redactor,
            env: Env::Process,
        }
    }

    /// Reads `${env:...}` from the given variables instead of the process environment.
    pub fn with_env<K, V>(redactor: Redactor, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            redactor,
            env: Env::Fixed(Arc::new(
                vars.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            )),
        }
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Resolves every reference in `s`.
    pub fn resolve(&self, s: &str) -> Result<Secret, SecretError> {
        let mut out = String::with_capacity(s.len());
        for piece in parse(s)? {
            match piece {
                Piece::Text(t) => out.push_str(&t),
                Piece::Ref(r) => {
                    let value = self.lookup(&r)?;
                    self.redactor.register(&value);
                    out.push_str(&value);
                }
            }
        }
        Ok(Secret(out))
    }

    /// Resolves an optional value.
    pub fn resolve_opt(&self, s: Option<&str>) -> Result<Option<Secret>, SecretError> {
        s.map(|s| self.resolve(s)).transpose()
    }

    /// A copy of `value` with the references in every string resolved (object keys are kept as
    /// written). The result may hold secrets: send it, never log or store it.
    pub fn resolve_json(&self, value: &Json) -> Result<Json, SecretError> {
        Ok(match value {
            Json::String(s) if has_references(s) || s.contains(ESCAPE) => {
                Json::String(self.resolve(s)?.into_exposed())
            }
            Json::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|v| self.resolve_json(v))
                    .collect::<Result<_, _>>()?,
            ),
            Json::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.resolve_json(v)?)))
                    .collect::<Result<_, SecretError>>()?,
            ),
            other => other.clone(),
        })
    }

    fn lookup(&self, r: &SecretRef) -> Result<String, SecretError> {
        match r {
            SecretRef::Env(name) => {
                let value = match &self.env {
                    Env::Process => match std::env::var(name) {
                        Ok(v) => Some(v),
                        Err(std::env::VarError::NotPresent) => None,
                        Err(std::env::VarError::NotUnicode(_)) => {
                            return Err(SecretError::EnvNotUnicode {
                                reference: r.to_string(),
                            });
                        }
                    },
                    Env::Fixed(vars) => vars.get(name).cloned(),
                };
                match value {
                    None => Err(SecretError::MissingEnv {
                        reference: r.to_string(),
                        name: name.clone(),
                    }),
                    Some(v) if v.is_empty() => Err(SecretError::EmptyEnv {
                        reference: r.to_string(),
                        name: name.clone(),
                    }),
                    Some(v) => Ok(v),
                }
            }
            SecretRef::File(path) => read_secret_file(path, &r.to_string()),
        }
    }
}

/// A credential the daemon reads at each use, so a rotated file takes effect at the next use
/// without a restart (Git tokens, SSH passphrases, the webhook secret): a reference read from
/// the process environment or the file system, or a value given directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
    Value(Secret),
}

/// A credential that could not be read: what it is for, and why (naming where it was looked
/// for, never a value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {problem}")]
pub struct CredentialError {
    pub what: String,
    pub problem: String,
}

impl SecretSource {
    /// `${env:NAME}` or `${file:PATH}` alone (surrounding blanks allowed); `None` for anything
    /// else.
    pub fn parse_reference(s: &str) -> Option<Self> {
        match parse(s.trim()).ok()?.as_slice() {
            [Piece::Ref(SecretRef::Env(name))] => Some(SecretSource::Env(name.clone())),
            [Piece::Ref(SecretRef::File(path))] => Some(SecretSource::File(path.clone())),
            _ => None,
        }
    }

    /// Where the credential comes from, for messages.
    pub fn describe(&self) -> String {
        match self {
            SecretSource::Env(name) => format!("environment variable {name}"),
            SecretSource::File(path) => format!("file {}", path.display()),
            SecretSource::Value(_) => "value given in the configuration".to_string(),
        }
    }

    /// Reads the credential (surrounding whitespace trimmed) and registers it with `redactor`;
    /// `what` names it in errors ("HTTPS token").
    pub fn read(&self, what: &str, redactor: &Redactor) -> Result<Secret, CredentialError> {
        let err = |problem: String| CredentialError {
            what: what.to_string(),
            problem,
        };
        let value = match self {
            SecretSource::Env(name) => Secrets::new(redactor.clone())
                .lookup(&SecretRef::Env(name.clone()))
                .map_err(|e| err(e.to_string()))?,
            SecretSource::File(path) => read_secret_file(path, &path.display().to_string())
                .map_err(|e| err(e.to_string()))?,
            SecretSource::Value(s) => s.expose().to_string(),
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(err(format!("{} is empty", self.describe())));
        }
        redactor.register(value);
        Ok(Secret(value.to_string()))
    }
}

/// Reads a secret file: a regular file of at most [`MAX_FILE_BYTES`], UTF-8, with one trailing
/// newline (as Kubernetes Secrets and systemd credentials often have) removed.
fn read_secret_file(path: &Path, reference: &str) -> Result<String, SecretError> {
    let unreadable = |e: std::io::Error| SecretError::FileUnreadable {
        reference: reference.to_string(),
        reason: e.to_string(),
    };
    // `metadata` follows symlinks: Kubernetes mounts each key as a link into `..data/`.
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(SecretError::NotAFile {
            reference: reference.to_string(),
        });
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(SecretError::FileTooLarge {
            reference: reference.to_string(),
            size: meta.len(),
        });
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(SecretError::FileTooLarge {
            reference: reference.to_string(),
            size: bytes.len() as u64,
        });
    }
    let mut text = String::from_utf8(bytes).map_err(|_| SecretError::FileNotUnicode {
        reference: reference.to_string(),
    })?;
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
    if text.is_empty() {
        return Err(SecretError::EmptyFile {
            reference: reference.to_string(),
        });
    }
    Ok(text)
}

/// Resolves the references in `s` from the process environment and the file system.
pub fn resolve(s: &str, redactor: &Redactor) -> Result<Secret, SecretError> {
    Secrets::new(redactor.clone()).resolve(s)
}

/// Resolves the references in every string of `value` from the process environment and the
/// file system. The result may hold secrets.
pub fn resolve_json(value: &Json, redactor: &Redactor) -> Result<Json, SecretError> {
    Secrets::new(redactor.clone()).resolve_json(value)
}

/// Masks every secret value resolved so far. Shared by everything that writes text out (step
/// logs, errors, outputs, API responses); clones share one registry.
#[derive(Clone, Default)]
pub struct Redactor {
    // Longest first, so a secret that contains another is masked whole.
    values: Arc<RwLock<Vec<String>>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("values", &self.len())
            .finish()
    }
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a secret value, and the forms it commonly takes when written out: trimmed,
    /// percent-encoded (in URLs), JSON-escaped, and each long line of a multi-line value.
    pub fn register(&self, value: &str) {
        let mut forms = vec![value.to_string(), value.trim().to_string()];
        forms.push(percent_encode(value));
        if let Ok(quoted) = serde_json::to_string(value) {
            forms.push(quoted[1..quoted.len() - 1].to_string());
        }
        if value.contains('\n') {
            forms.extend(
                value
                    .lines()
                    .map(str::trim)
                    .filter(|l| l.len() >= 8)
                    .map(str::to_string),
            );
        }
        let mut values = self.values.write().unwrap_or_else(PoisonError::into_inner);
        for form in forms {
            if form.chars().count() >= MIN_REDACTED_LEN && !values.contains(&form) {
                values.push(form);
            }
        }
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    /// How many forms of secrets are registered.
    pub fn len(&self) -> usize {
        self.values
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `s` with every registered secret replaced by `***`.
    pub fn redact<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let values = self.values.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = Cow::Borrowed(s);
        for v in values.iter() {
            if out.contains(v.as_str()) {
                out = Cow::Owned(out.replace(v.as_str(), MASK));
            }
        }
        out
    }

    /// Masks secrets in every string and object key of `value`, in place.
    pub fn redact_json_in_place(&self, value: &mut Json) {
        match value {
            Json::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            Json::Array(items) => items.iter_mut().for_each(|v| self.redact_json_in_place(v)),
            Json::Object(map) => {
                let needs_key_change = map.keys().any(|k| matches!(self.redact(k), Cow::Owned(_)));
                if needs_key_change {
                    let old = std::mem::take(map);
                    for (k, mut v) in old {
                        self.redact_json_in_place(&mut v);
                        map.insert(self.redact(&k).into_owned(), v);
                    }
                } else {
                    map.values_mut().for_each(|v| self.redact_json_in_place(v));
                }
            }
            _ => {}
        }
    }

    /// A copy of `value` with secrets masked in every string and object key.
    pub fn redact_json(&self, value: &Json) -> Json {
        let mut v = value.clone();
        self.redact_json_in_place(&mut v);
        v
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_print() {
        let src = SecretSource::Value(Secret::new("ghp_abcdefghijklmnop"));
        assert!(!format!("{src:?}").contains("ghp_"));
    }

    #[test]
    fn credential_references() {
        assert_eq!(
            SecretSource::parse_reference("${env:GIT_TOKEN}"),
            Some(SecretSource::Env("GIT_TOKEN".into()))
        );
        assert_eq!(
            SecretSource::parse_reference(" ${file:/run/secrets/t} "),
            Some(SecretSource::File("/run/secrets/t".into()))
        );
        assert_eq!(SecretSource::parse_reference("${env:}"), None);
        assert_eq!(SecretSource::parse_reference("plain"), None);
        assert_eq!(SecretSource::parse_reference("${vault:x}"), None);
        assert_eq!(SecretSource::parse_reference("Bearer ${env:T}"), None);
    }

    #[test]
    fn credentials_are_trimmed_registered_and_errors_name_the_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret-token\n").expect("write");
        let src = SecretSource::File(path.clone());
        let redactor = Redactor::new();
        let read = src.read("token", &redactor).expect("read");
        assert_eq!(read.expose(), "s3cret-token");
        assert_eq!(redactor.redact("x s3cret-token y"), "x *** y");

        std::fs::write(&path, "  \n").expect("write");
        let e = src.read("HTTPS token", &redactor).expect_err("empty");
        assert!(e.to_string().contains("HTTPS token"), "{e}");
        assert!(e.to_string().contains("empty"), "{e}");

        let missing = SecretSource::Env("MOCKOPS_TEST_SURELY_UNSET_VAR".into());
        let e = missing.read("HTTPS token", &redactor).expect_err("unset");
        assert!(e.to_string().starts_with("HTTPS token: "), "{e}");
        assert!(
            e.to_string().contains("MOCKOPS_TEST_SURELY_UNSET_VAR"),
            "{e}"
        );
    }
    use serde_json::json;

    fn secrets() -> Secrets {
        Secrets::with_env(
            Redactor::new(),
            [
                (
                    "SLACK_URL",
                    "https://hooks.slack.example/T000/B000/XXXXsecret",
                ),
                ("TOKEN", "tok-123456"),
                ("EMPTY", ""),
                ("SHORT", "ab"),
            ],
        )
    }

    #[test]
    fn whole_and_embedded_references_resolve() {
        let s = secrets();
        assert_eq!(
            s.resolve("${env:SLACK_URL}").expect("resolves").expose(),
            "https://hooks.slack.example/T000/B000/XXXXsecret"
        );
        assert_eq!(
            s.resolve("Bearer ${env:TOKEN} and ${env:TOKEN}!")
                .expect("resolves")
                .expose(),
            "Bearer tok-123456 and tok-123456!"
        );
        assert_eq!(
            s.resolve("plain text").expect("resolves").expose(),
            "plain text"
        );
        assert_eq!(s.resolve("").expect("resolves").expose(), "");
    }

    #[test]
    fn double_dollar_escapes_and_other_dollars_stay() {
        let s = secrets();
        assert_eq!(
            s.resolve("$${env:TOKEN} costs $5 ${HOME} $")
                .expect("ok")
                .expose(),
            "${env:TOKEN} costs $5 ${HOME} $"
        );
        assert_eq!(
            s.resolve("a$${b${env:TOKEN}").expect("ok").expose(),
            "a${btok-123456"
        );
        assert!(references("$${env:NOPE}").expect("ok").is_empty());
    }

    #[test]
    fn missing_env_names_the_reference_and_the_fix() {
        let err = secrets().resolve("x ${env:NOPE}").expect_err("missing");
        let msg = err.to_string();
        assert!(msg.contains("`${env:NOPE}`"), "{msg}");
        assert!(msg.contains("Environment="), "{msg}");
        let err = secrets().resolve("${env:EMPTY}").expect_err("empty");
        assert!(matches!(err, SecretError::EmptyEnv { .. }));
    }

    #[test]
    fn malformed_references_are_errors() {
        for bad in [
            "${env:TOKEN",
            "${env:}",
            "${env:1A}",
            "${env:A-B}",
            "${file:relative/p}",
        ] {
            let err = secrets().resolve(bad).expect_err(bad);
            assert!(matches!(err, SecretError::Malformed { .. }), "{bad}: {err}");
        }
        // Text that is not a reference is left alone.
        assert_eq!(
            secrets().resolve("${vault:x}").expect("ok").expose(),
            "${vault:x}"
        );
    }

    #[test]
    fn files_lose_one_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("pw");
        std::fs::write(&p, "hunter2-pw\n\n").expect("write");
        let s = secrets();
        let r = format!("${{file:{}}}", p.display());
        assert_eq!(s.resolve(&r).expect("reads").expose(), "hunter2-pw\n");
        std::fs::write(&p, "hunter2-pw\r\n").expect("write");
        assert_eq!(s.resolve(&r).expect("reads").expose(), "hunter2-pw");
        std::fs::write(&p, "no-newline").expect("write");
        assert_eq!(
            s.resolve(&format!("u:{r}@h")).expect("reads").expose(),
            "u:no-newline@h"
        );
    }

    #[test]
    fn unreadable_large_and_odd_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = secrets();
        let missing = dir.path().join("missing");
        let err = s
            .resolve(&format!("${{file:{}}}", missing.display()))
            .expect_err("missing");
        assert!(matches!(err, SecretError::FileUnreadable { .. }));
        assert!(err.to_string().contains("missing"), "{err}");

        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 64 * 1024 + 1]).expect("write");
        let err = s
            .resolve(&format!("${{file:{}}}", big.display()))
            .expect_err("big");
        assert!(matches!(err, SecretError::FileTooLarge { size: 65537, .. }));

        let exact = dir.path().join("exact");
        std::fs::write(&exact, vec![b'a'; 64 * 1024]).expect("write");
        s.resolve(&format!("${{file:{}}}", exact.display()))
            .expect("64 KiB is allowed");

        let err = s
            .resolve(&format!("${{file:{}}}", dir.path().display()))
            .expect_err("dir");
        assert!(matches!(err, SecretError::NotAFile { .. }));

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let err = s
            .resolve(&format!("${{file:{}}}", empty.display()))
            .expect_err("empty");
        assert!(matches!(err, SecretError::EmptyFile { .. }));

        let bin = dir.path().join("bin");
        std::fs::write(&bin, [0xff, 0xfe, 0x00, 0x41]).expect("write");
        let err = s
            .resolve(&format!("${{file:{}}}", bin.display()))
            .expect_err("binary");
        assert!(matches!(err, SecretError::FileNotUnicode { .. }));
    }

    #[test]
    fn symlinked_files_are_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("..data")).expect("mkdir");
        std::fs::write(dir.path().join("..data/token"), "linked-secret").expect("write");
        std::os::unix::fs::symlink("..data/token", dir.path().join("token")).expect("link");
        let r = format!("${{file:{}}}", dir.path().join("token").display());
        assert_eq!(
            secrets().resolve(&r).expect("reads").expose(),
            "linked-secret"
        );
    }

    #[test]
    fn resolved_values_are_redacted_everywhere() {
        let s = secrets();
        let url = s.resolve("${env:SLACK_URL}").expect("ok");
        s.resolve("${env:SHORT}").expect("ok");
        let r = s.redactor();
        let line = format!("POST {} failed", url.expose());
        assert_eq!(r.redact(&line), "POST *** failed");
        // Too short to be worth masking.
        assert_eq!(r.redact("ab cd"), "ab cd");
        // Clones share the registry.
        let clone = r.clone();
        s.resolve("${env:TOKEN}").expect("ok");
        assert_eq!(clone.redact("t=tok-123456"), "t=***");
        assert!(matches!(clone.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn longer_secrets_are_masked_before_their_substrings() {
        let r = Redactor::new();
        r.register("abcd");
        r.register("abcdefgh");
        assert_eq!(r.redact("xabcdefghx abcd"), "x***x ***");
    }

    #[test]
    fn encoded_forms_are_masked() {
        let r = Redactor::new();
        r.register("p@ss w\"rd");
        assert_eq!(r.redact("user=p%40ss%20w%22rd"), "user=***");
        assert_eq!(r.redact(r#"{"pw":"p@ss w\"rd"}"#), r#"{"pw":"***"}"#);
        r.register("-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----\n");
        assert_eq!(r.redact("line MIIEvQIBADANBg"), "line ***");
    }

    #[test]
    fn json_is_redacted_recursively_keys_included() {
        let r = Redactor::new();
        r.register("s3cr3t-value");
        let v = json!({
            "a": "x s3cr3t-value y",
            "list": [1, "s3cr3t-value", {"deep": ["s3cr3t-value"]}],
            "s3cr3t-value": true,
            "n": null
        });
        let red = r.redact_json(&v);
        assert_eq!(
            red,
            json!({
                "a": "x *** y",
                "list": [1, "***", {"deep": ["***"]}],
                "***": true,
                "n": null
            })
        );
        assert!(!red.to_string().contains("s3cr3t"));
    }

    #[test]
    fn json_trees_resolve() {
        let s = secrets();
        let v = json!({
            "Authorization": "Bearer ${env:TOKEN}",
            "nested": [{"k": "${env:TOKEN}"}, 3, "$${env:TOKEN}"],
            "${env:TOKEN}": "keys stay"
        });
        let out = s.resolve_json(&v).expect("resolves");
        assert_eq!(
            out,
            json!({
                "Authorization": "Bearer tok-123456",
                "nested": [{"k": "tok-123456"}, 3, "${env:TOKEN}"],
                "${env:TOKEN}": "keys stay"
            })
        );
        let err = s
            .resolve_json(&json!({"a": ["${env:NOPE}"]}))
            .expect_err("missing");
        assert!(err.to_string().contains("${env:NOPE}"));
    }

    #[test]
    fn secret_debug_is_masked() {
        let s = secrets().resolve("${env:TOKEN}").expect("ok");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let r = Redactor::new();
        r.register("abcdef");
        assert!(!format!("{r:?}").contains("abcdef"));
    }

    #[test]
    fn process_environment_is_read() {
        // PATH is set in every test environment.
        let r = Redactor::new();
        let v = resolve("${env:PATH}", &r).expect("PATH is set");
        assert_eq!(v.expose(), std::env::var("PATH").expect("PATH"));
    }
}
