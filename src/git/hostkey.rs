//! SSH host key pinning: SHA-256 fingerprints in the form `ssh-keygen -lf` prints
//! (`SHA256:` + unpadded base64) and known_hosts files given explicitly (plain, `[host]:port`,
//! wildcard and hashed `|1|` host entries; `@revoked` honoured, `@cert-authority` ignored).
//!
//! No key is ever trusted because it was seen before ("trust on first use"): a key is accepted
//! only if a pin or a known_hosts entry names it.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// `SHA256:<base64>` of a raw SSH public key blob, exactly as `ssh-keygen -lf` prints it.
pub fn fingerprint_sha256(key_blob: &[u8]) -> String {
    format_sha256(&Sha256::digest(key_blob))
}

pub(crate) fn format_sha256(digest: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(digest))
}

/// Why a configured host key pin is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error(
        "host key pin `{0}` is not a SHA-256 fingerprint: write it as `ssh-keygen -lf` prints \
         it, e.g. `SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU` \
         (get it with `ssh-keyscan HOST | ssh-keygen -lf -`)"
    )]
    NotSha256(String),
    #[error(
        "host key pin `{0}` is not a SHA-256 fingerprint: after `SHA256:` it needs the 43 \
         base64 characters `ssh-keygen -lf` prints"
    )]
    BadDigest(String),
}

/// A known_hosts file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read known_hosts file {}: {source}", path.display())]
pub struct KnownHostsError {
    pub path: std::path::PathBuf,
    pub source: std::io::Error,
}

/// Checks a configured pin and returns it in canonical form (no `=` padding).
pub fn normalize_pin(pin: &str) -> Result<String, PinError> {
    let pin = pin.trim();
    let Some(b64) = pin.strip_prefix("SHA256:") else {
        return Err(PinError::NotSha256(pin.to_string()));
    };
    let b64 = b64.trim_end_matches('=');
    match STANDARD_NO_PAD.decode(b64) {
        Ok(bytes) if bytes.len() == 32 => Ok(format_sha256(&bytes)),
        _ => Err(PinError::BadDigest(pin.to_string())),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug, Clone)]
struct Entry {
    marker: Marker,
    hosts: String,
    key_type: String,
    fingerprint: String,
}

/// The entries of a known_hosts file.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

impl KnownHosts {
    pub fn load(path: &Path) -> Result<Self, KnownHostsError> {
        let text = std::fs::read_to_string(path).map_err(|source| KnownHostsError {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::parse(&text))
    }

    /// Parses known_hosts text; lines that are not host key entries are skipped.
    pub fn parse(text: &str) -> Self {
        let mut entries = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let mut first = fields.next();
            let marker = match first {
                Some("@revoked") => Marker::Revoked,
                Some("@cert-authority") => Marker::CertAuthority,
                _ => Marker::None,
            };
            if marker != Marker::None {
                first = fields.next();
            }
            let (Some(hosts), Some(key_type), Some(key)) = (first, fields.next(), fields.next())
            else {
                continue;
            };
            let Ok(blob) = STANDARD.decode(key) else {
                continue;
            };
            entries.push(Entry {
                marker,
                hosts: hosts.to_string(),
                key_type: key_type.to_string(),
                fingerprint: fingerprint_sha256(&blob),
            });
        }
        Self { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What the pins and known_hosts say about a key a server presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    /// Nothing is known about this host.
    Unknown,
    /// The host is known with other keys (their fingerprints).
    Mismatch(Vec<String>),
    /// The key is listed as `@revoked`.
    Revoked,
}

/// Decides whether the key with `fingerprint` may be trusted for `host` on `port`. Pins apply to
/// any host (they are configured for this one remote); known_hosts entries must match the host.
pub fn verify(
    pins: &[String],
    known_hosts: Option<&KnownHosts>,
    host: &str,
    port: u16,
    fingerprint: &str,
) -> Verdict {
    let entries: Vec<&Entry> = known_hosts
        .map(|k| {
            k.entries
                .iter()
                .filter(|e| e.marker != Marker::CertAuthority && host_matches(&e.hosts, host, port))
                .collect()
        })
        .unwrap_or_default();
    if entries
        .iter()
        .any(|e| e.marker == Marker::Revoked && e.fingerprint == fingerprint)
    {
        return Verdict::Revoked;
    }
    if pins.iter().any(|p| p == fingerprint)
        || entries
            .iter()
            .any(|e| e.marker == Marker::None && e.fingerprint == fingerprint)
    {
        return Verdict::Trusted;
    }
    let mut expected: Vec<String> = pins.to_vec();
    for e in entries.iter().filter(|e| e.marker == Marker::None) {
        expected.push(format!("{} {}", e.key_type, e.fingerprint));
    }
    if expected.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Mismatch(expected)
    }
}

/// The name ssh looks up in known_hosts: `host`, or `[host]:port` off port 22.
fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// ssh's host matching: comma-separated patterns with `*` and `?`, `!` negation, and hashed
/// `|1|salt|hash` entries (HMAC-SHA1 of the looked-up name keyed by the salt).
fn host_matches(patterns: &str, host: &str, port: u16) -> bool {
    let name = lookup_name(host, port);
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        return hashed_matches(hashed, &name);
    }
    let mut matched = false;
    for pattern in patterns.split(',') {
        let pattern = pattern.to_ascii_lowercase();
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p.to_string()),
            None => (false, pattern),
        };
        if glob(pattern.as_bytes(), name.as_bytes()) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

