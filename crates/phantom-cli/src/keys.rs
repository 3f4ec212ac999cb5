//! Key files: `server.key` (secret, mode 0600), `server.pub` (hex) and `server.cert`
//! (the certificate the key signed, raw bytes: a client that has it encapsulates to
//! the server's static key in its first flight, a one-round-trip PDK handshake), and the
//! fleet key file (`keygen --fleet`: 64 hex digits and a newline, mode 0600).

use std::path::Path;

use phantom::keyfiles::{self, KeyFileError};
use phantom::{FleetKey, HybridVerifyingKey, ServerIdentity};

use crate::CliError;

/// The certificate file `keygen` writes beside `server.pub`.
pub(crate) const CERT_FILE: &str = keyfiles::CERTIFICATE_FILE;

fn file_err(path: &Path, source: std::io::Error) -> CliError {
    CliError::File {
        path: path.display().to_string(),
        source,
    }
}

impl From<KeyFileError> for CliError {
    fn from(e: KeyFileError) -> Self {
        match e {
            KeyFileError::Io { path, source } => CliError::File {
                path: path.display().to_string(),
                source,
            },
            other => CliError::Usage(other.to_string()),
        }
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    keyfiles::to_hex(bytes)
}

/// Decodes hex (either case); `None` for anything else.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    keyfiles::from_hex(s)
}

/// A fresh identity (valid for ten years) and its public key.
pub(crate) fn generate() -> Result<(ServerIdentity, HybridVerifyingKey), CliError> {
    Ok(keyfiles::generate_identity()?)
}

/// `phantom keygen --out DIR`.
pub(crate) fn keygen(out: &Path) -> Result<(), CliError> {
    let (id, vk) = generate()?;
    let files = keyfiles::write_key_files(out, &id, &vk)?;
    say!("wrote {} (secret, mode 0600)", files.secret_key.display());
    say!(
        "wrote {} (give this to clients)",
        files.public_key.display()
    );
    say!(
        "wrote {} (give this to clients too: one-round-trip handshakes)",
        files.certificate.display()
    );
    say!("key id {}", &to_hex(&vk.key_id())[..16]);
    Ok(())
}

/// `phantom keygen --fleet FILE`: a fresh fleet key, as 64 hex digits and a newline,
/// in a new file of mode 0600 (an existing file is refused, never overwritten).
pub(crate) fn keygen_fleet(path: &Path) -> Result<(), CliError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let key = FleetKey::generate(&mut rand::rng());
    let mut text = zeroize::Zeroizing::new(to_hex(key.to_bytes().as_slice()));
    text.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => CliError::Usage(format!(
                "{}: already exists (a fleet key is never overwritten)",
                path.display()
            )),
            _ => file_err(path, e),
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| file_err(path, e))?;
    say!("wrote {} (fleet key, secret, mode 0600)", path.display());
    Ok(())
}

/// Loads a fleet key file: 64 hex digits (either case), surrounding whitespace allowed.
pub(crate) fn load_fleet_key(path: &Path) -> Result<FleetKey, CliError> {
    let text = zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| file_err(path, e))?);
    let bad = || CliError::BadKey {
        path: path.display().to_string(),
        reason: format!("a fleet key is {} hex digits", 2 * FleetKey::LEN),
    };
    let hex = std::str::from_utf8(&text).map_err(|_| bad())?.trim();
    let bytes = zeroize::Zeroizing::new(unhex(hex).ok_or_else(bad)?);
    let mut array: [u8; FleetKey::LEN] = bytes.as_slice().try_into().map_err(|_| bad())?;
    let key = FleetKey::from_bytes(array);
    zeroize::Zeroize::zeroize(&mut array);
    Ok(key)
}

/// Loads `server.key`.
pub(crate) fn load_identity(path: &Path) -> Result<ServerIdentity, CliError> {
    let bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| file_err(path, e))?);
    ServerIdentity::from_bytes(&bytes).map_err(|e| CliError::BadKey {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Loads `server.pub` (hex, or the raw 1984 bytes).
pub(crate) fn load_public(path: &Path) -> Result<HybridVerifyingKey, CliError> {
    let raw = std::fs::read(path).map_err(|e| file_err(path, e))?;
    keyfiles::parse_public_key(&raw).map_err(|e| CliError::BadKey {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Loads a certificate file and verifies it against the pinned key `key` (both
/// signatures and the expiry).
pub(crate) fn load_certificate(
    path: &Path,
    key: &HybridVerifyingKey,
) -> Result<phantom::VerifiedCertificate, CliError> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, e))?;
    let bad = |e: &dyn std::fmt::Display| CliError::BadKey {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    phantom::ServerCertificate::from_bytes(&bytes)
        .map_err(|e| bad(&e))?
        .verify(key, phantom::unix_time())
        .map_err(|e| bad(&format!("does not verify under the server key: {e}")))
}
