//! A C ABI over the Phantom runtime: key generation, server and client endpoints,
//! connections pinned to a server key, bidirectional streams, datagrams, statistics
//! and close, declared in `include/phantom.h` (generated from this crate by cbindgen:
//! `cargo xtask header`; `cargo xtask ci` fails when the committed header is stale).
//!
//! **What it owns.** The boundary: C strings, pointers and lengths become Rust values
//! here, every entry point runs inside `catch_unwind` and returns a [`PhantomStatus`]
//! (zero on success; the reason, as text, from [`phantom_last_error_message`] on the
//! same thread), and Rust objects cross only as opaque handles that C frees with the
//! matching `*_free` call. Runtime errors become status codes in one function
//! (`status::status_of`).
//!
//! **Threads and I/O.** The C caller never drives I/O. The library owns one tokio
//! runtime for the whole process, started by the first call that needs it (two
//! worker threads named `phantom-ffi`), and every endpoint's driver task runs on it.
//! One shared runtime rather than one per endpoint: the runtime's endpoints are
//! already cheap tasks that multiplex many sessions, so a program with many endpoints
//! gets no more threads, a connection can outlive the endpoint handle that made it,
//! and handles may move between C threads freely. Blocking calls (`connect`, `accept`,
//! stream reads and writes) park the calling C thread until the runtime completes
//! them; they must not be called from inside a runtime task (no C callback exists, so
//! a C program cannot get there). The runtime lives until the process exits.
//!
//! **Memory ownership.** Handles (`PhantomEndpoint`, `PhantomConnection`,
//! `PhantomStream`) are allocated by the library and freed only by their `*_free`
//! function, once, after the last call using them has returned. Byte buffers the
//! library returns (`phantom_keygen`) are freed with [`phantom_bytes_free`], which
//! zeroes them first. Every pointer the caller passes in is borrowed for the call only.
//!
//! **Invariants upheld here.** I8: secret key bytes cross the boundary only in the
//! buffers `phantom_keygen` returns (zeroed by `phantom_bytes_free`) and the key file
//! `phantom_keygen_files` writes with mode 0600; no message carries key material. I1
//! at the boundary: no argument a C caller passes can make the library panic or read
//! out of bounds beyond what the documented pointer/length contract allows (null
//! pointers and non-UTF-8 strings are refused with a status); tested by
//! `i1_null_and_invalid_arguments_return_status_codes`. The protocol invariants are
//! the runtime's.

mod status;

use std::ffi::{CStr, c_char};
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use phantom::keyfiles::{self, KeyFileError};
use phantom::{Connection, Endpoint, HybridVerifyingKey, ServerIdentity};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::runtime::Runtime;
use zeroize::Zeroize as _;

pub use status::PhantomStatus;
use status::{Failure, guard};

/// A UDP endpoint (server or client) and its sessions. Opaque; free with
/// `phantom_endpoint_free`.
#[derive(Debug)]
pub struct PhantomEndpoint {
    ep: Endpoint,
}

/// An established connection. Opaque; free with `phantom_connection_free`.
#[derive(Debug)]
pub struct PhantomConnection {
    conn: Connection,
    /// A datagram taken from the runtime that did not fit the caller's buffer.
    pending_datagram: Mutex<Option<Vec<u8>>>,
}

/// A bidirectional stream. Opaque; free with `phantom_stream_free`. Its reading and
/// writing halves may be used from two threads at once.
#[derive(Debug)]
pub struct PhantomStream {
    id: u32,
    send: Mutex<phantom::SendStream>,
    recv: Mutex<phantom::RecvStream>,
}

/// Connection counters, filled by `phantom_connection_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PhantomStats {
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Datagrams received and authenticated.
    pub packets_received: u64,
    /// Datagram bytes sent.
    pub bytes_sent: u64,
    /// Authenticated datagram bytes received.
    pub bytes_received: u64,
    /// Stream payload bytes sent, retransmissions included.
    pub stream_bytes_sent: u64,
    /// Stream payload bytes retransmitted.
    pub stream_bytes_retransmitted: u64,
    /// Packets declared lost.
    pub packets_lost: u64,
    /// Rekeys of our sending direction.
    pub rekeys_local: u64,
    /// Paths validated.
    pub paths_validated: u64,
    /// Smoothed RTT of the primary path, microseconds.
    pub rtt_us: u64,
    /// Congestion window of the primary path, bytes.
    pub cwnd: u64,
}

