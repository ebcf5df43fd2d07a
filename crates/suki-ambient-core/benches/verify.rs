//! Verification cost against two baselines measured in the same run:
//! - `floor`: one HMAC-SHA-256 of `generated-at:body` from a pre-keyed `hmac` state (the least
//!   work any verifier must do);
//! - `naive`: what a user would hand-write from Suki's docs (key per request, `hex::encode`,
//!   string `==`).
//!
//! Run: `cargo bench -p suki-ambient-core --bench verify`. After criterion's own report, a table
//! of ratios (verifier / floor, verifier / naive) is printed.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use suki_ambient_core::testing::FixedClock;
use suki_ambient_core::{UnixMillis, Verifier, WebhookEvent, WebhookSecret, sign};

const SECRET: &str = "bench-secret-0123456789";
const AT: &str = "1766122020941";
const SIZES: [usize; 5] = [256, 2 * 1024, 16 * 1024, 64 * 1024, 256 * 1024];

fn body(size: usize) -> Vec<u8> {
    // A JSON-ish body of exactly `size` bytes.
    let mut b = br#"{"status":"success","pad":""#.to_vec();
    b.resize(size - 2, b'x');
    b.extend_from_slice(b"\"}");
    b
}

fn bench_verify(c: &mut Criterion) {
    let verifier = Verifier::builder()
        .secret(SECRET)
        .clock(FixedClock::new(UnixMillis(1_766_122_020_941)))
        .max_body_bytes(1 << 20)
        .build()
        .unwrap();
    let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    let mut group = c.benchmark_group("verify");
    group
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for size in SIZES {
        let body = body(size);
        let sig = sign(&WebhookSecret::from(SECRET), AT, &body).to_hex();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("floor", size), &body, |b, body| {
            b.iter(|| {
                let mut mac = keyed.clone();
                mac.update(black_box(AT).as_bytes());
                mac.update(b":");
                mac.update(black_box(body));
                black_box(mac.finalize().into_bytes())
            });
        });
        group.bench_with_input(BenchmarkId::new("naive", size), &body, |b, body| {
            b.iter(|| {
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
                mac.update(black_box(AT).as_bytes());
                mac.update(b":");
                mac.update(black_box(body));
                let expected = hex::encode(mac.finalize().into_bytes());
                black_box(expected == black_box(sig.as_str()))
            });
        });
        group.bench_with_input(BenchmarkId::new("suki_ambient", size), &body, |b, body| {
            b.iter(|| {
                black_box(
                    verifier
                        .verify_parts(black_box(AT), black_box(&sig), black_box(body))
                        .is_ok(),
                )
            });
        });
    }
    // What the `metrics` feature adds to each verification (a stopwatch and one histogram
    // record through the facade); with no recorder installed, as in this bench. Without the
    // feature it is nothing at all, which this measures too.
    group.bench_function("metrics_overhead", |b| {
        b.iter(|| {
            let stopwatch = black_box(suki_ambient_core::metrics::Stopwatch::start());
            stopwatch.record(suki_ambient_core::metrics::WEBHOOK_VERIFY_SECONDS);
        });
    });
    group.finish();

    let success = suki_ambient_core::testing::fixture("webhooks/success.json");
    let failure = suki_ambient_core::testing::fixture("webhooks/failure.json");
    let big = success_16k();
    let sig = sign(&WebhookSecret::from(SECRET), AT, &success).to_hex();
    let mut group = c.benchmark_group("parse");
    group
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for (name, bytes) in [
        ("success", &success),
        ("failure", &failure),
        ("success_16k", &big),
    ] {
        group.bench_function(format!("value/{name}"), |b| {
            b.iter(|| {
                black_box(serde_json::from_slice::<serde_json::Value>(black_box(bytes)).unwrap())
            });
        });
        group.bench_function(format!("typed/{name}"), |b| {
            b.iter(|| black_box(WebhookEvent::from_slice(black_box(bytes)).unwrap()));
        });
    }
    group.bench_function("verify_and_parse", |b| {
        b.iter(|| {
            let v = verifier
                .verify_parts(AT, &sig, black_box(&success))
                .unwrap();
            black_box(v.parse().unwrap())
        });
    });
    group.finish();
}

