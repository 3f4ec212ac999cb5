//! Status codes, the per-thread error message, and the one mapping from runtime errors
//! to status codes.

use std::cell::RefCell;
use std::ffi::{CString, c_char};

/// What every fallible `phantom_*` call returns. `PHANTOM_STATUS_OK` is zero; on any
/// other value, `phantom_last_error_message()` describes the failure.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhantomStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was null.
    NullPointer = 1,
    /// An argument is unusable: a string that is not UTF-8, an address that does not
    /// parse or cannot be used, a key that does not decode.
    InvalidArgument = 2,
    /// A socket or file operation failed.
    Io = 3,
    /// The server proved a key other than the pinned one.
    WrongServerKey = 4,
    /// The peer did not answer in time, or a wait given a timeout expired.
    Timeout = 5,
    /// The handshake failed for another reason.
    Handshake = 6,
    /// The connection is closed (by either side, or after an idle timeout).
    Closed = 7,
    /// The stream was reset or stopped by the peer, or the session refused the
    /// operation on it.
    Stream = 8,
    /// The endpoint is closed.
    EndpointClosed = 9,
    /// `phantom_endpoint_accept` was called on a client endpoint.
    NotServer = 10,
    /// The caller's buffer is too small; the length needed is in the length out-param.
    BufferTooSmall = 11,
    /// The library failed internally (the runtime could not start, or a bug was caught
    /// before it could cross into C).
    Internal = 12,
}

/// A failed call: the status to return and the message to keep for the thread.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: PhantomStatus,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: PhantomStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn null(what: &str) -> Self {
        Self::new(
            PhantomStatus::NullPointer,
            format!("{what} is a null pointer"),
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(PhantomStatus::InvalidArgument, message)
    }
}

/// The status of a runtime error: the one place a `phantom` error becomes a C code.
pub(crate) fn status_of(e: &phantom::Error) -> PhantomStatus {
    use phantom::Error as E;
    match e {
        E::BadAddress(_) => PhantomStatus::InvalidArgument,
        E::Io(_) => PhantomStatus::Io,
        E::WrongServerKey => PhantomStatus::WrongServerKey,
        E::Timeout(_) => PhantomStatus::Timeout,
        E::Handshake(_) | E::HandshakeInProgress(_) => PhantomStatus::Handshake,
        E::Session(_) => PhantomStatus::Stream,
        E::Closed(_) => PhantomStatus::Closed,
        E::NotServer => PhantomStatus::NotServer,
        E::EndpointClosed => PhantomStatus::EndpointClosed,
        E::NoRuntime => PhantomStatus::Internal,
        _ => PhantomStatus::Internal,
    }
}

impl From<phantom::Error> for Failure {
    fn from(e: phantom::Error) -> Self {
        Self::new(status_of(&e), e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    /// Stream reads and writes report runtime errors wrapped in `io::Error`.
    fn from(e: std::io::Error) -> Self {
        let status = match e.get_ref().and_then(|i| i.downcast_ref::<phantom::Error>()) {
            Some(inner) => status_of(inner),
            None => match e.kind() {
                std::io::ErrorKind::ConnectionReset => PhantomStatus::Stream,
                std::io::ErrorKind::ConnectionAborted => PhantomStatus::Closed,
                _ => PhantomStatus::Io,
            },
        };
        Self::new(status, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Keeps `message` as this thread's last error (NUL bytes become spaces).
pub(crate) fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|m| *m.borrow_mut() = c);
}

/// This thread's last error message (empty if none).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|m| m.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// Runs one C entry point: a returned failure or a panic becomes a status code and
/// this thread's message; nothing unwinds into C.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), Failure>) -> PhantomStatus {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => PhantomStatus::Ok,
        Ok(Err(fail)) => {
            set_last_error(&fail.message);
            fail.status
        }
        Err(_) => {
            set_last_error("internal error: the library caught a panic");
            PhantomStatus::Internal
        }
    }
}
