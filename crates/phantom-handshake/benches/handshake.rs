//! Full handshakes per second on one core (both sides in one process), beside the
//! primitives they are built from, measured in the same run.
//!
//! Run: `cargo bench -p phantom-handshake --bench handshake -- --warm-up-time 1 --measurement-time 3`
//! (add `--features aws-lc` for the aws-lc-rs backend; its primitives are then measured too;
//! set `PHANTOM_BENCH_CPU=1` to measure on-CPU time instead of wall time on a busy machine).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Bencher, Criterion, criterion_group, criterion_main};
use ml_dsa::signature::{Keypair as _, Signer as _, Verifier as _};
use ml_kem::kem::{Decapsulate as _, Encapsulate as _, Kem as _};
use phantom_handshake::{
    Client, ClientConfig, HybridSigningKey, HybridVerifyingKey, Server, ServerConfig,
    ServerIdentity, Time,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const UNIX: u64 = 1_750_000_000;

/// `PHANTOM_BENCH_CPU=1` makes every benchmark measure this thread's on-CPU time
/// (`CLOCK_THREAD_CPUTIME_ID`) instead of wall time: on a shared machine the time
/// the thread waits for a core then does not count (cache and memory contention still
/// do). Without it, criterion's usual wall-clock measurement.
fn cpu_mode() -> bool {
    static M: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *M.get_or_init(|| std::env::var_os("PHANTOM_BENCH_CPU").is_some_and(|v| v == "1"))
}

/// On-CPU nanoseconds of this thread so far (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}

/// A start point in wall or CPU time (per [`cpu_mode`]).
enum Clock {
    Wall(Instant),
    Cpu(u64),
}

impl Clock {
    #[allow(clippy::disallowed_methods)]
    fn start() -> Self {
        if cpu_mode() {
            Clock::Cpu(thread_cpu_ns())
        } else {
            Clock::Wall(Instant::now())
        }
    }

    fn elapsed(&self) -> Duration {
        match self {
            Clock::Wall(t) => t.elapsed(),
            Clock::Cpu(t) => Duration::from_nanos(thread_cpu_ns().saturating_sub(*t)),
        }
    }
}

/// `b.iter(f)`, timed with [`Clock`].
fn timed<O>(b: &mut Bencher<'_>, mut f: impl FnMut() -> O) {
    b.iter_custom(|iters| {
        let t0 = Clock::start();
        for _ in 0..iters {
            black_box(f());
        }
        t0.elapsed()
    });
}

#[allow(clippy::disallowed_methods)]
fn now() -> Time {
    Time::new(Instant::now(), UNIX)
}

fn primitives(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut g = c.benchmark_group("primitive");
    let peer =
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::random_from_rng(&mut rng));
    g.bench_function("x25519_keygen+dh", |b| {
        timed(b, || {
            let s = x25519_dalek::StaticSecret::random_from_rng(&mut rng);
            black_box(x25519_dalek::PublicKey::from(&s));
            black_box(s.diffie_hellman(&peer))
        });
    });
    g.bench_function("mlkem768_keygen", |b| {
        timed(b, || {
            black_box(ml_kem::MlKem768::generate_keypair_from_rng(&mut rng))
        });
    });
    let (dk, ek) = ml_kem::MlKem768::generate_keypair_from_rng(&mut rng);
    g.bench_function("mlkem768_encaps", |b| {
        timed(b, || black_box(ek.encapsulate_with_rng(&mut rng)))
    });
    let (ct, _) = ek.encapsulate_with_rng(&mut rng);
    g.bench_function("mlkem768_decaps", |b| {
        timed(b, || black_box(dk.decapsulate(&ct)))
    });
    let ed = ed25519_dalek::SigningKey::generate(&mut rng);
    let msg = [7u8; 1300];
    g.bench_function("ed25519_sign", |b| {
        timed(b, || black_box(ed25519_dalek::Signer::sign(&ed, &msg)))
    });
    let sig = ed25519_dalek::Signer::sign(&ed, &msg);
    let edv = ed.verifying_key();
    g.bench_function("ed25519_verify", |b| {
        timed(b, || black_box(edv.verify_strict(&msg, &sig).is_ok()))
    });
    let ml = ml_dsa::SigningKey::<ml_dsa::MlDsa65>::from_seed(&[3u8; 32].into());
    g.bench_function("mldsa65_sign", |b| {
        timed(b, || black_box(ml.try_sign(&msg)))
    });
    let Ok(msig) = ml.try_sign(&msg) else { return };
    let mlv = ml.verifying_key();
    g.bench_function("mldsa65_verify", |b| {
        timed(b, || black_box(mlv.verify(&msg, &msig).is_ok()))
    });
    #[cfg(feature = "aws-lc")]
    aws_primitives(&mut g);
    g.finish();
}

