//! quinn 0.11 beside Phantom in `cargo xtask netlab --quinn`: one bulk stream over the
//! lab's links.
//!
//! `netlab_quinn server --listen ADDR --cert-out FILE [--out-dir DIR]` writes its
//! self-signed certificate (DER) to FILE, prints `listening on ADDR` and answers every
//! stream with its byte count and whether the bytes equal the lab's payload stream.
//! With `--out-dir` it first stores the stream as a file in DIR, synced to disk and
//! renamed into place, as `phantom serve --out-dir` does before it confirms a file: the
//! lab times both from the first write to that confirmation.
//! `netlab_quinn client --connect ADDR --cert FILE --bytes N` sends N payload bytes
//! and prints `netlab-result bytes=N secs=S exact=yes|no`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::io::AsyncWriteExt as _;
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// UDP payload size, as in the loopback comparison (no MTU discovery).
const MTU: u16 = 1452;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Count and check every stream.
    Server {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        cert_out: PathBuf,
        /// Store every stream here (synced) before answering.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Send one stream of payload bytes.
    Client {
        #[arg(long)]
        connect: SocketAddr,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        bytes: u64,
    },
}

/// xorshift64*, byte by byte (the same stream as phantom-cli's `netlab_client`).
struct Payload {
    state: u64,
    word: [u8; 8],
    used: usize,
}

impl Payload {
    fn new() -> Self {
        Self {
            state: 0x9e37_79b9_7f4a_7c15,
            word: [0; 8],
            used: 8,
        }
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            if self.used == 8 {
                self.state ^= self.state >> 12;
                self.state ^= self.state << 25;
                self.state ^= self.state >> 27;
                self.word = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
                self.used = 0;
            }
            *b = self.word.get(self.used).copied().unwrap_or(0);
            self.used += 1;
        }
    }
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.initial_mtu(MTU).min_mtu(MTU).mtu_discovery_config(None);
    Arc::new(t)
}

async fn server(
    listen: SocketAddr,
    cert_out: PathBuf,
    out_dir: Option<PathBuf>,
) -> Result<(), String> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .map_err(|e| format!("rcgen: {e}"))?;
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    std::fs::write(&cert_out, cert.as_ref()).map_err(|e| format!("{}: {e}", cert_out.display()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let mut cfg = quinn::ServerConfig::with_single_cert(vec![cert], key)
        .map_err(|e| format!("server config: {e}"))?;
    cfg.transport_config(transport());
    let ep = quinn::Endpoint::server(cfg, listen).map_err(|e| format!("bind: {e}"))?;
    println!("listening on {listen}");
    let serial = Arc::new(std::sync::atomic::AtomicU64::new(0));
    while let Some(incoming) = ep.accept().await {
        let (out_dir, serial) = (out_dir.clone(), serial.clone());
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let n = serial.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let store = out_dir.as_ref().map(|d| {
                    let name = format!("quinn-{}-{n}", std::process::id());
                    (d.join(format!("{name}.part")), d.join(name))
                });
                tokio::spawn(async move {
                    let mut file = match &store {
                        Some((part, _)) => match tokio::fs::File::create(part).await {
                            Ok(f) => Some(f),
                            Err(_) => return,
                        },
                        None => None,
                    };
                    let mut expect = Payload::new();
                    let mut buf = vec![0u8; 256 * 1024];
                    let mut want = vec![0u8; 256 * 1024];
                    let mut n = 0u64;
                    let mut exact = true;
                    while let Ok(Some(k)) = recv.read(&mut buf).await {
                        let got = buf.get(..k).unwrap_or_default();
                        if let Some(f) = file.as_mut() {
                            exact &= f.write_all(got).await.is_ok();
                        }
                        let w = want.get_mut(..k).unwrap_or_default();
                        expect.fill(w);
                        exact &= got == w;
                        n += k as u64;
                    }
                    if let (Some(f), Some((part, name))) = (file, &store) {
                        exact &= f.sync_all().await.is_ok();
                        exact &= tokio::fs::rename(part, name).await.is_ok();
                    }
                    let mut answer = n.to_be_bytes().to_vec();
                    answer.push(u8::from(exact));
                    let _ = send.write_all(&answer).await;
                    let _ = send.finish();
                    let _ = send.stopped().await;
                });
            }
        });
    }
    Ok(())
}

async fn client(connect: SocketAddr, cert: PathBuf, bytes: u64) -> Result<(), String> {
    let der = std::fs::read(&cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(der))
        .map_err(|e| format!("root store: {e}"))?;
    // rustls is built with two providers here (ring and aws-lc-rs), so it has no implicit
    // default: name ring, as quinn's own server config does.
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| format!("tls: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let quic = QuicClientConfig::try_from(tls).map_err(|e| format!("quic tls: {e}"))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(transport());
    let ep = quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0)))
        .map_err(|e| format!("client: {e}"))?;
    let conn = ep
        .connect_with(cfg, connect, "localhost")
        .map_err(|e| format!("connect: {e}"))?
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let start = tokio::time::Instant::now();
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| format!("open_bi: {e}"))?;
    let mut payload = Payload::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let chunk = buf.get_mut(..n).unwrap_or_default();
        payload.fill(chunk);
        send.write_all(chunk)
            .await
            .map_err(|e| format!("write: {e}"))?;
        left -= n as u64;
    }
    send.finish().map_err(|e| format!("finish: {e}"))?;
    let mut answer = [0u8; 9];
    recv.read_exact(&mut answer)
        .await
        .map_err(|e| format!("read answer: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    let (count, flag) = answer.split_at(8);
    let mut c = [0u8; 8];
    c.copy_from_slice(count);
    let got = u64::from_be_bytes(c);
    let exact = got == bytes && flag == [1];
    println!(
        "netlab-result bytes={got} secs={secs:.3} exact={}",
        if exact { "yes" } else { "no" }
    );
    conn.close(0u32.into(), b"done");
    let _ = tokio::time::timeout(Duration::from_secs(1), ep.wait_idle()).await;
    if exact {
        Ok(())
    } else {
        Err(format!(
            "server counted {got} of {bytes} bytes, exact flag {flag:?}"
        ))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netlab_quinn: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(async {
        match cli.cmd {
            Cmd::Server {
                listen,
                cert_out,
                out_dir,
            } => server(listen, cert_out, out_dir).await,
            Cmd::Client {
                connect,
                cert,
                bytes,
            } => client(connect, cert, bytes).await,
        }
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netlab_quinn: {e}");
            ExitCode::FAILURE
        }
    }
}
