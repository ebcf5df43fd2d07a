//! The Redis replay guard against a real `redis-server`.
//!
//! The tests that need a server are `#[ignore = "needs SUKI_REDIS_URL …"]`: a plain `cargo test`
//! counts them as ignored, and `bash .ci/run` starts a redis-server, sets `SUKI_REDIS_URL` and runs
//! them with `--include-ignored` (failing if the server is missing).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use suki_ambient_core::testing::{self, FixedClock};
use suki_ambient_core::{
    EventHandler, Freshness, GuardFailurePolicy, HandlerError, ReplayGuard, ReplayKey, UnixMillis,
    Verifier, WebhookEndpoint, WebhookEvent, WebhookMeta,
};
use suki_ambient_redis::RedisReplayGuard;

/// The server `.ci/run` started. These tests are `#[ignore]`d in a plain `cargo test` and run with
/// `--include-ignored`, where a missing server is a failure, not a skip.
fn redis_url(test: &str) -> String {
    match std::env::var("SUKI_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{test} needs a Redis: SUKI_REDIS_URL is not set (run `bash .ci/run`, or start redis-server and export SUKI_REDIS_URL=redis://127.0.0.1:PORT/)"
        ),
    }
}

/// A prefix no other test run uses.
fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("suki-test:{test}:{nanos}:")
}

const TTL: Duration = Duration::from_secs(60);

#[ignore = "needs SUKI_REDIS_URL (bash .ci/run starts one)"]
#[tokio::test]
async fn claim_commit_release() {
    let url = redis_url("claim_commit_release");
    let guard = RedisReplayGuard::new(&url).unwrap().prefix(prefix("ccr"));
    let key = ReplayKey([1; 32]);
    assert_eq!(guard.check_and_mark(key, TTL).await, Ok(Freshness::Fresh));
    assert_eq!(
        guard.check_and_mark(key, TTL).await,
        Ok(Freshness::InFlight)
    );
    guard.release(key).await.unwrap();
    assert_eq!(guard.check_and_mark(key, TTL).await, Ok(Freshness::Fresh));
    guard.commit(key, TTL).await.unwrap();
    assert_eq!(
        guard.check_and_mark(key, TTL).await,
        Ok(Freshness::Duplicate)
    );
    // Release after commit does not forget a processed key.
    guard.release(key).await.unwrap();
    assert_eq!(
        guard.check_and_mark(key, TTL).await,
        Ok(Freshness::Duplicate)
    );
    // TTLs expire.
    let short = ReplayKey([2; 32]);
    guard.check_and_mark(short, TTL).await.unwrap();
    guard
        .commit(short, Duration::from_millis(150))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(guard.check_and_mark(short, TTL).await, Ok(Freshness::Fresh));
}

#[ignore = "needs SUKI_REDIS_URL (bash .ci/run starts one)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_winner_among_racing_instances() {
    let url = redis_url("one_winner_among_racing_instances");
    let p = prefix("race");
    let a = RedisReplayGuard::new(&url).unwrap().prefix(p.clone());
    let b = RedisReplayGuard::new(&url).unwrap().prefix(p);
    for round in 0..20u8 {
        let key = ReplayKey([round; 32]);
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let guard = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move { guard.check_and_mark(key, TTL).await.unwrap() })
            })
            .collect();
        let mut fresh = 0;
        for t in tasks {
            if t.await.unwrap() == Freshness::Fresh {
                fresh += 1;
            }
        }
        assert_eq!(fresh, 1, "round {round}");
    }
}

#[derive(Default)]
struct Count {
    calls: AtomicUsize,
    fail_first: AtomicUsize,
}