fn runtime() -> Result<&'static Runtime, Failure> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("phantom-ffi")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| Failure::new(PhantomStatus::Internal, e.clone()))
}

/// Borrows a C string as UTF-8.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that stays valid and unchanged
/// for `'a`.
unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-null, and the caller promises a NUL-terminated string valid for 'a.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map_err(|_| Failure::invalid(format!("{what} is not valid UTF-8")))
}

/// Borrows `len` bytes at `p` (`p` may be null when `len` is 0).
///
/// # Safety
/// If `len > 0`, `p` is null or points to `len` readable bytes valid for `'a`.
unsafe fn bytes_arg<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-null, and the caller promises `len` readable bytes valid for 'a.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Borrows `len` writable bytes at `p` (`p` may be null when `len` is 0).
///
/// # Safety
/// If `len > 0`, `p` is null or points to `len` writable bytes, not aliased, valid
/// for `'a`.
unsafe fn bytes_mut_arg<'a>(p: *mut u8, len: usize, what: &str) -> Result<&'a mut [u8], Failure> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-null, and the caller promises `len` exclusive writable bytes for 'a.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// Borrows a handle.
///
/// # Safety
/// `p` is null or a handle this library returned and that has not been freed.
unsafe fn handle<'a, T>(p: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: the caller promises a live handle (a `Box` we leaked) or null.
    unsafe { p.as_ref() }.ok_or_else(|| Failure::null(what))
}

/// Writes `value` through an out-pointer.
///
/// # Safety
/// `p` is null or valid for a write of `T`.
unsafe fn put<T>(p: *mut T, value: T, what: &str) -> Result<(), Failure> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-null and writable by the caller's promise; `T` is `Copy` or a
    // pointer, so nothing is dropped in place.
    unsafe { p.write(value) };
    Ok(())
}

/// Checks that an out-pointer is non-null before any work is done.
fn need<T>(p: *mut T, what: &str) -> Result<(), Failure> {
    if p.is_null() {
        Err(Failure::null(what))
    } else {
        Ok(())
    }
}

fn parse_addr(s: &str) -> Result<SocketAddr, Failure> {
    phantom::resolve(s).map_err(Failure::from)
}

/// A public key given as its raw bytes or as hex (what `server.pub` holds).
fn parse_public_key(bytes: &[u8]) -> Result<HybridVerifyingKey, Failure> {
    keyfiles::parse_public_key(bytes).map_err(|e| Failure::invalid(format!("server key: {e}")))
}

impl From<KeyFileError> for Failure {
    fn from(e: KeyFileError) -> Self {
        let status = match e {
            KeyFileError::Io { .. } => PhantomStatus::Io,
            KeyFileError::PublicKey(_) => PhantomStatus::InvalidArgument,
            _ => PhantomStatus::Internal,
        };
        Failure::new(status, e.to_string())
    }
}

fn timeout_of(ms: u32) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
}

/// Runs `fut` on the runtime from the calling (non-runtime) thread, up to `limit`.
fn block_on<T>(
    limit: Option<Duration>,
    fut: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    let rt = runtime()?;
    match limit {
        None => rt.block_on(fut),
        Some(d) => rt.block_on(async {
            tokio::time::timeout(d, fut).await.unwrap_or_else(|_| {
                Err(Failure::new(
                    PhantomStatus::Timeout,
                    format!("nothing arrived within {} ms", d.as_millis()),
                ))
            })
        }),
    }
}

/// Moves `value` to the heap and hands C the pointer.
fn into_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Frees a handle inside the runtime's context (dropping runtime handles may signal
/// its tasks).
///
/// # Safety
/// `p` is null or a handle of type `T` this library returned, not freed before and
/// not in use by another thread.
unsafe fn free_handle<T>(p: *mut T) {
    if p.is_null() {
        return;
    }
    // SAFETY: the caller hands back the unique owner of a `Box<T>` we leaked.
    let boxed = unsafe { Box::from_raw(p) };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _entered = runtime().ok().map(Runtime::enter);
        drop(boxed);
    }));
}