fn hashed_matches(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// github.com's published Ed25519 host key and the fingerprint `ssh-keygen -lf` prints for it.
    const GITHUB_ED25519: &str =
        "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    const GITHUB_ED25519_FP: &str = "SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU";

    fn blob() -> Vec<u8> {
        STANDARD.decode(GITHUB_ED25519).expect("base64")
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        assert_eq!(fingerprint_sha256(&blob()), GITHUB_ED25519_FP);
    }

    #[test]
    fn pins_are_normalised_or_refused() {
        assert_eq!(
            normalize_pin(&format!(" {GITHUB_ED25519_FP}= ")).as_deref(),
            Ok(GITHUB_ED25519_FP)
        );
        let e =
            normalize_pin("MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48").expect_err("md5");
        assert!(e.to_string().contains("ssh-keygen -lf"), "{e}");
        assert!(normalize_pin("SHA256:tooshort").is_err());
    }

    #[test]
    fn pin_trusts_and_other_key_mismatches() {
        let pins = vec![GITHUB_ED25519_FP.to_string()];
        assert_eq!(
            verify(&pins, None, "github.com", 22, GITHUB_ED25519_FP),
            Verdict::Trusted
        );
        let other = fingerprint_sha256(b"some other key");
        assert_eq!(
            verify(&pins, None, "github.com", 22, &other),
            Verdict::Mismatch(pins.clone())
        );
        assert_eq!(
            verify(&[], None, "github.com", 22, &other),
            Verdict::Unknown
        );
    }

    #[test]
    fn known_hosts_plain_port_wildcard_and_negation() {
        let kh = KnownHosts::parse(&format!(
            "# comment\n\
             github.com,140.82.121.4 ssh-ed25519 {GITHUB_ED25519}\n\
             [git.internal]:2222 ssh-ed25519 {GITHUB_ED25519}\n\
             *.corp.example,!bad.corp.example ssh-ed25519 {GITHUB_ED25519}\n\
             garbage line\n"
        ));
        let v = |h: &str, p: u16| verify(&[], Some(&kh), h, p, GITHUB_ED25519_FP);
        assert_eq!(v("github.com", 22), Verdict::Trusted);
        assert_eq!(v("GitHub.com", 22), Verdict::Trusted);
        assert_eq!(v("140.82.121.4", 22), Verdict::Trusted);
        assert_eq!(v("github.com", 2222), Verdict::Unknown);
        assert_eq!(v("git.internal", 2222), Verdict::Trusted);
        assert_eq!(v("git.internal", 22), Verdict::Unknown);
        assert_eq!(v("a.corp.example", 22), Verdict::Trusted);
        assert_eq!(v("bad.corp.example", 22), Verdict::Unknown);
        let other = fingerprint_sha256(b"x");
        assert_eq!(
            verify(&[], Some(&kh), "github.com", 22, &other),
            Verdict::Mismatch(vec![format!("ssh-ed25519 {GITHUB_ED25519_FP}")])
        );
    }

    #[test]
    fn hashed_known_hosts_entry() {
        // `ssh-keygen -H` output for "github.com ssh-ed25519 ...".
        let kh = KnownHosts::parse(&format!(
            "|1|UC3gPHdEw+c/b7Gt7uWJrsOeFJ8=|fJnAMIRBB7xXx3vxu0Zyxw4diek= ssh-ed25519 {GITHUB_ED25519}\n"
        ));
        assert_eq!(
            verify(&[], Some(&kh), "github.com", 22, GITHUB_ED25519_FP),
            Verdict::Trusted
        );
        assert_eq!(
            verify(&[], Some(&kh), "gitlab.com", 22, GITHUB_ED25519_FP),
            Verdict::Unknown
        );
    }

    #[test]
    fn revoked_beats_pins_and_cert_authority_is_ignored() {
        let kh = KnownHosts::parse(&format!(
            "@revoked github.com ssh-ed25519 {GITHUB_ED25519}\n\
             @cert-authority *.example ssh-ed25519 {GITHUB_ED25519}\n"
        ));
        let pins = vec![GITHUB_ED25519_FP.to_string()];
        assert_eq!(
            verify(&pins, Some(&kh), "github.com", 22, GITHUB_ED25519_FP),
            Verdict::Revoked
        );
        assert_eq!(
            verify(&[], Some(&kh), "a.example", 22, GITHUB_ED25519_FP),
            Verdict::Unknown
        );
    }

    #[test]
    fn glob_patterns() {
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"ac"));
        assert!(glob(b"*.example.com", b"x.example.com"));
        assert!(!glob(b"*.example.com", b"example.com"));
    }
}
