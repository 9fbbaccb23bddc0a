//! Secrets at run time: `${env:NAME}` and `${file:/path}` references in config strings are
//! resolved when a step runs (never at load time, never stored), and every value resolved is
//! registered with a [`Redactor`] that masks it in anything mockops writes out.
//!
//! A reference may be a whole value (`${env:SLACK_WEBHOOK_URL}`) or part of a longer string
//! (`Bearer ${file:/run/secrets/token}`). `$${` writes a literal `${`. Other `${...}` text is
//! left alone. `crate::config::inline_secrets` warns about secrets written inline at validation time.
//!
//! **Only text the repository wrote names a secret.** Step configs are templates filled with
//! event data (a commit message, a posted event), and that data must never be able to name a
//! secret. So references are *sealed* ([`seal`], [`seal_json`]) in the text as the repository
//! wrote it, before any template is rendered: each becomes a token carrying an HMAC under a
//! key that exists only in this process. [`Secrets::resolve`] resolves sealed tokens and
//! nothing else; a `${env:...}` that arrives through data stays literal text, and data cannot
//! forge a token without the key.
//!
//! What a reference may read is bounded by a [`SecretPolicy`]: `${file:}` only under allowed
//! directories (by default systemd's `$CREDENTIALS_DIRECTORY` and `/run/secrets`), `${env:}`
//! only names on an allow-list when one is configured.

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
    #[error(
        "secret file `{reference}` is outside the directories secrets are read from ({allowed}): \
         mount the secret under one of them, or start the daemon with `--secret-dir DIR`"
    )]
    FileNotAllowed { reference: String, allowed: String },
    #[error(
        "secret `{reference}` is not on the daemon's allow-list of environment variables \
         ({allowed}): rename the variable, or add it with `--secret-env NAME` (a trailing `*` \
         allows a prefix)"
    )]
    EnvNotAllowed { reference: String, allowed: String },
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
    if path.contains("{{") || path.contains("{%") {
        return Err(SecretError::Malformed {
            text: excerpt(&format!("{FILE_PREFIX}{path}")),
            reason: "a reference cannot contain a template: the secret it names is fixed in the \
                     repository, never chosen by event data"
                .into(),
        });
    }
    if path.chars().any(char::is_control) {
        return Err(SecretError::Malformed {
            text: excerpt(&format!("{FILE_PREFIX}{path}")),
            reason: "the path holds control characters".into(),
        });
    }
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

/// What references may read: the directories `${file:}` may name, and (when set) the
/// environment variables `${env:}` may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretPolicy {
    /// Directories whose files (after symlinks are followed) may be read.
    pub file_dirs: Vec<PathBuf>,
    /// Names `${env:}` may read; an entry ending in `*` allows a prefix. `None`: any name.
    pub env_allow: Option<Vec<String>>,
}

/// Where secret files are mounted by default: `/run/secrets` (Kubernetes and container
/// conventions).
pub const DEFAULT_SECRET_DIR: &str = "/run/secrets";

impl Default for SecretPolicy {
    /// `$CREDENTIALS_DIRECTORY` (systemd's `LoadCredential=`) when set, and `/run/secrets`;
    /// any environment variable.
    fn default() -> Self {
        let mut file_dirs = Vec::new();
        if let Some(d) = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
            file_dirs.push(PathBuf::from(d));
        }
        file_dirs.push(PathBuf::from(DEFAULT_SECRET_DIR));
        Self {
            file_dirs,
            env_allow: None,
        }
    }
}

impl SecretPolicy {
    /// The default directories plus `extra`.
    pub fn with_dirs(extra: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut p = Self::default();
        for d in extra {
            if !p.file_dirs.contains(&d) {
                p.file_dirs.push(d);
            }
        }
        p
    }