/// The message of the last failed `phantom_*` call on this thread (UTF-8, never
/// null; empty if no call has failed). The pointer stays valid until the next failing
/// call on this thread; the library owns it: do not free it.
#[unsafe(no_mangle)]
pub extern "C" fn phantom_last_error_message() -> *const c_char {
    status::last_error_ptr()
}

/// Generates a server identity (a long-term signing key and a certified static key).
///
/// On success `*secret_key` receives the identity's secret encoding (what a server
/// needs: pass it to `phantom_server_new`) and `*public_key` the public key clients
/// pin (raw bytes), each with its length. Both buffers belong to the caller, who
/// frees each with `phantom_bytes_free(ptr, len)` (which zeroes it first).
///
/// # Safety
/// Each out-pointer is null (refused with `PHANTOM_STATUS_NULL_POINTER`) or valid for
/// one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_keygen(
    secret_key: *mut *mut u8,
    secret_key_len: *mut usize,
    public_key: *mut *mut u8,
    public_key_len: *mut usize,
) -> PhantomStatus {
    guard(|| {
        need(secret_key, "secret_key")?;
        need(secret_key_len, "secret_key_len")?;
        need(public_key, "public_key")?;
        need(public_key_len, "public_key_len")?;
        let (identity, vk) = generate()?;
        let (sp, sl) = leak_bytes(identity.to_bytes().to_vec());
        let (pp, pl) = leak_bytes(vk.to_bytes());
        // SAFETY: all four checked non-null above; the caller promises they are writable.
        unsafe { put(secret_key, sp, "secret_key") }?;
        // SAFETY: as above.
        unsafe { put(secret_key_len, sl, "secret_key_len") }?;
        // SAFETY: as above.
        unsafe { put(public_key, pp, "public_key") }?;
        // SAFETY: as above.
        unsafe { put(public_key_len, pl, "public_key_len") }
    })
}

fn generate() -> Result<(ServerIdentity, HybridVerifyingKey), Failure> {
    Ok(keyfiles::generate_identity()?)
}

/// Hands a byte vector to C as (pointer, length); `phantom_bytes_free` takes it back.
fn leak_bytes(v: Vec<u8>) -> (*mut u8, usize) {
    let boxed = v.into_boxed_slice();
    let len = boxed.len();
    (Box::into_raw(boxed).cast::<u8>(), len)
}

/// Zeroes and frees a buffer the library returned (`phantom_keygen`). Null is ignored.
///
/// # Safety
/// `ptr` and `len` are exactly a pointer and length returned together by this
/// library, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_bytes_free(ptr: *mut u8, len: usize) {
    if ptr.is_null() {
        return;
    }
    let slice = std::ptr::slice_from_raw_parts_mut(ptr, len);
    // SAFETY: (ptr, len) is a `Box<[u8]>` we leaked in `leak_bytes`, handed back once.
    let mut boxed = unsafe { Box::from_raw(slice) };
    boxed.zeroize();
}

/// Generates a server identity into directory `dir` (created if missing), in the
/// formats `phantom keygen` writes: `server.key` (secret, mode 0600), `server.pub`
/// (the public key, hex) and `server.cert` (the signed certificate, raw bytes).
///
/// # Safety
/// `dir` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_keygen_files(dir: *const c_char) -> PhantomStatus {
    guard(|| {
        // SAFETY: forwarded caller promise.
        let dir = std::path::Path::new(unsafe { str_arg(dir, "dir") }?);
        let (identity, vk) = generate()?;
        keyfiles::write_key_files(dir, &identity, &vk)?;
        Ok(())
    })
}

