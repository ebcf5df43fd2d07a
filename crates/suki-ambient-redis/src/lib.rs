//! A Redis-backed [`ReplayGuard`] for fleets of Suki webhook receivers.
//!
//! Several receiver instances behind a load balancer each see a share of deliveries; an
//! in-memory guard cannot tell one instance about what another processed. [`RedisReplayGuard`]
//! keeps the claims in Redis:
//!
//! - `check_and_mark`: `SET key "inflight" NX PX <claim_ttl>`: exactly one instance wins the
//!   claim; the others see `Duplicate` (already processed) or `InFlight` (being processed);
//! - `commit` (handler succeeded): `SET key "done" PX <ttl>`;
//! - `release` (handler failed): deletes the key only while it is still an in-flight claim, so
//!   a re-delivery is processed.
//!
//! Keys are `<prefix><hex of the replay key>` (default prefix `suki:replay:`); the replay key is
//! a SHA-256 of authenticated data only. The connection manager reconnects by itself; while
//! Redis is unreachable each call fails fast with [`ReplayError::Unavailable`], and the
//! endpoint's [`GuardFailurePolicy`](suki_ambient_core::GuardFailurePolicy) decides: process
//! anyway (default) or refuse with 503.
//!
//! # Example
//!
//! ```no_run
//! use suki_ambient_core::{NoopHandler, Verifier, WebhookEndpoint};
//! use suki_ambient_redis::RedisReplayGuard;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let guard = RedisReplayGuard::new("redis://127.0.0.1:6379/")?.prefix("myapp:suki:");
//! let verifier = Verifier::builder().secret("secret").build()?;
//! let endpoint = WebhookEndpoint::new(verifier, NoopHandler).replay_guard(guard);
//! # let _ = endpoint;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use suki_ambient_core::{Freshness, ReplayError, ReplayGuard, ReplayKey};

const INFLIGHT: &str = "inflight";
const DONE: &str = "done";

/// Deletes the key only while it holds an in-flight claim.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A [`ReplayGuard`] on Redis. Cheap to clone (the connection manager is shared).
#[derive(Clone)]
pub struct RedisReplayGuard {
    connection: ConnectionManager,
    prefix: String,
    claim_ttl: Duration,
    release: redis::Script,
}

impl fmt::Debug for RedisReplayGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: it is not kept.
        f.debug_struct("RedisReplayGuard")
            .field("prefix", &self.prefix)
            .field("claim_ttl", &self.claim_ttl)
            .finish_non_exhaustive()
    }
}

impl RedisReplayGuard {
    /// A guard on the Redis at `url` (`redis://[:password@]host:port/db`). Connects lazily, on
    /// first use; reconnects after failures.
    ///
    /// # Errors
    /// [`ReplayError::Unavailable`] when the URL is invalid (the reason never includes it).
    pub fn new(url: &str) -> Result<Self, ReplayError> {
        let client = redis::Client::open(url).map_err(|_| unavailable("invalid Redis URL"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = client
            .get_connection_manager_lazy(config)
            .map_err(|e| unavailable_from(&e))?;
        Ok(Self {
            connection,
            prefix: "suki:replay:".to_owned(),
            claim_ttl: Duration::from_secs(5 * 60),
            release: redis::Script::new(RELEASE_SCRIPT),
        })
    }

    /// The key prefix (default `suki:replay:`).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long an in-flight claim lives if its instance dies before committing or releasing
    /// (default 5 minutes, never longer than the TTL of processed keys).
    #[must_use]
    pub fn claim_ttl(mut self, ttl: Duration) -> Self {
        self.claim_ttl = ttl;
        self
    }

    fn key(&self, key: &ReplayKey) -> String {
        format!("{}{}", self.prefix, key.to_hex())
    }
}

fn millis(d: Duration) -> u64 {
    suki_ambient_core::time::millis(d).max(1)
}

fn unavailable(reason: &str) -> ReplayError {
    ReplayError::Unavailable {
        reason: reason.to_owned(),
    }
}

/// Redis errors can quote the URL (and so a password): only the kind is kept.
fn unavailable_from(err: &redis::RedisError) -> ReplayError {
    let reason = if err.is_connection_refusal() {
        "Redis refused the connection"
    } else if err.is_timeout() {
        "Redis timed out"
    } else if err.is_io_error() || err.is_connection_dropped() {
        "Redis connection lost"
    } else {
        "Redis command failed"
    };
    unavailable(reason)
}

#[async_trait]
impl ReplayGuard for RedisReplayGuard {
    async fn check_and_mark(
        &self,
        key: ReplayKey,
        ttl: Duration,
    ) -> Result<Freshness, ReplayError> {
        let name = self.key(&key);
        let mut conn = self.connection.clone();
        let claim_ms = millis(self.claim_ttl.min(ttl));
        // Two rounds: a key may expire between a failed SET NX and the GET.
        for _ in 0..2 {
            let claimed: Option<String> = redis::cmd("SET")
                .arg(&name)
                .arg(INFLIGHT)
                .arg("NX")
                .arg("PX")
                .arg(claim_ms)
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable_from(&e))?;
            if claimed.is_some() {
                return Ok(Freshness::Fresh);
            }
            let state: Option<String> = conn.get(&name).await.map_err(|e| unavailable_from(&e))?;
            match state.as_deref() {
                Some(DONE) => return Ok(Freshness::Duplicate),
                Some(_) => return Ok(Freshness::InFlight),
                None => continue,
            }
        }
        Ok(Freshness::InFlight)
    }

    async fn commit(&self, key: ReplayKey, ttl: Duration) -> Result<(), ReplayError> {
        let mut conn = self.connection.clone();
        let () = conn
            .pset_ex(self.key(&key), DONE, millis(ttl))
            .await
            .map_err(|e| unavailable_from(&e))?;
        Ok(())
    }

    async fn release(&self, key: ReplayKey) -> Result<(), ReplayError> {
        let mut conn = self.connection.clone();
        let _: i64 = self
            .release
            .key(self.key(&key))
            .arg(INFLIGHT)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable_from(&e))?;
        Ok(())
    }
}