    fn check_env(&self, r: &SecretRef, name: &str) -> Result<(), SecretError> {
        let Some(allow) = &self.env_allow else {
            return Ok(());
        };
        let ok = allow.iter().any(|a| match a.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => a == name,
        });
        if ok {
            Ok(())
        } else {
            Err(SecretError::EnvNotAllowed {
                reference: r.to_string(),
                allowed: if allow.is_empty() {
                    "none".into()
                } else {
                    allow.join(", ")
                },
            })
        }
    }

    /// The file a reference may read: its canonical path, when that lies under an allowed
    /// directory (itself canonicalized, so a symlink cannot lead out of it).
    fn check_file(&self, r: &SecretRef, path: &Path) -> Result<PathBuf, SecretError> {
        let refused = || SecretError::FileNotAllowed {
            reference: r.to_string(),
            allowed: self.describe_dirs(),
        };
        // An unreadable path outside the allowed directories is refused as such, not reported
        // as missing: an error must not tell whether a file exists where it may not be read.
        let lexical_ok = !path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
            && self.file_dirs.iter().any(|d| path.starts_with(d));
        let canonical = match std::fs::canonicalize(path) {
            Ok(c) => c,
            Err(e) if lexical_ok => {
                return Err(SecretError::FileUnreadable {
                    reference: r.to_string(),
                    reason: e.to_string(),
                });
            }
            Err(_) => return Err(refused()),
        };
        let inside = self.file_dirs.iter().any(|d| {
            std::fs::canonicalize(d)
                .map(|d| canonical.starts_with(&d))
                .unwrap_or(false)
        });
        if inside {
            Ok(canonical)
        } else {
            Err(refused())
        }
    }

    fn describe_dirs(&self) -> String {
        if self.file_dirs.is_empty() {
            return "none".into();
        }
        self.file_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Resolves sealed references and registers what it resolves with its redactor. Cheap to
/// clone.
#[derive(Clone)]
pub struct Secrets {
    redactor: Redactor,
    env: Env,
    policy: Arc<SecretPolicy>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env = match &self.env {
            Env::Process => "process",
            Env::Fixed(_) => "fixed",
        };
        f.debug_struct("Secrets")
            .field("env", &env)
            .field("policy", &self.policy)
            .field("redactor", &self.redactor)
            .finish()
    }
}

impl Secrets {
    /// Reads `${env:...}` from the process environment, under the default policy.
    pub fn new(redactor: Redactor) -> Self {
        Self {
            redactor,
            env: Env::Process,
            policy: Arc::new(SecretPolicy::default()),
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
            policy: Arc::new(SecretPolicy::default()),
        }
    }

    /// The same, reading only what `policy` allows.
    pub fn with_policy(mut self, policy: SecretPolicy) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    pub fn policy(&self) -> &SecretPolicy {
        &self.policy
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Resolves every sealed reference in `s` (see [`seal`]). Anything else, including
    /// `${env:...}` text that was not sealed, is kept as it is.
    pub fn resolve(&self, s: &str) -> Result<Secret, SecretError> {
        if !s.contains(SEAL_TAG) {
            return Ok(Secret(s.to_string()));
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(at) = rest.find(SEAL_TAG) {
            out.push_str(&rest[..at]);
            let tail = &rest[at..];
            match unseal_token(tail) {
                Some((r, len)) => {
                    let value = self.lookup(&r)?;
                    self.redactor.register(&value);
                    out.push_str(&value);
                    rest = &tail[len..];
                }
                None => {
                    out.push_str(SEAL_TAG);
                    rest = &tail[SEAL_TAG.len()..];
                }
            }
        }
        out.push_str(rest);
        Ok(Secret(out))
    }

    /// Resolves an optional value.
    pub fn resolve_opt(&self, s: Option<&str>) -> Result<Option<Secret>, SecretError> {
        s.map(|s| self.resolve(s)).transpose()
    }

    /// A copy of `value` with the sealed references in every string resolved (object keys are
    /// kept as written). The result may hold secrets: send it, never log or store it.
    pub fn resolve_json(&self, value: &Json) -> Result<Json, SecretError> {
        Ok(match value {
            Json::String(s) if s.contains(SEAL_TAG) => {
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
                self.policy.check_env(r, name)?;
                self.lookup_env(r, name)
            }
            SecretRef::File(path) => {
                let path = self.policy.check_file(r, path)?;
                read_secret_file(&path, &r.to_string())
            }
        }
    }

    fn lookup_env(&self, r: &SecretRef, name: &str) -> Result<String, SecretError> {
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
                name: name.to_string(),
            }),
            Some(v) if v.is_empty() => Err(SecretError::EmptyEnv {
                reference: r.to_string(),
                name: name.to_string(),
            }),
            Some(v) => Ok(v),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sealing

/// Starts a sealed reference: `\u{1}mockops-secret:<mac>:<e|f>:<name or path>\u{2}`.
const SEAL_TAG: &str = "\u{1}mockops-secret:";
const SEAL_END: char = '\u{2}';
/// Hex digits of the MAC kept in a token (128 bits).
const MAC_HEX: usize = 32;

/// The key sealed references are authenticated with: random, made once per process from the
/// operating system's CSPRNG, never written anywhere.
fn seal_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        // Without a CSPRNG there is no safe key: stop rather than seal with a guessable one.
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut k).expect("the operating system's random number generator");
        k
    })
}