/// Creates a server endpoint listening on UDP `listen` (e.g. `"127.0.0.1:4433"`; port
/// 0 picks one: see `phantom_endpoint_local_addr`) with the identity whose secret
/// encoding is `secret_key[0..secret_key_len]` (from `phantom_keygen`, or the
/// contents of `server.key`). On success `*out` is a new endpoint the caller frees
/// with `phantom_endpoint_free`.
///
/// # Safety
/// `listen` is null or NUL-terminated; `secret_key` points to `secret_key_len`
/// readable bytes; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_server_new(
    listen: *const c_char,
    secret_key: *const u8,
    secret_key_len: usize,
    out: *mut *mut PhantomEndpoint,
) -> PhantomStatus {
    guard(|| {
        need(out, "out")?;
        // SAFETY: forwarded caller promise.
        let listen = parse_addr(unsafe { str_arg(listen, "listen") }?)?;
        // SAFETY: forwarded caller promise.
        let secret = unsafe { bytes_arg(secret_key, secret_key_len, "secret_key") }?;
        let identity = ServerIdentity::from_bytes(secret)
            .map_err(|e| Failure::invalid(format!("secret key: {e}")))?;
        let rt = runtime()?;
        let _entered = rt.enter();
        let ep = Endpoint::server(phantom::ServerConfig::new(identity), listen)?;
        // SAFETY: checked non-null above; the caller promises it is writable.
        unsafe { put(out, into_handle(PhantomEndpoint { ep }), "out") }
    })
}

/// Creates a client endpoint bound to `bind` (e.g. `"127.0.0.1:0"`). On success
/// `*out` is a new endpoint the caller frees with `phantom_endpoint_free`.
///
/// # Safety
/// `bind` is null or NUL-terminated; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_client_new(
    bind: *const c_char,
    out: *mut *mut PhantomEndpoint,
) -> PhantomStatus {
    guard(|| {
        need(out, "out")?;
        // SAFETY: forwarded caller promise.
        let bind = parse_addr(unsafe { str_arg(bind, "bind") }?)?;
        let rt = runtime()?;
        let _entered = rt.enter();
        let ep = Endpoint::client(bind)?;
        // SAFETY: checked non-null above; the caller promises it is writable.
        unsafe { put(out, into_handle(PhantomEndpoint { ep }), "out") }
    })
}

/// Writes the endpoint's local address (`ip:port`, NUL-terminated) into
/// `buf[0..buf_len]`. `PHANTOM_STATUS_BUFFER_TOO_SMALL` if it does not fit (64 bytes
/// always do).
///
/// # Safety
/// `endpoint` is null or live; `buf` points to `buf_len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_endpoint_local_addr(
    endpoint: *const PhantomEndpoint,
    buf: *mut c_char,
    buf_len: usize,
) -> PhantomStatus {
    guard(|| {
        // SAFETY: forwarded caller promise.
        let ep = unsafe { handle(endpoint, "endpoint") }?;
        // SAFETY: forwarded caller promise.
        let out = unsafe { bytes_mut_arg(buf.cast::<u8>(), buf_len, "buf") }?;
        let text = ep.ep.local_addr().to_string();
        let n = text.len();
        let Some((nul, head)) = out.get_mut(..=n).and_then(|s| s.split_last_mut()) else {
            return Err(Failure::new(
                PhantomStatus::BufferTooSmall,
                format!("the address needs {} bytes", n + 1),
            ));
        };
        *nul = 0;
        head.copy_from_slice(text.as_bytes());
        Ok(())
    })
}

/// Server: waits for the next incoming connection, up to `timeout_ms` (0: no limit).
/// On success `*out` is a new connection the caller frees with
/// `phantom_connection_free`.
///
/// # Safety
/// `endpoint` is null or live; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_endpoint_accept(
    endpoint: *const PhantomEndpoint,
    timeout_ms: u32,
    out: *mut *mut PhantomConnection,
) -> PhantomStatus {
    guard(|| {
        need(out, "out")?;
        // SAFETY: forwarded caller promise.
        let ep = unsafe { handle(endpoint, "endpoint") }?;
        let conn = block_on(timeout_of(timeout_ms), async {
            ep.ep.accept().await.map_err(Failure::from)
        })?;
        // SAFETY: checked non-null above; the caller promises it is writable.
        unsafe { put(out, new_connection(conn), "out") }
    })
}

