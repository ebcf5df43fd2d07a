//! Helpers for the inbox's tests.
#![allow(dead_code, reason = "each test file uses some of them")]

use sqlx::Connection;

/// The Postgres server `bash .ci/run` starts (`SUKI_POSTGRES_URL`); the tests that need it are
/// ignored in a plain `cargo test` and fail here when it is missing.
pub(crate) fn postgres_url() -> String {
    std::env::var("SUKI_POSTGRES_URL")
        .expect("SUKI_POSTGRES_URL must name a Postgres server (bash .ci/run starts one)")
}

/// A new, empty database on that server; its URL.
pub(crate) async fn fresh_postgres() -> String {
    let admin = postgres_url();
    let name = format!("suki_test_{:016x}", fastrand::u64(..));
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to Postgres");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

/// A SQLite URL in `dir`.
pub(crate) fn sqlite_url(dir: &std::path::Path, name: &str) -> String {
    format!("sqlite://{}", dir.join(name).display())
}
