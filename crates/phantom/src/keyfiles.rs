//! Server key files, in the formats the `phantom` command and the C ABI share.
//!
//! A key directory holds three files:
//!
//! | file          | contents                                                        | mode |
//! |---------------|-----------------------------------------------------------------|------|
//! | `server.key`  | the [`ServerIdentity`]'s secret encoding                        | 0600 |
//! | `server.pub`  | the [`HybridVerifyingKey`] in lower-case hex and a newline      | 0644 |
//! | `server.cert` | the certificate the key signed, raw bytes (enables PDK handshakes) | 0644 |
//!
//! The secret is written from a zeroizing buffer into a file created (or truncated)
//! with mode 0600; an existing file is forced to 0600 before any byte is written.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use phantom_handshake::{HybridSigningKey, HybridVerifyingKey, ServerIdentity};

/// File name of the secret key in a key directory.
pub const SECRET_KEY_FILE: &str = "server.key";
/// File name of the public (pinned) key in a key directory.
pub const PUBLIC_KEY_FILE: &str = "server.pub";
/// File name of the certificate in a key directory.
pub const CERTIFICATE_FILE: &str = "server.cert";

/// Lifetime of the certificate [`generate_identity`] signs: ten years.
pub const CERTIFICATE_LIFETIME_SECS: u64 = 10 * 365 * 86_400;

/// Why key material could not be generated, written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// A file or directory could not be created, written or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The new key could not certify its static keys.
    #[error("cannot certify the new key: {0}")]
    Certify(String),
    /// Bytes that should hold a public key do not.
    #[error("invalid public key: {0}")]
    PublicKey(String),
}

/// The paths [`write_key_files`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFiles {
    /// `server.key`, the secret (mode 0600).
    pub secret_key: PathBuf,
    /// `server.pub`, the key clients pin.
    pub public_key: PathBuf,
    /// `server.cert`, the certificate clients may hold for one-round-trip handshakes.
    pub certificate: PathBuf,
}

/// A fresh server identity whose certificate is valid for
/// [`CERTIFICATE_LIFETIME_SECS`], and the key clients pin.
///
/// # Errors
/// [`KeyFileError::Certify`] if the certificate cannot be signed.
pub fn generate_identity() -> Result<(ServerIdentity, HybridVerifyingKey), KeyFileError> {
    let mut rng = rand::rng();
    let signing = HybridSigningKey::generate(&mut rng);
    let not_after = crate::unix_time().saturating_add(CERTIFICATE_LIFETIME_SECS);
    let identity = ServerIdentity::generate(&signing, &mut rng, not_after)
        .map_err(|e| KeyFileError::Certify(e.to_string()))?;
    Ok((identity, signing.verifying_key()))
}

/// Writes `identity` and its public key `public` into directory `dir` (created if
/// missing) as `server.key` (mode 0600), `server.pub` and `server.cert`.
///
/// # Errors
/// [`KeyFileError::Io`] naming the file that could not be written.
pub fn write_key_files(
    dir: &Path,
    identity: &ServerIdentity,
    public: &HybridVerifyingKey,
) -> Result<KeyFiles, KeyFileError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyFileError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let files = KeyFiles {
        secret_key: dir.join(SECRET_KEY_FILE),
        public_key: dir.join(PUBLIC_KEY_FILE),
        certificate: dir.join(CERTIFICATE_FILE),
    };
    write_secret_file(&files.secret_key, &identity.to_bytes())?;
    std::fs::write(
        &files.public_key,
        format!("{}\n", to_hex(&public.to_bytes())),
    )
    .map_err(io(&files.public_key))?;
    std::fs::write(&files.certificate, identity.certificate().to_bytes())
        .map_err(io(&files.certificate))?;
    Ok(files)
}

/// Writes `secret` to `path` with mode 0600 (forced on an existing file before
/// anything is written) and syncs it.
///
/// # Errors
/// [`KeyFileError::Io`] naming `path`.
pub fn write_secret_file(path: &Path, secret: &[u8]) -> Result<(), KeyFileError> {
    let err = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    // `open` keeps the mode of a file that already exists.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    f.write_all(secret).map_err(err)?;
    f.sync_all().map_err(err)
}

/// Parses a public key given as `server.pub` holds it (hex, either case, surrounding
/// whitespace ignored) or as its raw bytes.
///
/// # Errors
/// [`KeyFileError::PublicKey`] if neither reading gives a valid key.
pub fn parse_public_key(bytes: &[u8]) -> Result<HybridVerifyingKey, KeyFileError> {
    let decoded = std::str::from_utf8(bytes).ok().and_then(from_hex);
    HybridVerifyingKey::from_bytes(decoded.as_deref().unwrap_or(bytes))
        .map_err(|e| KeyFileError::PublicKey(e.to_string()))
}

/// Lower-case hex of `bytes`.
#[must_use]
pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Decodes hex (either case, surrounding whitespace ignored); `None` for anything
/// else, including an odd number of digits.
#[must_use]
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| -> Option<u8> {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| match pair {
            [h, l] => Some((digit(*h)? << 4) | digit(*l)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let bytes = [0x00, 0x7f, 0x80, 0xff, 0x12];
        assert_eq!(to_hex(&bytes), "007f80ff12");
        assert_eq!(from_hex("007F80ff12\n").as_deref(), Some(&bytes[..]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }

    #[test]
    fn key_files_round_trip_with_a_private_secret() {
        let dir = std::env::temp_dir().join(format!("phantom-keyfiles-{}", std::process::id()));
        let (identity, public) = generate_identity().expect("generate");
        let files = write_key_files(&dir, &identity, &public).expect("write");
        let mode = std::fs::metadata(&files.secret_key)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let secret = std::fs::read(&files.secret_key).expect("read key");
        assert_eq!(secret, identity.to_bytes().to_vec());
        let pinned = parse_public_key(&std::fs::read(&files.public_key).expect("read pub"))
            .expect("parse pub");
        assert_eq!(pinned.to_bytes(), public.to_bytes());
        let cert = std::fs::read(&files.certificate).expect("read cert");
        assert_eq!(cert, identity.certificate().to_bytes());
        // Rewriting over an existing, world-readable key file forces it back to 0600.
        std::fs::set_permissions(&files.secret_key, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        write_key_files(&dir, &identity, &public).expect("rewrite");
        let mode = std::fs::metadata(&files.secret_key)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