fn new_connection(conn: Connection) -> *mut PhantomConnection {
    into_handle(PhantomConnection {
        conn,
        pending_datagram: Mutex::new(None),
    })
}

/// Client: connects to the server at `server` (`host:port`), which must prove the
/// pinned public key `server_key[0..server_key_len]` (raw bytes, or the hex text of
/// `server.pub`). Gives up after `timeout_ms` (0: 10 s). A server proving another key
/// fails with `PHANTOM_STATUS_WRONG_SERVER_KEY`; no answer with
/// `PHANTOM_STATUS_TIMEOUT`. On success `*out` is a new connection the caller frees
/// with `phantom_connection_free`.
///
/// # Safety
/// `endpoint` is null or live; `server` is null or NUL-terminated; `server_key`
/// points to `server_key_len` readable bytes; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_endpoint_connect(
    endpoint: *const PhantomEndpoint,
    server: *const c_char,
    server_key: *const u8,
    server_key_len: usize,
    timeout_ms: u32,
    out: *mut *mut PhantomConnection,
) -> PhantomStatus {
    guard(|| {
        need(out, "out")?;
        // SAFETY: forwarded caller promise.
        let ep = unsafe { handle(endpoint, "endpoint") }?;
        // SAFETY: forwarded caller promise.
        let addr = parse_addr(unsafe { str_arg(server, "server") }?)?;
        // SAFETY: forwarded caller promise.
        let key =
            parse_public_key(unsafe { bytes_arg(server_key, server_key_len, "server_key") }?)?;
        let options = phantom::ClientOptions {
            connect_timeout: timeout_of(timeout_ms).unwrap_or(Duration::from_secs(10)),
            ..phantom::ClientOptions::default()
        };
        let conn = block_on(None, async {
            ep.ep
                .connect_with(addr, &key, options)
                .await
                .map_err(Failure::from)
        })?;
        // SAFETY: checked non-null above; the caller promises it is writable.
        unsafe { put(out, new_connection(conn), "out") }
    })
}

/// Closes every session of the endpoint and waits up to `wait_ms` for them to drain
/// (their close frames to leave). The handle must still be freed.
///
/// # Safety
/// `endpoint` is null or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_endpoint_close(
    endpoint: *const PhantomEndpoint,
    wait_ms: u32,
) -> PhantomStatus {
    guard(|| {
        // SAFETY: forwarded caller promise.
        let ep = unsafe { handle(endpoint, "endpoint") }?;
        ep.ep.close(0, b"endpoint closed");
        let wait = Duration::from_millis(u64::from(wait_ms));
        block_on(None, async {
            let _ = tokio::time::timeout(wait, ep.ep.wait_idle()).await;
            Ok(())
        })
    })
}

/// Frees an endpoint handle (its sessions live on while connection handles remain).
/// Null is ignored.
///
/// # Safety
/// `endpoint` is null or a live endpoint not in use by another thread; it is invalid
/// afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_endpoint_free(endpoint: *mut PhantomEndpoint) {
    // SAFETY: forwarded caller promise.
    unsafe { free_handle(endpoint) }
}

/// Opens a bidirectional stream (waiting while the peer's stream limit is reached).
/// On success `*out` is a new stream the caller frees with `phantom_stream_free`.
///
/// # Safety
/// `connection` is null or live; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_connection_open_stream(
    connection: *const PhantomConnection,
    out: *mut *mut PhantomStream,
) -> PhantomStatus {
    guard(|| {
        need(out, "out")?;
        // SAFETY: forwarded caller promise.
        let c = unsafe { handle(connection, "connection") }?;
        let (send, recv) = block_on(None, async {
            c.conn.open_bi().await.map_err(Failure::from)
        })?;
        // SAFETY: checked non-null above; the caller promises it is writable.
        unsafe { put(out, new_stream(send, recv), "out") }
    })
}

