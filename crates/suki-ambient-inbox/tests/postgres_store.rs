//! The store conformance suite on a real Postgres (started by `bash .ci/run`).
#![cfg(feature = "postgres")]

mod common;

use std::sync::Arc;

use suki_ambient_inbox::{PostgresStore, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
async fn postgres_store_passes_the_conformance_suite() {
    conformance::run(|| async {
        PostgresStore::connect(&common::fresh_postgres().await)
            .await
            .expect("connect")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
async fn many_claimers_on_postgres_never_overlap() {
    let url = common::fresh_postgres().await;
    let store = Arc::new(PostgresStore::connect(&url).await.expect("connect"));
    conformance::concurrent_claims_never_overlap(store, 16, 1_000).await;
}

#[tokio::test]
#[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
async fn connecting_twice_migrates_once() {
    let url = common::fresh_postgres().await;
    let a = PostgresStore::connect(&url).await.expect("first");
    let b = PostgresStore::connect(&url).await.expect("second");
    suki_ambient_inbox::store::DeliveryQueue::insert(&a, &[conformance::delivery("x")])
        .await
        .expect("insert");
    assert_eq!(
        suki_ambient_inbox::store::ReadModel::list(&b, None, 5)
            .await
            .expect("list")
            .len(),
        1
    );
}