fn seal_mac(kind: char, body: &str) -> String {
    use hmac::{Hmac, Mac};
    #[allow(clippy::expect_used)]
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(seal_key()).expect("HMAC takes a key of any size");
    mac.update(&[kind as u8, b':']);
    mac.update(body.as_bytes());
    let full = hex::encode(mac.finalize().into_bytes());
    full[..MAC_HEX].to_string()
}

fn seal_ref(r: &SecretRef) -> String {
    let (kind, body) = match r {
        SecretRef::Env(name) => ('e', name.clone()),
        SecretRef::File(path) => ('f', path.display().to_string()),
    };
    format!(
        "{SEAL_TAG}{}:{kind}:{body}{SEAL_END}",
        seal_mac(kind, &body)
    )
}

/// The reference at the start of `s` (which starts with [`SEAL_TAG`]) and the length of its
/// token, when the token is whole and its MAC is right.
fn unseal_token(s: &str) -> Option<(SecretRef, usize)> {
    let body = s.strip_prefix(SEAL_TAG)?;
    let end = body.find(SEAL_END)?;
    let inner = &body[..end];
    let (mac, rest) = inner.split_once(':')?;
    let (kind, name) = rest.split_once(':')?;
    let kind = match kind {
        "e" => 'e',
        "f" => 'f',
        _ => return None,
    };
    let expected = seal_mac(kind, name);
    if mac.len() != MAC_HEX || !constant_eq(mac.as_bytes(), expected.as_bytes()) {
        return None;
    }
    let r = match kind {
        'e' => SecretRef::Env(name.to_string()),
        _ => SecretRef::File(PathBuf::from(name)),
    };
    Some((r, SEAL_TAG.len() + end + SEAL_END.len_utf8()))
}

/// Compares without stopping at the first difference (tokens, MACs).
pub fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Seals the references in text the repository wrote: each `${env:...}`/`${file:...}` becomes
/// a token only [`Secrets::resolve`] turns into its value, and `$${` becomes a literal `${`.
/// Call it on config text *before* any template is rendered into it.
pub fn seal(s: &str) -> Result<String, SecretError> {
    if !has_references(s) && !s.contains(ESCAPE) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len() + 64);
    for piece in parse(s)? {
        match piece {
            Piece::Text(t) => out.push_str(&t),
            Piece::Ref(r) => out.push_str(&seal_ref(&r)),
        }
    }
    Ok(out)
}

/// [`seal`] applied to every string of `value` (object keys are kept as written).
pub fn seal_json(value: &Json) -> Result<Json, SecretError> {
    Ok(match value {
        Json::String(s) => Json::String(seal(s)?),
        Json::Array(items) => Json::Array(items.iter().map(seal_json).collect::<Result<_, _>>()?),
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), seal_json(v)?)))
                .collect::<Result<_, SecretError>>()?,
        ),
        other => other.clone(),
    })
}

/// Whether `s` carries a sealed reference (its value will be a secret once resolved).
pub fn has_sealed(s: &str) -> bool {
    s.contains(SEAL_TAG)
}