/// Waits up to `timeout_ms` (0: no limit) for the peer to open a bidirectional
/// stream. On success `*out` is a new stream the caller frees with
/// `phantom_stream_free`.
///
/// # Safety
/// `connection` is null or live; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_connection_accept_stream(
    connection: *const PhantomConnection,
    timeout_ms: u32,
    out: *mut *mut PhantomStream,
) -> PhantomStatus {
    guard(|| {
        need(out, "out")?;
        // SAFETY: forwarded caller promise.
        let c = unsafe { handle(connection, "connection") }?;
        let (send, recv) = block_on(timeout_of(timeout_ms), async {
            c.conn.accept_bi().await.map_err(Failure::from)
        })?;
        // SAFETY: checked non-null above; the caller promises it is writable.
        unsafe { put(out, new_stream(send, recv), "out") }
    })
}

fn new_stream(send: phantom::SendStream, recv: phantom::RecvStream) -> *mut PhantomStream {
    into_handle(PhantomStream {
        id: send.id().0,
        send: Mutex::new(send),
        recv: Mutex::new(recv),
    })
}

fn poisoned() -> Failure {
    Failure::new(
        PhantomStatus::Internal,
        "the stream is unusable after an internal failure",
    )
}

/// The stream's id (0 for a null handle).
///
/// # Safety
/// `stream` is null or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_stream_id(stream: *const PhantomStream) -> u32 {
    // SAFETY: forwarded caller promise.
    unsafe { handle(stream, "stream") }.map_or(0, |s| s.id)
}

/// Writes all of `data[0..len]` to the stream, waiting while the send buffer is full.
///
/// # Safety
/// `stream` is null or live; `data` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_stream_write(
    stream: *const PhantomStream,
    data: *const u8,
    len: usize,
) -> PhantomStatus {
    guard(|| {
        // SAFETY: forwarded caller promise.
        let s = unsafe { handle(stream, "stream") }?;
        // SAFETY: forwarded caller promise.
        let data = unsafe { bytes_arg(data, len, "data") }?;
        let mut send = s.send.lock().map_err(|_| poisoned())?;
        block_on(None, async {
            send.write_all(data).await.map_err(Failure::from)
        })
    })
}

/// Reads up to `buf_len` bytes into `buf`, waiting until at least one byte or the end
/// of the stream arrives. `*read` receives the count; 0 means the peer finished the
/// stream (end of stream).
///
/// # Safety
/// `stream` is null or live; `buf` points to `buf_len` writable bytes; `read` is null
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_stream_read(
    stream: *const PhantomStream,
    buf: *mut u8,
    buf_len: usize,
    read: *mut usize,
) -> PhantomStatus {
    guard(|| {
        need(read, "read")?;
        // SAFETY: forwarded caller promise.
        let s = unsafe { handle(stream, "stream") }?;
        // SAFETY: forwarded caller promise.
        let out = unsafe { bytes_mut_arg(buf, buf_len, "buf") }?;
        if out.is_empty() {
            return Err(Failure::invalid("buf_len is 0"));
        }
        let mut recv = s.recv.lock().map_err(|_| poisoned())?;
        let n = block_on(None, async { recv.read(out).await.map_err(Failure::from) })?;
        // SAFETY: checked non-null above; the caller promises it is writable.
        unsafe { put(read, n, "read") }
    })
}

/// Finishes the sending half (the peer reads end of stream after the data).
///
/// # Safety
/// `stream` is null or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_stream_finish(stream: *const PhantomStream) -> PhantomStatus {
    guard(|| {
        // SAFETY: forwarded caller promise.
        let s = unsafe { handle(stream, "stream") }?;
        let mut send = s.send.lock().map_err(|_| poisoned())?;
        let _entered = runtime()?.enter();
        send.finish().map_err(Failure::from)
    })
}

/// Frees a stream (finishing it if it was not). Null is ignored.
///
/// # Safety
/// `stream` is null or a live stream not in use by another thread; it is invalid
/// afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_stream_free(stream: *mut PhantomStream) {
    // SAFETY: forwarded caller promise.
    unsafe { free_handle(stream) }
}

/// Sends `data[0..len]` as one unreliable datagram.
///
/// # Safety
/// `connection` is null or live; `data` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_connection_send_datagram(
    connection: *const PhantomConnection,
    data: *const u8,
    len: usize,
) -> PhantomStatus {
    guard(|| {
        // SAFETY: forwarded caller promise.
        let c = unsafe { handle(connection, "connection") }?;
        // SAFETY: forwarded caller promise.
        let data = unsafe { bytes_arg(data, len, "data") }?;
        let _entered = runtime()?.enter();
        c.conn.send_datagram(data).map_err(Failure::from)
    })
}

