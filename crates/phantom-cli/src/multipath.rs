//! `--path ADDR`: extra paths for `send` and `pipe`, and the per-path lines of `-v`.
//!
//! Each `--path` address is parsed and checked before the handshake (it must be an
//! address of this host, of the server address's family), then added with
//! [`Connection::add_path`] once the connection stands. The client waits up to
//! [`VALIDATION_WAIT`] for the added paths to be validated, so that the transfer
//! starts with every path the `--scheduler` may use; a path still unvalidated then
//! is reported as a warning and the transfer goes on (the scheduler takes the path
//! up if it validates later, I7).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use phantom::Connection;

use crate::CliError;

/// How long the client waits for its added paths to be validated before it starts
/// the transfer anyway.
pub(crate) const VALIDATION_WAIT: Duration = Duration::from_secs(3);

/// Parses one `--path` value: `IP:PORT`, `[IPv6]:PORT`, or a bare IP (port 0: the
/// system picks one).
pub(crate) fn parse(s: &str) -> Result<SocketAddr, CliError> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    match s.parse::<IpAddr>() {
        Ok(ip) => Ok(SocketAddr::new(ip, 0)),
        Err(_) => Err(CliError::Path {
            addr: s.to_owned(),
            reason: "not a local IP address with an optional port (e.g. 127.0.0.2:0)".into(),
        }),
    }
}

/// Parses every `--path` value and checks that each can carry a path to `server`:
/// same address family, and bindable here (an address of this host). Runs before
/// the handshake, so a bad `--path` fails without touching the network.
pub(crate) fn check_all(
    values: &[String],
    server: SocketAddr,
) -> Result<Vec<SocketAddr>, CliError> {
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        let addr = parse(v)?;
        let bad = |reason: String| CliError::Path {
            addr: v.clone(),
            reason,
        };
        if addr.is_ipv4() != server.is_ipv4() {
            return Err(bad(format!(
                "cannot reach the server at {server} (other address family)"
            )));
        }
        if addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return Err(bad("not the address of one interface".into()));
        }
        // Bind and release at once: the runtime binds it again in `add_path`.
        if let Err(e) = std::net::UdpSocket::bind(addr) {
            return Err(bad(if e.kind() == std::io::ErrorKind::AddrNotAvailable {
                format!("not an address of this host ({e})")
            } else {
                e.to_string()
            }));
        }
        out.push(addr);
    }
    Ok(out)
}

/// Adds a path from each address in `locals` and waits up to [`VALIDATION_WAIT`]
/// until all are validated. Returns the local addresses the runtime bound.
pub(crate) async fn add_all(
    conn: &Connection,
    locals: &[SocketAddr],
) -> Result<Vec<SocketAddr>, CliError> {
    let mut added = Vec::with_capacity(locals.len());
    for local in locals {
        let bound = conn.add_path(*local).map_err(|e| CliError::Path {
            addr: local.to_string(),
            reason: e.to_string(),
        })?;
        added.push(bound);
    }
    let unvalidated = |conn: &Connection| -> Vec<SocketAddr> {
        let paths = conn.paths();
        added
            .iter()
            .copied()
            .filter(|a| !paths.iter().any(|p| p.local == *a && p.validated))
            .collect()
    };
    let _ = tokio::time::timeout(VALIDATION_WAIT, async {
        while !unvalidated(conn).is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    for local in unvalidated(conn) {
        tracing::warn!(%local, "path not validated within {VALIDATION_WAIT:?}; going on without it for now");
    }
    for a in &added {
        tracing::info!(local = %a, "path added");
    }
    Ok(added)
}

/// The `-v` lines, one per path, from the runtime's path snapshots:
/// `phantom: path id=.. local=.. remote=.. validated=.. primary=.. bytes_sent=.. rtt_us=..`
/// (`bytes_sent`: datagram bytes this side sent on the path, headers and
/// retransmissions included).
pub(crate) fn verbose_lines(conn: &Connection) -> Vec<String> {
    conn.paths()
        .iter()
        .map(|p| {
            format!(
                "phantom: path id={} local={} remote={} validated={} primary={} bytes_sent={} rtt_us={}",
                p.id.0,
                p.local,
                p.remote,
                p.validated,
                p.primary,
                p.bytes_sent,
                p.rtt.as_micros()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_values_parse_with_and_without_a_port() {
        assert_eq!(
            parse("127.0.0.2:0").unwrap(),
            SocketAddr::from(([127, 0, 0, 2], 0))
        );
        assert_eq!(
            parse("127.0.0.2").unwrap(),
            SocketAddr::from(([127, 0, 0, 2], 0))
        );
        assert_eq!(
            parse("10.1.2.3:4433").unwrap(),
            SocketAddr::from(([10, 1, 2, 3], 4433))
        );
        assert_eq!(parse("[::1]:7").unwrap().port(), 7);
        assert_eq!(parse("::1").unwrap().port(), 0);
        for bad in [
            "",
            "eth0",
            "127.0.0.2:",
            "127.0.0.2:70000",
            "host:1",
            "1.2.3.4.5",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn path_checks_refuse_other_family_unspecified_and_foreign_addresses() {
        let server: SocketAddr = ([127, 0, 0, 1], 4433).into();
        let ok = check_all(&["127.0.0.2:0".into(), "127.0.0.3".into()], server).unwrap();
        assert_eq!(ok.len(), 2);
        let foreign = foreign_address();
        for bad in ["[::1]:0", "0.0.0.0:0", "224.0.0.1:0", foreign.as_str()] {
            assert!(check_all(&[bad.into()], server).is_err(), "{bad}");
        }
    }

    /// A documentation address (RFC 5737) that is not configured on this host.
    fn foreign_address() -> String {
        ["203.0.113.254:0", "198.51.100.254:0", "192.0.2.254:0"]
            .into_iter()
            .find(|a| {
                std::net::UdpSocket::bind(a)
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::AddrNotAvailable)
            })
            .expect("one documentation address is not local")
            .to_owned()
    }
}
