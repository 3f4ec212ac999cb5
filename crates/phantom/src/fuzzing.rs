//! Bodies of the runtime's cargo-fuzz targets (compiled only for fuzzing and tests).

/// The `tcp_framing` fuzz target: the TCP carrier's framing (2-byte length prefix)
/// as its reader applies it. The first byte picks the mode: raw bytes (any stream a
/// peer could send), or datagrams described by (length, fill byte) triples and encoded
/// with the carrier's encoder. The stream is then fed to the reader's buffer in reads
/// of sizes chosen from the input, and the frames it yields (and whether it stops on a
/// bad length) must equal a plain parse of the whole stream, and in the second mode the
/// datagrams encoded. The buffer must stay within its bound and never hold a whole
/// unread frame. Returns the number of frames read.
///
/// # Panics
/// When one of those checks fails: that is the finding.
#[must_use]
pub fn tcp_framing(data: &[u8]) -> usize {
    crate::carrier::tcp::fuzz_framing(data)
}