/// The same primitives on aws-lc-rs (what the `aws-lc` feature runs).
#[cfg(feature = "aws-lc")]
fn aws_primitives(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    use aws_lc_rs::{agreement, kem};
    let Some(peer) = agreement::PrivateKey::from_private_key(&agreement::X25519, &[9u8; 32])
        .ok()
        .and_then(|k| k.compute_public_key().ok())
    else {
        return;
    };
    let peer = peer.as_ref().to_vec();
    g.bench_function("awslc_x25519_keygen+dh", |b| {
        timed(b, || {
            let s = agreement::PrivateKey::from_private_key(&agreement::X25519, &[7u8; 32]).ok()?;
            black_box(s.compute_public_key().ok()?);
            agreement::agree(
                &s,
                agreement::UnparsedPublicKey::new(&agreement::X25519, &peer),
                (),
                |k| Ok(black_box(k.len())),
            )
            .ok()
        })
    });
    g.bench_function("awslc_mlkem768_keygen", |b| {
        timed(b, || {
            let dk = kem::DecapsulationKey::generate(&kem::ML_KEM_768).ok()?;
            Some(black_box(
                dk.encapsulation_key()
                    .ok()?
                    .key_bytes()
                    .ok()?
                    .as_ref()
                    .len(),
            ))
        })
    });
    let Ok(dk) = kem::DecapsulationKey::generate(&kem::ML_KEM_768) else {
        return;
    };
    let Ok(ek) = dk.encapsulation_key() else {
        return;
    };
    g.bench_function("awslc_mlkem768_encaps", |b| {
        timed(b, || black_box(ek.encapsulate().is_ok()))
    });
    let Ok((ct, _)) = ek.encapsulate() else {
        return;
    };
    let ct = ct.as_ref().to_vec();
    g.bench_function("awslc_mlkem768_decaps", |b| {
        timed(b, || {
            black_box(dk.decapsulate(kem::Ciphertext::from(ct.as_slice())).is_ok())
        })
    });
}

/// The public-key operations of a PDK handshake on aws-lc-rs, no protocol (the same-run
/// baseline for `pdk_1rtt_both_sides` with `--features aws-lc`).
#[cfg(feature = "aws-lc")]
fn aws_pdk_ops(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rng: &mut ChaCha20Rng,
) {
    use aws_lc_rs::{agreement, kem};
    use rand_core::Rng as _;
    let x = &agreement::X25519;
    let key = |rng: &mut ChaCha20Rng| {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        agreement::PrivateKey::from_private_key(x, &b).ok()
    };
    let dh = |k: &agreement::PrivateKey, p: &[u8]| {
        agreement::agree(k, agreement::UnparsedPublicKey::new(x, p), (), |s| {
            Ok(black_box(s.len()))
        })
        .ok()
    };
    let Some(static_x) = key(rng) else { return };
    let Ok(static_x_pub) = static_x.compute_public_key() else {
        return;
    };
    let Ok(static_dk) = kem::DecapsulationKey::generate(&kem::ML_KEM_768) else {
        return;
    };
    let Ok(static_ek) = static_dk.encapsulation_key() else {
        return;
    };
    g.bench_function("pdk_crypto_ops_only_awslc", |b| {
        timed(b, || {
            let c_x = key(rng)?;
            let c_x_pub = c_x.compute_public_key().ok()?;
            let c_dk = kem::DecapsulationKey::generate(&kem::ML_KEM_768).ok()?;
            let c_ek = c_dk.encapsulation_key().ok()?.key_bytes().ok()?;
            dh(&c_x, static_x_pub.as_ref())?;
            let (s_ct, _) = static_ek.encapsulate().ok()?;
            let s_x = key(rng)?;
            let s_x_pub = s_x.compute_public_key().ok()?;
            dh(&s_x, c_x_pub.as_ref())?;
            dh(&static_x, c_x_pub.as_ref())?;
            let (e_ct, _) = kem::EncapsulationKey::new(&kem::ML_KEM_768, c_ek.as_ref())
                .ok()?
                .encapsulate()
                .ok()?;
            black_box(static_dk.decapsulate(s_ct).ok()?);
            dh(&c_x, s_x_pub.as_ref())?;
            black_box(c_dk.decapsulate(e_ct).ok()?);
            Some(())
        })
    });
}

struct Setup {
    server: Server,
    cfg_full: ClientConfig,
    cfg_pdk: ClientConfig,
}

