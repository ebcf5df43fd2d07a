//! The store conformance suite on SQLite (a file per check, as in production).
#![cfg(feature = "sqlite")]

use std::sync::atomic::{AtomicUsize, Ordering};

use suki_ambient_inbox::{SqliteStore, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let n = AtomicUsize::new(0);
    conformance::run(|| {
        let path = dir
            .path()
            .join(format!("inbox-{}.db", n.fetch_add(1, Ordering::Relaxed)));
        async move {
            SqliteStore::connect(&format!("sqlite://{}", path.display()))
                .await
                .expect("open sqlite")
        }
    })
    .await;
}

#[tokio::test]
async fn in_memory_sqlite_works_too() {
    conformance::run(|| async {
        SqliteStore::connect("sqlite::memory:")
            .await
            .expect("open sqlite")
    })
    .await;
}

#[tokio::test]
async fn reopening_keeps_rows_and_does_not_migrate_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("inbox.db").display());
    let store = SqliteStore::connect(&url).await.expect("open");
    suki_ambient_inbox::store::DeliveryQueue::insert(&store, &[conformance::delivery("kept")])
        .await
        .expect("insert");
    drop(store);
    let store = SqliteStore::connect(&url).await.expect("reopen");
    let rows = suki_ambient_inbox::store::ReadModel::list(&store, None, 10)
        .await
        .expect("list");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].dedup_key, "kept");
}
