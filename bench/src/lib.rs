//! What the load benchmarks share: a sandbox of completed sessions in a child process, and the
//! CPU time of this process.

use std::time::Duration;

use suki_ambient::{Bytes, EncounterId, SessionId, SignedHeaders, UnixMillis, WebhookSecret};

/// Child side: starts a sandbox with `n` completed sessions (their webhooks never sent) and
/// prints its base URL, a token, one `<session id> <encounter id>` line per session, then
/// `ready`. Returns the running sandbox.
pub async fn serve_completed_sessions(n: usize) -> suki_ambient::sandbox::SandboxHandle {
    let sandbox = suki_ambient::sandbox::Sandbox::builder()
        .start()
        .await
        .expect("sandbox");
    println!("{}", sandbox.base_url());
    println!("{}", sandbox.issue_token(None));
    for _ in 0..n {
        let s = sandbox.create_session(None);
        sandbox.complete_silently(&s.session_id).expect("complete");
        println!("{} {}", s.session_id, s.encounter_id);
    }
    println!("ready");
    sandbox
}

/// What the parent reads from [`serve_completed_sessions`]: base URL, token, sessions.
pub struct Served {
    /// The sandbox's base URL.
    pub base: String,
    /// A token it issued.
    pub token: String,
    /// The completed sessions.
    pub sessions: Vec<(SessionId, EncounterId)>,
}

/// Parent side: reads what [`serve_completed_sessions`] printed, up to `ready`.
pub fn read_served(lines: &mut impl Iterator<Item = String>) -> Served {
    let base = lines.next().expect("base URL");
    let token = lines.next().expect("token");
    let mut sessions = Vec::new();
    for line in lines.by_ref() {
        if line == "ready" {
            break;
        }
        let (s, e) = line.split_once(' ').expect("ids");
        sessions.push((SessionId::from(s), EncounterId::from(e)));
    }
    Served {
        base,
        token,
        sessions,
    }
}

/// User + system CPU time of this process.
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// The median of `values` (the upper one of an even count).
pub fn median(values: Vec<f64>) -> f64 {
    spread(values).0
}

/// The median, the smallest and the largest of `values`.
pub fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

/// The `p` quantile (0–1) of `sorted` latencies (zero when empty).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// A completed event for `session`, signed now with `secret`: its headers and body.
pub fn signed(secret: &str, session: &str) -> (suki_ambient::HeaderMap, Bytes) {
    let body = suki_ambient::testing::completed(session, "bench-encounter").to_vec();
    let headers =
        SignedHeaders::new(&WebhookSecret::from(secret), UnixMillis::now(), &body).to_header_map();
    (headers, Bytes::from(body))
}

/// A new database on the Postgres server at `admin`; its URL.
pub async fn fresh_database(admin: &str) -> String {
    use suki_ambient::inbox::sqlx::{self, Connection};
    let name = format!("suki_bench_{:016x}", fastrand::u64(..));
    let mut conn = sqlx::PgConnection::connect(admin).await.expect("connect");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
    format!("{base}/{name}")
}

/// A FHIR server stand-in answering after a fixed latency (the write-back benchmarks).
pub mod ehr_standin;