fn setup() -> Option<Setup> {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let signing = HybridSigningKey::generate(&mut rng);
    let identity = ServerIdentity::generate(&signing, &mut rng, UNIX + 86_400).ok()?;
    let vk = signing.verifying_key();
    let mut cfg_pdk = ClientConfig::new(vk.clone());
    cfg_pdk.certificate = Some(identity.certificate().verify(&vk, UNIX).ok()?);
    let cfg_full = ClientConfig::new(vk);
    let server = Server::new(ServerConfig::new(identity), &mut rng);
    Some(Setup {
        server,
        cfg_full,
        cfg_pdk,
    })
}

/// One complete handshake, both sides; returns whether both completed.
fn run(server: &mut Server, cfg: ClientConfig, rng: &mut ChaCha20Rng, from: SocketAddr) -> bool {
    let t = now();
    let Ok(mut client) = Client::new(cfg, rng, t) else {
        return false;
    };
    let mut done = false;
    for _ in 0..8 {
        while let Some(d) = client.poll_transmit() {
            if let Ok(Some(e)) = server.handle_datagram(t, from, &d, rng, |_| false) {
                done = true;
                black_box(e);
            }
        }
        while let Some(tx) = server.poll_transmit() {
            let _ = client.handle(t, &tx.payload, rng);
        }
        if done && client.is_complete() {
            break;
        }
    }
    done && client.is_complete()
}

fn handshakes(c: &mut Criterion) {
    let Some(mut s) = setup() else { return };
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut n: u32 = 0;
    let mut next = move || {
        n = n.wrapping_add(1);
        SocketAddr::from((n.to_be_bytes(), 5000))
    };
    assert!(run(&mut s.server, s.cfg_pdk.clone(), &mut rng, next()));
    assert!(run(&mut s.server, s.cfg_full.clone(), &mut rng, next()));
    let mut g = c.benchmark_group("handshake");
    // Same-run baseline: exactly the public-key operations of a PDK handshake, no protocol.
    let static_x = x25519_dalek::StaticSecret::random_from_rng(&mut rng);
    let static_x_pub = x25519_dalek::PublicKey::from(&static_x);
    let (static_dk, static_ek) = ml_kem::MlKem768::generate_keypair_from_rng(&mut rng);
    g.bench_function("pdk_crypto_ops_only", |b| {
        timed(b, || {
            // Client first flight.
            let c_x = x25519_dalek::StaticSecret::random_from_rng(&mut rng);
            let c_x_pub = x25519_dalek::PublicKey::from(&c_x);
            let (c_dk, c_ek) = ml_kem::MlKem768::generate_keypair_from_rng(&mut rng);
            let es_x = c_x.diffie_hellman(&static_x_pub);
            let (s_ct, _es_ml) = static_ek.encapsulate_with_rng(&mut rng);
            // Server.
            let s_x = x25519_dalek::StaticSecret::random_from_rng(&mut rng);
            let s_x_pub = x25519_dalek::PublicKey::from(&s_x);
            black_box(s_x.diffie_hellman(&c_x_pub));
            black_box(static_x.diffie_hellman(&c_x_pub));
            let (e_ct, _) = c_ek.encapsulate_with_rng(&mut rng);
            black_box(static_dk.decapsulate(&s_ct));
            // Client second step.
            black_box(c_x.diffie_hellman(&s_x_pub));
            black_box(c_dk.decapsulate(&e_ct));
            black_box(es_x)
        });
    });
    #[cfg(feature = "aws-lc")]
    aws_pdk_ops(&mut g, &mut rng);
    g.bench_function("pdk_1rtt_both_sides", |b| {
        timed(b, || {
            run(&mut s.server, s.cfg_pdk.clone(), &mut rng, next())
        });
    });
    // First contact: a freshly parsed pinned key (its own, empty verification cache,
    // built outside the timed part) has never verified this certificate, so the client
    // runs both signature checks.
    let vk_bytes = s.cfg_full.server_key.to_bytes();
    g.bench_function("full_kemtls_with_cert_verify_both_sides", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(32);
                left -= n;
                let cfgs: Vec<ClientConfig> = (0..n)
                    .filter_map(|_| HybridVerifyingKey::from_bytes(&vk_bytes).ok())
                    .map(ClientConfig::new)
                    .collect();
                let t0 = Clock::start();
                for cfg in cfgs {
                    black_box(run(&mut s.server, cfg, &mut rng, next()));
                }
                total += t0.elapsed();
            }
            total
        });
    });
    // Repeat connects in full mode (no certificate in the config): the pinned key
    // remembers the verified certificate, so no signature is checked again.
    g.bench_function("full_kemtls_repeat_cached_verify_both_sides", |b| {
        timed(b, || {
            run(&mut s.server, s.cfg_full.clone(), &mut rng, next())
        });
    });
    g.finish();
}

criterion_group!(benches, primitives, handshakes);
criterion_main!(benches);
