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

/// An axum receiver on loopback serving `WebhookEndpoint::inbox` into `inbox`, set as the
/// sandbox's webhook URL; abort the task to stop it.
pub(crate) async fn serve_inbox(
    sandbox: &suki_ambient_sandbox::SandboxHandle,
    inbox: &suki_ambient_inbox::Inbox,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let verifier = sandbox.verifier_builder().build().expect("verifier");
    let endpoint = suki_ambient_core::WebhookEndpoint::inbox(verifier, inbox.clone());
    let app = axum::Router::new().nest("/webhooks/suki", suki_ambient_axum::router(endpoint));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/webhooks/suki",
        listener.local_addr().expect("addr")
    );
    sandbox.set_webhook_url(Some(url));
    tokio::spawn(async move { axum::serve(listener, app).await })
}
