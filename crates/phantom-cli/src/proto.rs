//! The file stream protocol between `send` and `serve --out-dir`:
//! `name_len: u16 BE ‖ name (UTF-8) ‖ file bytes ‖ FIN`, answered by
//! `length: u64 BE ‖ sha256 (32 bytes) ‖ FIN`.

/// Longest file name accepted (bytes).
pub(crate) const MAX_NAME: usize = 255;
/// Length of the server's answer.
pub(crate) const ANSWER_LEN: usize = 8 + 32;

/// The header announcing a file named `name` (only its final component is sent).
pub(crate) fn header(name: &str) -> Vec<u8> {
    let name = sanitise(name);
    let bytes = name.as_bytes();
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut v = Vec::with_capacity(2 + bytes.len());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(bytes.get(..usize::from(len)).unwrap_or(bytes));
    v
}

/// Reduces an untrusted name to one safe path component: the part after the last
/// `/` or `\`, with control characters replaced, never `.`/`..`/empty, at most
/// [`MAX_NAME`] bytes.
pub(crate) fn sanitise(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut out = String::new();
    for c in last.chars() {
        if out.len() + c.len_utf8() > MAX_NAME {
            break;
        }
        out.push(if c.is_control() || c == ':' { '_' } else { c });
    }
    let trimmed = out.trim_matches(|c: char| c == '.' || c.is_whitespace());
    if trimmed.is_empty() {
        "unnamed".to_owned()
    } else if trimmed.len() == out.len() {
        out
    } else {
        // Leading dots would make hidden files (or `..`): drop them.
        trimmed.to_owned()
    }
}

/// Builds the answer.
pub(crate) fn answer(len: u64, digest: &[u8; 32]) -> [u8; ANSWER_LEN] {
    let mut a = [0u8; ANSWER_LEN];
    let (l, d) = a.split_at_mut(8);
    l.copy_from_slice(&len.to_be_bytes());
    d.copy_from_slice(digest);
    a
}

/// Splits an answer.
pub(crate) fn parse_answer(a: &[u8; ANSWER_LEN]) -> (u64, [u8; 32]) {
    let (l, d) = a.split_at(8);
    let mut len = [0u8; 8];
    len.copy_from_slice(l);
    let mut digest = [0u8; 32];
    digest.copy_from_slice(d);
    (u64::from_be_bytes(len), digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i1_untrusted_names_never_escape_the_directory() {
        for (raw, want) in [
            ("../../etc/passwd", "passwd"),
            ("..", "unnamed"),
            (".", "unnamed"),
            ("", "unnamed"),
            ("/abs/path.txt", "path.txt"),
            ("a\\b\\c.bin", "c.bin"),
            ("evil\nname", "evil_name"),
            ("...hidden", "hidden"),
            ("C:boot", "C_boot"),
            ("ok.txt", "ok.txt"),
        ] {
            assert_eq!(sanitise(raw), want, "{raw:?}");
        }
        let long = "x".repeat(1000);
        assert_eq!(sanitise(&long).len(), MAX_NAME);
    }

    #[test]
    fn answer_round_trips() {
        let d = [7u8; 32];
        assert_eq!(parse_answer(&answer(42, &d)), (42, d));
    }
}