#[suki_ambient_core::async_trait]
impl EventHandler for Count {
    async fn handle(&self, _e: WebhookEvent, _m: WebhookMeta) -> Result<(), HandlerError> {
        if self.fail_first.swap(0, Ordering::SeqCst) == 1 {
            return Err("first attempt fails".into());
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

const NOW: u64 = 1_766_122_020_941;

fn verifier() -> Verifier {
    Verifier::builder()
        .secret("k")
        .clock(FixedClock::new(UnixMillis(NOW)))
        .build()
        .unwrap()
}

#[ignore = "needs SUKI_REDIS_URL (bash .ci/run starts one)"]
#[tokio::test]
async fn two_instances_process_each_event_once_and_a_failure_is_retried_elsewhere() {
    let url = redis_url("two_instances");
    let p = prefix("fleet");
    let handler = Arc::new(Count::default());
    let a = WebhookEndpoint::new(verifier(), Arc::clone(&handler))
        .replay_guard(RedisReplayGuard::new(&url).unwrap().prefix(p.clone()));
    let b = WebhookEndpoint::new(verifier(), Arc::clone(&handler))
        .replay_guard(RedisReplayGuard::new(&url).unwrap().prefix(p));
    let (headers, body) = testing::signed(
        "k",
        UnixMillis(NOW),
        testing::completed("fleet-1", "e").to_vec(),
    );
    assert_eq!(a.handle(&headers, body.clone()).await.status, 200);
    assert_eq!(b.handle(&headers, body.clone()).await.status, 200);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1);

    handler.fail_first.store(1, Ordering::SeqCst);
    let (headers, body) = testing::signed(
        "k",
        UnixMillis(NOW),
        testing::completed("fleet-2", "e").to_vec(),
    );
    assert_eq!(a.handle(&headers, body.clone()).await.status, 500);
    assert_eq!(
        b.handle(&headers, body.clone()).await.status,
        200,
        "released, so processed by B"
    );
    assert_eq!(a.handle(&headers, body).await.status, 200);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn redis_down_follows_the_policy() {
    // Runs without a Redis on purpose: nothing listens on this port.
    let url = format!("redis://127.0.0.1:{}/", free_port());
    let guard = RedisReplayGuard::new(&url).unwrap();
    let started = std::time::Instant::now();
    let err = guard
        .check_and_mark(ReplayKey([9; 32]), TTL)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        !err.to_string().contains("127.0.0.1"),
        "no URL in errors: {err}"
    );

    let handler = Arc::new(Count::default());
    let (headers, body) = testing::signed(
        "k",
        UnixMillis(NOW),
        testing::completed("down", "e").to_vec(),
    );
    let open = WebhookEndpoint::new(verifier(), Arc::clone(&handler)).replay_guard(guard.clone());
    assert_eq!(
        open.handle(&headers, body.clone()).await.status,
        200,
        "fail-open by default"
    );
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1);
    let closed = WebhookEndpoint::new(verifier(), Arc::clone(&handler))
        .replay_guard(guard)
        .on_guard_failure(GuardFailurePolicy::Reject);
    assert_eq!(closed.handle(&headers, body).await.status, 503);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1);
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis(port: u16) -> Server {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Server(child)
}

#[ignore = "needs SUKI_REDIS_URL (bash .ci/run starts one)"]
#[tokio::test]
async fn the_connection_manager_reconnects_after_a_restart() {
    // Needs the redis-server binary; uses a private server so it can be stopped.
    redis_url("the_connection_manager_reconnects_after_a_restart");
    let port = free_port();
    let server = start_redis(port);
    let guard = RedisReplayGuard::new(&format!("redis://127.0.0.1:{port}/")).unwrap();
    assert_eq!(
        guard.check_and_mark(ReplayKey([1; 32]), TTL).await,
        Ok(Freshness::Fresh)
    );
    drop(server);
    assert!(
        guard.check_and_mark(ReplayKey([2; 32]), TTL).await.is_err(),
        "down"
    );
    let _server = start_redis(port);
    let mut recovered = false;
    for _ in 0..50 {
        if guard.check_and_mark(ReplayKey([3; 32]), TTL).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the guard works again once Redis is back");
}
