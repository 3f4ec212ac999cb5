//! Key files: `server.key` (secret, mode 0600), `server.pub` (hex) and `server.cert`
//! (the certificate the key signed, raw bytes: a client that has it encapsulates to
//! the server's static key in its first flight, a one-round-trip PDK handshake).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use phantom::{HybridSigningKey, HybridVerifyingKey, ServerIdentity};

use crate::CliError;

/// The certificate file `keygen` writes beside `server.pub`.
pub(crate) const CERT_FILE: &str = "server.cert";

/// Certificate lifetime written by `keygen` (ten years).
const CERT_LIFETIME_SECS: u64 = 10 * 365 * 86_400;

fn file_err(path: &Path, source: std::io::Error) -> CliError {
    CliError::File {
        path: path.display().to_string(),
        source,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Lower-case hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    hex(bytes)
}

/// Decodes hex (either case); `None` for anything else.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| match p {
            [h, l] => Some(digit(*h)? << 4 | digit(*l)?),
            _ => None,
        })
        .collect()
}

/// A fresh identity (valid for ten years) and its public key.
pub(crate) fn generate() -> Result<(ServerIdentity, HybridVerifyingKey), CliError> {
    let mut rng = rand::rng();
    let sk = HybridSigningKey::generate(&mut rng);
    let id = ServerIdentity::generate(
        &sk,
        &mut rng,
        phantom::unix_time().saturating_add(CERT_LIFETIME_SECS),
    )
    .map_err(|e| CliError::Usage(format!("cannot certify the new key: {e}")))?;
    Ok((id, sk.verifying_key()))
}

/// `phantom keygen --out DIR`.
pub(crate) fn keygen(out: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(out).map_err(|e| file_err(out, e))?;
    let (id, vk) = generate()?;
    let key_path = out.join("server.key");
    let secret = id.to_bytes();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&key_path)
        .map_err(|e| file_err(&key_path, e))?;
    // An existing file keeps its mode through `open`: force 0600.
    {
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| file_err(&key_path, e))?;
    }
    f.write_all(&secret).map_err(|e| file_err(&key_path, e))?;
    f.sync_all().map_err(|e| file_err(&key_path, e))?;
    let pub_path = out.join("server.pub");
    std::fs::write(&pub_path, format!("{}\n", hex(&vk.to_bytes())))
        .map_err(|e| file_err(&pub_path, e))?;
    let cert_path = out.join(CERT_FILE);
    std::fs::write(&cert_path, id.certificate().to_bytes()).map_err(|e| file_err(&cert_path, e))?;
    println!("wrote {} (secret, mode 0600)", key_path.display());
    println!("wrote {} (give this to clients)", pub_path.display());
    println!(
        "wrote {} (give this to clients too: one-round-trip handshakes)",
        cert_path.display()
    );
    println!("key id {}", &hex(&vk.key_id())[..16]);
    Ok(())
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
    let bytes = match std::str::from_utf8(&raw).ok().and_then(unhex) {
        Some(b) => b,
        None => raw,
    };
    HybridVerifyingKey::from_bytes(&bytes).map_err(|e| CliError::BadKey {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let b = [0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(&hex(&b)).unwrap(), b);
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }
}