/// A 16 KiB success payload: the documented shape, six links, and a large `additional_info`.
fn success_16k() -> Vec<u8> {
    let mut event = suki_ambient_core::testing::completed(
        "a953839a-ddcd-407d-b9b0-3ed4b6be4be2",
        "4d753ce1-bbff-43e1-950a-82dea2d86873",
    );
    if let WebhookEvent::Completed(done) = &mut event {
        let mut info = serde_json::Map::new();
        let mut i = 0;
        while serde_json::to_vec(&info).unwrap().len() < 14_500 {
            info.insert(
                format!("field_{i}"),
                serde_json::json!({"priority": "high", "tags": ["a", "b", "c"], "n": i}),
            );
            i += 1;
        }
        done.additional_info = Some(info);
    }
    event.to_vec()
}

/// Mean time in ns of one benchmark, from criterion's saved estimates.
fn mean_ns(group: &str, id: &str) -> Option<f64> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = dir
        .join("criterion")
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn print_ratios() {
    println!("\nverify: ratios measured in this run (lower is better)");
    println!(
        "{:>8} {:>11} {:>11} {:>11} {:>9} {:>9} {:>9}",
        "bytes", "floor ns", "naive ns", "sdk ns", "sdk/flr", "sdk/naive", "sdk GiB/s"
    );
    for size in SIZES {
        let (Some(floor), Some(naive), Some(sdk)) = (
            mean_ns("verify", &format!("floor/{size}")),
            mean_ns("verify", &format!("naive/{size}")),
            mean_ns("verify", &format!("suki_ambient/{size}")),
        ) else {
            println!("{size:>8} (not measured in this run)");
            continue;
        };
        let gibps = size as f64 / sdk / 1.073_741_824;
        println!(
            "{size:>8} {floor:>11.0} {naive:>11.0} {sdk:>11.0} {:>8.3}x {:>8.3}x {gibps:>9.2}",
            sdk / floor,
            sdk / naive
        );
        if size == 64 * 1024
            && let Some(mhz) = cpu_mhz()
        {
            println!(
                "         (at 64 KiB: {:.2} cycles/byte at the {mhz:.0} MHz /proc/cpuinfo reports)",
                sdk * mhz / 1000.0 / size as f64
            );
        }
    }
    if let (Some(overhead), Some(sdk)) = (
        mean_ns("verify", "metrics_overhead"),
        mean_ns("verify", "suki_ambient/256"),
    ) {
        println!(
            "\nmetrics feature {}: {overhead:.1} ns per verification = {:.1} % of the 256 B verify",
            if cfg!(feature = "metrics") {
                "on, no recorder installed"
            } else {
                "off"
            },
            overhead / sdk * 100.0
        );
    }
    println!("\nparse: typed WebhookEvent vs serde_json::Value of the same bytes");
    for name in ["success", "failure", "success_16k"] {
        if let (Some(value), Some(typed)) = (
            mean_ns("parse", &format!("value_{name}")),
            mean_ns("parse", &format!("typed_{name}")),
        ) {
            println!(
                "{name:>12}: Value {value:.0} ns, typed {typed:.0} ns, typed/Value {:.3}x",
                typed / value
            );
        }
    }
    if let Some(both) = mean_ns("parse", "verify_and_parse") {
        println!("verify + parse of the documented success payload: {both:.0} ns");
    }
}

/// The CPU clock from /proc/cpuinfo (nominal: turbo and throttling are not seen).
fn cpu_mhz() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_verify(&mut c);
    c.final_summary();
    print_ratios();
}
