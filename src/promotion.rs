//! Promotion commits and how the daemon recognises its own.
//!
//! A promotion commit (or the pull request that carries it) ends its message with trailers:
//!
//! ```text
//! Mockops-Promotion-Id: promo-1a2b3c4d5e6f
//! Mockops-Promotion: scenario checkout dev test
//! Mockops-Promotion-Signature: 9f86d081884c7d65…
//! ```
//!
//! When a commit bringing them in is reconciled, `promotion.completed` is emitted once per id.
//! Anyone who can commit could write the first two lines by hand, so the third is an
//! HMAC-SHA256 of the id and the promotion under a key that only the daemon has (made from the
//! operating system's CSPRNG into the state directory, readable by the daemon's user only): a
//! trailer without a valid signature is ignored. The trailers survive merge commits and
//! GitHub's squash messages, so the signature does too.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The trailer with the promotion's id (also the marker a retried step finds its commit by).
pub const ID_TRAILER: &str = "Mockops-Promotion-Id";
/// `<entity type> <entity id> <from environment> <to environment>`.
pub const TRAILER: &str = "Mockops-Promotion";
/// HMAC-SHA256 (hex) of `<id>\n<promotion>` under the daemon's [`PromotionKey`].
pub const SIGNATURE_TRAILER: &str = "Mockops-Promotion-Signature";

/// The key promotion trailers are signed with.
#[derive(Clone)]
pub struct PromotionKey([u8; 32]);

impl std::fmt::Debug for PromotionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PromotionKey(***)")
    }
}

/// The file in the state directory that holds the key.
pub const KEY_FILE: &str = "promotion-key";

impl PromotionKey {
    /// A key given directly (tests).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random key.
    pub fn generate() -> std::io::Result<Self> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self(k))
    }

    /// The key of the state directory `dir`, made on first use. A key file others may read is
    /// refused: with it, anyone could forge `promotion.completed`.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        use std::io::Write as _;
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let path = dir.join(KEY_FILE);
        match std::fs::metadata(&path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                anyhow::ensure!(
                    mode & 0o077 == 0,
                    "{} has mode {mode:04o}: others could read the key that signs promotion \
                     commits; `chmod 600` it",
                    path.display()
                );
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let bytes = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .with_context(|| {
                        format!(
                            "{} is not 64 hex digits: remove it to make a new key (open \
                             promotions signed with the old one will not be recognised)",
                            path.display()
                        )
                    })?;
                Ok(Self(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate().context("cannot read the random source")?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                f.write_all(hex::encode(key.0).as_bytes())
                    .and_then(|()| f.sync_all())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(key)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn mac(&self, id: &str, promotion: &str) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        #[allow(clippy::expect_used)]
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(id.as_bytes());
        mac.update(b"\n");
        mac.update(promotion.as_bytes());
        mac
    }

    /// The signature trailer's value for a promotion.
    pub fn sign(&self, id: &str, promotion: &str) -> String {
        hex::encode(self.mac(id, promotion).finalize().into_bytes())
    }

    /// Whether `signature` was made by this key for this promotion (constant time).
    pub fn verify(&self, id: &str, promotion: &str, signature: &str) -> bool {
        match hex::decode(signature.trim()) {
            Ok(sig) => self.mac(id, promotion).verify_slice(&sig).is_ok(),
            Err(_) => false,
        }
    }
}

/// The three trailers of a promotion, as lines to end a commit message with.
pub fn trailers(key: &PromotionKey, id: &str, promotion: &str) -> String {
    format!(
        "{ID_TRAILER}: {id}\n{TRAILER}: {promotion}\n{SIGNATURE_TRAILER}: {}\n",
        key.sign(id, promotion)
    )
}

/// A promotion a commit message announces with a valid signature: `(id, promotion)`.
pub fn verified(message: &str, key: &PromotionKey) -> Option<(String, String)> {
    let trailer = |name: &str| {
        message.lines().rev().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(':')
                .map(|v| v.trim().to_string())
        })
    };
    let id = trailer(ID_TRAILER)?;
    let what = trailer(TRAILER)?;
    let sig = trailer(SIGNATURE_TRAILER)?;
    key.verify(&id, &what, &sig).then_some((id, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signed_trailers_are_recognised() {
        let key = PromotionKey::from_bytes([7; 32]);
        let msg = format!(
            "Promote scenario checkout from dev to test\n\n{}",
            trailers(&key, "promo-1", "scenario checkout dev test")
        );
        assert_eq!(
            verified(&msg, &key),
            Some(("promo-1".into(), "scenario checkout dev test".into()))
        );
        // Written by hand: no signature.
        let forged = "x\n\nMockops-Promotion-Id: promo-9\nMockops-Promotion: scenario a dev prod\n";
        assert_eq!(verified(forged, &key), None);
        // A real signature copied onto another promotion.
        let moved = msg.replace("dev test", "dev prod");
        assert_eq!(verified(&moved, &key), None);
        // Another daemon's key.
        assert_eq!(verified(&msg, &PromotionKey::from_bytes([8; 32])), None);
        // A squash message keeps the trailers among other text.
        let squashed = format!("Promotion (#12)\n\n* Promote scenario\n\n{msg}\nCo-authored-by: x");
        assert!(verified(&squashed, &key).is_some());
    }

    #[test]
    fn the_key_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let a = PromotionKey::load_or_create(dir.path()).expect("created");
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = PromotionKey::load_or_create(dir.path()).expect("loaded");
        assert_eq!(a.sign("i", "p"), b.sign("i", "p"));
        std::fs::set_permissions(
            dir.path().join(KEY_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        let e = PromotionKey::load_or_create(dir.path()).expect_err("too open");
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }
}
