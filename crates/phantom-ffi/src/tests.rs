//! The C entry points called from Rust: statuses, messages, ownership.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block,
    reason = "tests: failing loudly is the point; every pointer below is a local"
)]

use std::ffi::CStr;
use std::ptr::{null, null_mut};

use super::*;

fn last_message() -> String {
    unsafe { CStr::from_ptr(phantom_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

struct Keys {
    secret: (*mut u8, usize),
    public: (*mut u8, usize),
}

impl Keys {
    fn new() -> Self {
        let mut k = Keys {
            secret: (null_mut(), 0),
            public: (null_mut(), 0),
        };
        let st = unsafe {
            phantom_keygen(
                &mut k.secret.0,
                &mut k.secret.1,
                &mut k.public.0,
                &mut k.public.1,
            )
        };
        assert_eq!(st, PhantomStatus::Ok, "{}", last_message());
        k
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        unsafe {
            phantom_bytes_free(self.secret.0, self.secret.1);
            phantom_bytes_free(self.public.0, self.public.1);
        }
    }
}

fn server(keys: &Keys) -> (*mut PhantomEndpoint, String) {
    let mut ep = null_mut();
    let st = unsafe {
        phantom_server_new(
            c"127.0.0.1:0".as_ptr(),
            keys.secret.0,
            keys.secret.1,
            &mut ep,
        )
    };
    assert_eq!(st, PhantomStatus::Ok, "{}", last_message());
    let mut buf = [0 as c_char; 64];
    let st = unsafe { phantom_endpoint_local_addr(ep, buf.as_mut_ptr(), buf.len()) };
    assert_eq!(st, PhantomStatus::Ok);
    let addr = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_str()
        .unwrap()
        .to_owned();
    (ep, addr)
}

#[test]
fn i1_null_and_invalid_arguments_return_status_codes() {
    let mut ep = null_mut();
    // Null strings and out-pointers.
    assert_eq!(
        unsafe { phantom_client_new(null(), &mut ep) },
        PhantomStatus::NullPointer
    );
    assert!(last_message().contains("bind"), "{}", last_message());
    assert_eq!(
        unsafe { phantom_client_new(c"127.0.0.1:0".as_ptr(), null_mut()) },
        PhantomStatus::NullPointer
    );
    // Invalid UTF-8 and unparsable addresses.
    let bad_utf8 = [0xffu8, 0xfe, b':', b'1', 0];
    assert_eq!(
        unsafe { phantom_client_new(bad_utf8.as_ptr().cast(), &mut ep) },
        PhantomStatus::InvalidArgument
    );
    assert!(last_message().contains("UTF-8"), "{}", last_message());
    assert_eq!(
        unsafe { phantom_client_new(c"not an address".as_ptr(), &mut ep) },
        PhantomStatus::InvalidArgument
    );
    assert!(ep.is_null(), "no handle on failure");
    // A secret key that does not decode, and a null key with a length.
    let junk = [7u8; 40];
    assert_eq!(
        unsafe { phantom_server_new(c"127.0.0.1:0".as_ptr(), junk.as_ptr(), junk.len(), &mut ep) },
        PhantomStatus::InvalidArgument
    );
    assert_eq!(
        unsafe { phantom_server_new(c"127.0.0.1:0".as_ptr(), null(), 10, &mut ep) },
        PhantomStatus::NullPointer
    );
    // Null handles.
    let mut n = 0usize;
    let mut b = [0u8; 4];
    assert_eq!(
        unsafe { phantom_stream_read(null(), b.as_mut_ptr(), b.len(), &mut n) },
        PhantomStatus::NullPointer
    );
    assert_eq!(
        unsafe { phantom_stream_write(null(), b.as_ptr(), 4) },
        PhantomStatus::NullPointer
    );
    assert_eq!(
        unsafe { phantom_stream_finish(null()) },
        PhantomStatus::NullPointer
    );
    assert_eq!(unsafe { phantom_stream_id(null()) }, 0);
    assert_eq!(
        unsafe { phantom_connection_send_datagram(null(), b.as_ptr(), 4) },
        PhantomStatus::NullPointer
    );
    let mut stats = PhantomStats::default();
    assert_eq!(
        unsafe { phantom_connection_stats(null(), &mut stats) },
        PhantomStatus::NullPointer
    );
    assert_eq!(
        unsafe { phantom_endpoint_close(null(), 0) },
        PhantomStatus::NullPointer
    );
    // Freeing null is a no-op.
    unsafe {
        phantom_endpoint_free(null_mut());
        phantom_connection_free(null_mut());
        phantom_stream_free(null_mut());
        phantom_bytes_free(null_mut(), 5);
    }
}

#[test]
fn the_last_error_message_is_per_thread() {
    let mut ep = null_mut();
    assert_eq!(
        unsafe { phantom_client_new(null(), &mut ep) },
        PhantomStatus::NullPointer
    );
    let here = last_message();
    let there = std::thread::spawn(last_message).join().unwrap();
    assert!(!here.is_empty());
    assert_eq!(there, "");
}

#[test]
fn a_panic_inside_an_entry_point_becomes_an_internal_status() {
    let st = guard(|| panic!("boom"));
    assert_eq!(st, PhantomStatus::Internal);
    assert!(last_message().contains("panic"));
}

#[test]
fn a_client_and_server_exchange_a_stream_and_a_datagram_and_a_wrong_key_is_refused() {
    let keys = Keys::new();
    let other = Keys::new();
    let (srv, addr) = server(&keys);
    let caddr = std::ffi::CString::new(addr).unwrap();
    // Accept on another thread while this one connects.
    let srv_ptr = srv as usize;
    let accepting = std::thread::spawn(move || {
        let mut conn = null_mut();
        let st = unsafe {
            phantom_endpoint_accept(srv_ptr as *const PhantomEndpoint, 10_000, &mut conn)
        };
        assert_eq!(st, PhantomStatus::Ok, "{}", last_message());
        let mut s = null_mut();
        assert_eq!(
            unsafe { phantom_connection_accept_stream(conn, 10_000, &mut s) },
            PhantomStatus::Ok
        );
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        for _ in 0..10_000 {
            let mut n = 0;
            let st = unsafe { phantom_stream_read(s, buf.as_mut_ptr(), buf.len(), &mut n) };
            assert_eq!(st, PhantomStatus::Ok, "{}", last_message());
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(
            unsafe { phantom_stream_write(s, got.as_ptr(), got.len()) },
            PhantomStatus::Ok
        );
        assert_eq!(unsafe { phantom_stream_finish(s) }, PhantomStatus::Ok);
        // A datagram, first into a buffer too small for it (it is kept), then whole.
        let mut small = [0u8; 2];
        let mut len = 0;
        let st = unsafe {
            phantom_connection_read_datagram(conn, small.as_mut_ptr(), 2, &mut len, 10_000)
        };
        assert_eq!(st, PhantomStatus::BufferTooSmall);
        assert_eq!(len, 5);
        let mut whole = [0u8; 16];
        let st = unsafe {
            phantom_connection_read_datagram(conn, whole.as_mut_ptr(), 16, &mut len, 10_000)
        };
        assert_eq!(st, PhantomStatus::Ok);
        assert_eq!(&whole[..len], b"hello");
        // Wait for the client's close.
        let st = unsafe {
            phantom_connection_read_datagram(conn, whole.as_mut_ptr(), 16, &mut len, 10_000)
        };
        assert_eq!(st, PhantomStatus::Closed, "{}", last_message());
        unsafe {
            phantom_stream_free(s);
            phantom_connection_free(conn);
        }
        got.len()
    });

    let mut cli = null_mut();
    assert_eq!(
        unsafe { phantom_client_new(c"127.0.0.1:0".as_ptr(), &mut cli) },
        PhantomStatus::Ok
    );
    let mut conn = null_mut();
    let st = unsafe {
        phantom_endpoint_connect(
            cli,
            caddr.as_ptr(),
            other.public.0,
            other.public.1,
            5_000,
            &mut conn,
        )
    };
    assert_eq!(st, PhantomStatus::WrongServerKey);
    assert!(last_message().contains("key"), "{}", last_message());
    assert!(conn.is_null());
    let st = unsafe {
        phantom_endpoint_connect(
            cli,
            caddr.as_ptr(),
            keys.public.0,
            keys.public.1,
            5_000,
            &mut conn,
        )
    };
    assert_eq!(st, PhantomStatus::Ok, "{}", last_message());
    let mut s = null_mut();
    assert_eq!(
        unsafe { phantom_connection_open_stream(conn, &mut s) },
        PhantomStatus::Ok
    );
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        unsafe { phantom_stream_write(s, data.as_ptr(), data.len()) },
        PhantomStatus::Ok
    );
    assert_eq!(unsafe { phantom_stream_finish(s) }, PhantomStatus::Ok);
    let mut back = Vec::new();
    let mut buf = [0u8; 8192];
    for _ in 0..10_000 {
        let mut n = 0;
        assert_eq!(
            unsafe { phantom_stream_read(s, buf.as_mut_ptr(), buf.len(), &mut n) },
            PhantomStatus::Ok
        );
        if n == 0 {
            break;
        }
        back.extend_from_slice(&buf[..n]);
    }
    assert_eq!(back, data);
    assert_eq!(
        unsafe { phantom_connection_send_datagram(conn, b"hello".as_ptr(), 5) },
        PhantomStatus::Ok
    );
    let mut stats = PhantomStats::default();
    assert_eq!(
        unsafe { phantom_connection_stats(conn, &mut stats) },
        PhantomStatus::Ok
    );
    assert!(stats.stream_bytes_sent >= data.len() as u64, "{stats:?}");
    assert!(stats.bytes_received > data.len() as u64, "{stats:?}");
    // Give the datagram time to arrive before closing.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        unsafe { phantom_connection_close(conn, 0, c"done".as_ptr()) },
        PhantomStatus::Ok
    );
    assert_eq!(accepting.join().unwrap(), data.len());
    unsafe {
        phantom_stream_free(s);
        phantom_connection_free(conn);
        assert_eq!(phantom_endpoint_close(cli, 1000), PhantomStatus::Ok);
        phantom_endpoint_free(cli);
        phantom_endpoint_free(srv);
    }
}

#[test]
fn keygen_files_writes_a_secret_key_a_public_key_and_a_certificate() {
    let dir = std::env::temp_dir().join(format!("phantom-ffi-keygen-{}", std::process::id()));
    let cdir = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    assert_eq!(
        unsafe { phantom_keygen_files(cdir.as_ptr()) },
        PhantomStatus::Ok
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.join("server.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let secret = std::fs::read(dir.join("server.key")).unwrap();
    let public = std::fs::read(dir.join("server.pub")).unwrap();
    let cert = std::fs::read(dir.join("server.cert")).unwrap();
    let id = ServerIdentity::from_bytes(&secret).unwrap();
    let vk = parse_public_key(&public).ok().unwrap();
    assert_eq!(cert, id.certificate().to_bytes());
    let parsed = phantom_handshake_cert(&cert);
    assert!(parsed.verify(&vk, phantom::unix_time()).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

fn phantom_handshake_cert(bytes: &[u8]) -> phantom::ServerCertificate {
    phantom::ServerCertificate::from_bytes(bytes).unwrap()
}