/// [`unsealed_for_display`] applied to every string of `value`: for steps that resolve no
/// secrets, so they see the text as the repository wrote it.
pub fn unsealed_json(value: &Json) -> Json {
    match value {
        Json::String(s) => Json::String(unsealed_for_display(s).into_owned()),
        Json::Array(items) => Json::Array(items.iter().map(unsealed_json).collect()),
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), unsealed_json(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `s` with sealed references written back as `${env:NAME}` / `${file:PATH}`, for messages
/// and records.
pub fn unsealed_for_display(s: &str) -> Cow<'_, str> {
    if !s.contains(SEAL_TAG) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(SEAL_TAG) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        match unseal_token(tail) {
            Some((r, len)) => {
                out.push_str(&r.to_string());
                rest = &tail[len..];
            }
            None => {
                out.push('\u{fffd}');
                rest = &tail[SEAL_TAG.len()..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
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
                .lookup_env(&SecretRef::Env(name.clone()), name)
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

    /// `s` with every registered secret replaced by `***` (and sealed references written
    /// back as `${env:NAME}`).
    pub fn redact<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let values = self.values.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = unsealed_for_display(s);
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

    fn res(s: &Secrets, text: &str) -> Result<Secret, SecretError> {
        s.resolve(&seal(text)?)
    }

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
        .with_policy(SecretPolicy {
            file_dirs: vec![std::env::temp_dir()],
            env_allow: None,
        })
    }

    #[test]
    fn whole_and_embedded_references_resolve() {
        let s = secrets();
        assert_eq!(
            res(&s, "${env:SLACK_URL}").expect("resolves").expose(),
            "https://hooks.slack.example/T000/B000/XXXXsecret"
        );
        assert_eq!(
            res(&s, "Bearer ${env:TOKEN} and ${env:TOKEN}!")
                .expect("resolves")
                .expose(),
            "Bearer tok-123456 and tok-123456!"
        );
        assert_eq!(
            res(&s, "plain text").expect("resolves").expose(),
            "plain text"
        );
        assert_eq!(res(&s, "").expect("resolves").expose(), "");
    }

    #[test]
    fn double_dollar_escapes_and_other_dollars_stay() {
        let s = secrets();
        assert_eq!(
            res(&s, "$${env:TOKEN} costs $5 ${HOME} $")
                .expect("ok")
                .expose(),
            "${env:TOKEN} costs $5 ${HOME} $"
        );
        assert_eq!(
            res(&s, "a$${b${env:TOKEN}").expect("ok").expose(),
            "a${btok-123456"
        );
        assert!(references("$${env:NOPE}").expect("ok").is_empty());
    }

    #[test]
    fn missing_env_names_the_reference_and_the_fix() {
        let err = res(&secrets(), "x ${env:NOPE}").expect_err("missing");
        let msg = err.to_string();
        assert!(msg.contains("`${env:NOPE}`"), "{msg}");
        assert!(msg.contains("Environment="), "{msg}");
        let err = res(&secrets(), "${env:EMPTY}").expect_err("empty");
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
            let err = res(&secrets(), bad).expect_err(bad);
            assert!(matches!(err, SecretError::Malformed { .. }), "{bad}: {err}");
        }
        // Text that is not a reference is left alone.
        assert_eq!(
            res(&secrets(), "${vault:x}").expect("ok").expose(),
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
        assert_eq!(res(&s, &r).expect("reads").expose(), "hunter2-pw\n");
        std::fs::write(&p, "hunter2-pw\r\n").expect("write");
        assert_eq!(res(&s, &r).expect("reads").expose(), "hunter2-pw");
        std::fs::write(&p, "no-newline").expect("write");
        assert_eq!(
            res(&s, &format!("u:{r}@h")).expect("reads").expose(),
            "u:no-newline@h"
        );
    }

    #[test]
    fn unreadable_large_and_odd_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = secrets();
        let missing = dir.path().join("missing");
        let err = res(&s, &format!("${{file:{}}}", missing.display())).expect_err("missing");
        assert!(matches!(err, SecretError::FileUnreadable { .. }));
        assert!(err.to_string().contains("missing"), "{err}");

        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 64 * 1024 + 1]).expect("write");
        let err = res(&s, &format!("${{file:{}}}", big.display())).expect_err("big");
        assert!(matches!(err, SecretError::FileTooLarge { size: 65537, .. }));

        let exact = dir.path().join("exact");
        std::fs::write(&exact, vec![b'a'; 64 * 1024]).expect("write");
        res(&s, &format!("${{file:{}}}", exact.display())).expect("64 KiB is allowed");

        let err = res(&s, &format!("${{file:{}}}", dir.path().display())).expect_err("dir");
        assert!(matches!(err, SecretError::NotAFile { .. }));

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let err = res(&s, &format!("${{file:{}}}", empty.display())).expect_err("empty");
        assert!(matches!(err, SecretError::EmptyFile { .. }));

        let bin = dir.path().join("bin");
        std::fs::write(&bin, [0xff, 0xfe, 0x00, 0x41]).expect("write");
        let err = res(&s, &format!("${{file:{}}}", bin.display())).expect_err("binary");
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
            res(&secrets(), &r).expect("reads").expose(),
            "linked-secret"
        );
    }

    #[test]
    fn resolved_values_are_redacted_everywhere() {
        let s = secrets();
        let url = res(&s, "${env:SLACK_URL}").expect("ok");
        res(&s, "${env:SHORT}").expect("ok");
        let r = s.redactor();
        let line = format!("POST {} failed", url.expose());
        assert_eq!(r.redact(&line), "POST *** failed");
        // Too short to be worth masking.
        assert_eq!(r.redact("ab cd"), "ab cd");
        // Clones share the registry.
        let clone = r.clone();
        res(&s, "${env:TOKEN}").expect("ok");
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
        let out = s
            .resolve_json(&seal_json(&v).expect("seals"))
            .expect("resolves");
        assert_eq!(
            out,
            json!({
                "Authorization": "Bearer tok-123456",
                "nested": [{"k": "tok-123456"}, 3, "${env:TOKEN}"],
                "${env:TOKEN}": "keys stay"
            })
        );
        let err = s
            .resolve_json(&seal_json(&json!({"a": ["${env:NOPE}"]})).expect("seals"))
            .expect_err("missing");
        assert!(err.to_string().contains("${env:NOPE}"));
    }

    #[test]
    fn secret_debug_is_masked() {
        let s = res(&secrets(), "${env:TOKEN}").expect("ok");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let r = Redactor::new();
        r.register("abcdef");
        assert!(!format!("{r:?}").contains("abcdef"));
    }

    #[test]
    fn process_environment_is_read() {
        // PATH is set in every test environment.
        let r = Redactor::new();
        let v = res(&Secrets::new(r), "${env:PATH}").expect("PATH is set");
        assert_eq!(v.expose(), std::env::var("PATH").expect("PATH"));
    }

    #[test]
    fn references_from_data_are_never_resolved() {
        let s = secrets();
        // Text that arrived through data (not sealed) keeps its reference as literal text.
        let data = "commit message ${env:TOKEN} ${file:/etc/hostname}";
        assert_eq!(s.resolve(data).expect("ok").expose(), data);
        assert_eq!(
            s.resolve_json(&json!({"m": data})).expect("ok"),
            json!({"m": data})
        );
        // A sealed reference next to it is resolved; the data stays literal.
        let written = seal("Bearer ${env:TOKEN}").expect("seals");
        let mixed = format!("{written} / {data}");
        assert_eq!(
            s.resolve(&mixed).expect("ok").expose(),
            format!("Bearer tok-123456 / {data}")
        );
    }

    #[test]
    fn forged_or_tampered_tokens_resolve_to_nothing_secret() {
        let s = secrets();
        let token = seal("${env:TOKEN}").expect("seals");
        // Changing the name keeps the MAC of the other name: refused.
        let forged = token.replace(":e:TOKEN", ":e:SLACK_URL");
        let out = s.resolve(&forged).expect("ok").into_exposed();
        assert!(!out.contains("hooks.slack"), "{out:?}");
        // A token written by hand with a made-up MAC.
        let made_up = format!("{SEAL_TAG}{}:e:TOKEN{SEAL_END}", "0".repeat(MAC_HEX));
        let out = s.resolve(&made_up).expect("ok").into_exposed();
        assert!(!out.contains("tok-123456"), "{out:?}");
        // Truncated tokens are text.
        let cut = &token[..token.len() - 1];
        assert!(!s.resolve(cut).expect("ok").expose().contains("tok-123456"));
    }

    #[test]
    fn references_cannot_carry_templates() {
        for bad in [
            "${file:/run/secrets/{{ event.name }}}",
            "${env:{{event.x}}}",
        ] {
            let err = seal(bad).expect_err(bad);
            assert!(matches!(err, SecretError::Malformed { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn sealed_references_display_as_written() {
        let sealed = seal("a ${env:TOKEN} b $${env:X}").expect("seals");
        assert_eq!(unsealed_for_display(&sealed), "a ${env:TOKEN} b ${env:X}");
        let r = Redactor::new();
        assert_eq!(r.redact(&sealed), "a ${env:TOKEN} b ${env:X}");
        assert!(has_sealed(&sealed));
        assert!(!has_sealed("a ${env:TOKEN}"));
    }

    #[test]
    fn files_outside_the_allowed_directories_are_refused() {
        let allowed = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir_in(".").expect("tempdir outside /tmp");
        std::fs::write(allowed.path().join("ok"), "fine-secret").expect("write");
        std::fs::write(outside.path().join("key"), "daemon-secret").expect("write");
        std::os::unix::fs::symlink(outside.path().join("key"), allowed.path().join("link"))
            .expect("link");
        let s = Secrets::with_env(Redactor::new(), [("A", "a")]).with_policy(SecretPolicy {
            file_dirs: vec![allowed.path().to_path_buf()],
            env_allow: None,
        });
        let at = |p: &Path| format!("${{file:{}}}", p.display());
        assert_eq!(
            res(&s, &at(&allowed.path().join("ok")))
                .expect("allowed")
                .expose(),
            "fine-secret"
        );
        for p in [
            outside.path().join("key"),
            // A symlink inside that leads out.
            allowed.path().join("link"),
            // `..` out of the directory.
            {
                let up = allowed.path().components().count();
                let mut p = allowed.path().to_path_buf();
                for _ in 0..up {
                    p.push("..");
                }
                p.join(
                    outside
                        .path()
                        .canonicalize()
                        .expect("canon")
                        .strip_prefix("/")
                        .expect("absolute")
                        .join("key"),
                )
            },
            // A file that does not exist outside is refused, not reported missing.
            PathBuf::from("/etc/mockops-surely-missing"),
        ] {
            let err = res(&s, &at(&p)).expect_err("outside");
            assert!(
                matches!(err, SecretError::FileNotAllowed { .. }),
                "{}: {err}",
                p.display()
            );
            assert!(err.to_string().contains("--secret-dir"), "{err}");
        }
        let err = res(&s, &at(&allowed.path().join("missing"))).expect_err("missing");
        assert!(matches!(err, SecretError::FileUnreadable { .. }), "{err}");
    }

    #[test]
    fn env_allow_list_names_and_prefixes() {
        let s = Secrets::with_env(
            Redactor::new(),
            [
                ("MOCKOPS_SLACK", "s-value"),
                ("GITHUB_TOKEN", "g-value"),
                ("API_KEY", "k-value"),
            ],
        )
        .with_policy(SecretPolicy {
            file_dirs: vec![],
            env_allow: Some(vec!["MOCKOPS_*".into(), "API_KEY".into()]),
        });
        assert_eq!(
            res(&s, "${env:MOCKOPS_SLACK}").expect("prefix").expose(),
            "s-value"
        );
        assert_eq!(res(&s, "${env:API_KEY}").expect("name").expose(), "k-value");
        let err = res(&s, "${env:GITHUB_TOKEN}").expect_err("not allowed");
        assert!(matches!(err, SecretError::EnvNotAllowed { .. }), "{err}");
        assert!(!err.to_string().contains("g-value"));
    }
}