/// Waits up to `timeout_ms` (0: no limit) for a datagram and copies it into
/// `buf[0..buf_len]`; `*len` receives its length. If it does not fit, the call
/// returns `PHANTOM_STATUS_BUFFER_TOO_SMALL` with the needed length in `*len` and
/// keeps the datagram for the next call.
///
/// # Safety
/// `connection` is null or live; `buf` points to `buf_len` writable bytes; `len` is
/// null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_connection_read_datagram(
    connection: *const PhantomConnection,
    buf: *mut u8,
    buf_len: usize,
    len: *mut usize,
    timeout_ms: u32,
) -> PhantomStatus {
    guard(|| {
        need(len, "len")?;
        // SAFETY: forwarded caller promise.
        let c = unsafe { handle(connection, "connection") }?;
        // SAFETY: forwarded caller promise.
        let out = unsafe { bytes_mut_arg(buf, buf_len, "buf") }?;
        let mut pending = c.pending_datagram.lock().map_err(|_| poisoned())?;
        let d = match pending.take() {
            Some(d) => d,
            None => block_on(timeout_of(timeout_ms), async {
                c.conn.read_datagram().await.map_err(Failure::from)
            })?,
        };
        let n = d.len();
        // SAFETY: checked non-null above; the caller promises it is writable.
        unsafe { put(len, n, "len") }?;
        match out.get_mut(..n) {
            Some(dst) => {
                dst.copy_from_slice(&d);
                Ok(())
            }
            None => {
                *pending = Some(d);
                Err(Failure::new(
                    PhantomStatus::BufferTooSmall,
                    format!("the datagram has {n} bytes, the buffer {buf_len}"),
                ))
            }
        }
    })
}

/// Fills `*out` with the connection's counters.
///
/// # Safety
/// `connection` is null or live; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_connection_stats(
    connection: *const PhantomConnection,
    out: *mut PhantomStats,
) -> PhantomStatus {
    guard(|| {
        need(out, "out")?;
        // SAFETY: forwarded caller promise.
        let c = unsafe { handle(connection, "connection") }?;
        let s = c.conn.stats();
        let stats = PhantomStats {
            packets_sent: s.packets_sent,
            packets_received: s.packets_received,
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
            stream_bytes_sent: s.stream_bytes_sent,
            stream_bytes_retransmitted: s.stream_bytes_retransmitted,
            packets_lost: s.packets_lost,
            rekeys_local: s.rekeys_local,
            paths_validated: s.paths_validated,
            rtt_us: u64::try_from(s.rtt.as_micros()).unwrap_or(u64::MAX),
            cwnd: s.cwnd,
        };
        // SAFETY: checked non-null above; the caller promises it is writable.
        unsafe { put(out, stats, "out") }
    })
}

/// Closes the connection with application `code` and an optional `reason` (a
/// NUL-terminated string, or null). The handle must still be freed.
///
/// # Safety
/// `connection` is null or live; `reason` is null or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_connection_close(
    connection: *const PhantomConnection,
    code: u64,
    reason: *const c_char,
) -> PhantomStatus {
    guard(|| {
        // SAFETY: forwarded caller promise.
        let c = unsafe { handle(connection, "connection") }?;
        let reason = if reason.is_null() {
            ""
        } else {
            // SAFETY: non-null, and the caller promises a NUL-terminated string.
            unsafe { str_arg(reason, "reason") }?
        };
        let _entered = runtime()?.enter();
        c.conn.close(code, reason.as_bytes());
        Ok(())
    })
}

/// Frees a connection handle (the session closes once no handle to it remains).
/// Null is ignored.
///
/// # Safety
/// `connection` is null or a live connection not in use by another thread; it is
/// invalid afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn phantom_connection_free(connection: *mut PhantomConnection) {
    // SAFETY: forwarded caller promise.
    unsafe { free_handle(connection) }
}

#[cfg(test)]
mod tests;
