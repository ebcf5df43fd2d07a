//! An insider who owns the database (the application's own role: on Postgres it owns the
//! tables and can disable their triggers) against the keyed audit chain. Each of the four
//! attacks the issue names is caught on SQLite and on Postgres:
//!
//! 1. rewriting an entry and recomputing the chain (with the public plain hash: the MAC's key is
//!    not in the database);
//! 2. deleting the newest entries (found against a checkpoint kept elsewhere);
//! 3. blanking every hash (so that every entry reads as "written before the chain");
//! 4. recording a purge to delete young entries (refused by the database itself).

#![cfg(feature = "sqlite")]

mod common;

use suki_ambient_inbox::sqlx::{self, Connection as _};
use suki_ambient_inbox::{Action, Actor, Inbox, Keys, audit::audit_hash, ops::AuditEntry};

fn keys() -> Keys {
    Keys::new([suki_ambient_inbox::BodyKey::new([9; 32])]).expect("keys")
}

/// How the insider runs SQL on each database.
enum Db {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Db {
    async fn exec(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(c) => sqlx::raw_sql(sql).execute(c).await.map(drop),
            Self::Postgres(c) => sqlx::raw_sql(sql).execute(c).await.map(drop),
        }
    }

    /// Turns the triggers off, as the tables' owner can.
    async fn disarm(&mut self) {
        let sql = match self {
            Self::Sqlite(_) => {
                "DROP TRIGGER suki_inbox_audit_append_only; \
                 DROP TRIGGER suki_inbox_audit_no_delete;"
            }
            Self::Postgres(_) => "ALTER TABLE suki_inbox_audit DISABLE TRIGGER USER;",
        };
        self.exec(sql).await.expect("disarm");
    }
}

/// Entries, a view each, through the inbox (keyed under the key derived from its body key).
async fn entries(inbox: &Inbox, n: usize) {
    for i in 0..n {
        inbox
            .act(
                &Actor::new("alice", "test"),
                Action::ViewTimeline {
                    target: format!("s-{i}"),
                },
            )
            .await
            .expect("view");
    }
}

async fn attacks(url: &str, mut db: Db) {
    let inbox = Inbox::connect(url).await.expect("inbox").with_keys(keys());
    entries(&inbox, 6).await;
    let clean = inbox.verify_audit().await.expect("verify");
    assert_eq!((clean.entries, clean.keyed, clean.broken), (6, 6, None));
    let checkpoint = inbox
        .audit_checkpoint()
        .await
        .expect("checkpoint")
        .expect("one");

    // 4. A purge of young entries, recorded by hand: the database refuses it, triggers on.
    let refused = db
        .exec(
            "INSERT INTO suki_inbox_audit_purges (at, before_at, through_id, anchor) \
             VALUES (0, 9999999999999, 6, '')",
        )
        .await;
    assert!(
        refused.is_err(),
        "a purge within the floor is refused by the database"
    );
    assert!(
        db.exec("DELETE FROM suki_inbox_audit WHERE id = 1")
            .await
            .is_err()
    );

    db.disarm().await;

    // 1. Rewrite an actor, then recompute the hashes from it on with the plain hash (the MAC's
    // key is not in the database): the entry is named.
    let original: Vec<AuditEntry> = inbox
        .audit(suki_ambient_core::UnixMillis(0), 100)
        .await
        .expect("audit")
        .into_iter()
        .rev()
        .collect();
    db.exec("UPDATE suki_inbox_audit SET actor = 'mallory' WHERE id = 3")
        .await
        .expect("rewrite");
    let rechain = |from: usize, mut prev: String, entries: &[AuditEntry]| {
        let mut sql = String::new();
        for entry in &entries[from..] {
            let mut entry = entry.clone();
            if entry.id == 3 {
                entry.actor = "mallory".into();
            }
            let hash = audit_hash(&prev, &entry);
            sql.push_str(&format!(
                "UPDATE suki_inbox_audit SET prev_hash = '{prev}', hash = '{hash}' WHERE id = {};",
                entry.id
            ));
            prev = hash;
        }
        sql
    };
    db.exec(&rechain(2, original[1].hash.clone(), &original))
        .await
        .expect("re-chain from the rewritten entry");
    let broken = inbox
        .verify_audit()
        .await
        .expect("verify")
        .broken
        .expect("found");
    assert_eq!(broken.id, 3, "{}", broken.reason);
    assert!(
        broken
            .reason
            .contains("plain hash after the chain was keyed"),
        "{}",
        broken.reason
    );
    // Re-chained from the start with plain hashes: no MAC is left, which is not intact.
    db.exec(&rechain(0, String::new(), &original))
        .await
        .expect("re-chain everything");
    let broken = inbox
        .verify_audit()
        .await
        .expect("verify")
        .broken
        .expect("found");
    assert!(
        broken.reason.contains("no entry carries a MAC"),
        "{}",
        broken.reason
    );
    // Rewritten with the MACs left as they were: the MAC no longer matches.
    let mut sql = String::new();
    for entry in &original {
        sql.push_str(&format!(
            "UPDATE suki_inbox_audit SET prev_hash = '{}', hash = '{}' WHERE id = {};",
            entry.prev_hash, entry.hash, entry.id
        ));
    }
    db.exec(&sql).await.expect("MACs back");
    let broken = inbox
        .verify_audit()
        .await
        .expect("verify")
        .broken
        .expect("found");
    assert_eq!(broken.id, 3);
    assert!(
        broken.reason.contains("do not match its MAC"),
        "{}",
        broken.reason
    );

    // 3. Blank every hash: every entry reads as written before the chain, which a checker
    // holding the key does not take for intact.
    db.exec("UPDATE suki_inbox_audit SET prev_hash = '', hash = ''")
        .await
        .expect("blank");
    let report = inbox.verify_audit().await.expect("verify");
    assert_eq!(report.unchained, 6);
    assert!(report.broken.is_some(), "a blanked log is not intact");

    // 2. Delete the newest entries: the checkpoint kept elsewhere finds it.
    db.exec("DELETE FROM suki_inbox_audit WHERE id >= 5")
        .await
        .expect("truncate");
    let report = inbox.verify_audit_since(&checkpoint).await.expect("verify");
    let broken = report.broken.expect("the checkpoint's entry is gone");
    assert!(
        broken.reason.contains("gone") || broken.reason.contains("MAC"),
        "{}",
        broken.reason
    );
}

/// Deleting the newest entries of an intact keyed log: only the checkpoint can tell.
async fn truncation(url: &str, mut db: Db) {
    let inbox = Inbox::connect(url).await.expect("inbox").with_keys(keys());
    entries(&inbox, 5).await;
    let checkpoint = inbox
        .audit_checkpoint()
        .await
        .expect("checkpoint")
        .expect("one");
    db.disarm().await;
    db.exec("DELETE FROM suki_inbox_audit WHERE id >= 4")
        .await
        .expect("truncate");
    assert_eq!(
        inbox.verify_audit().await.expect("verify").broken,
        None,
        "a cut end leaves no break in the chain itself"
    );
    let report = inbox.verify_audit_since(&checkpoint).await.expect("verify");
    let broken = report.broken.expect("found against the checkpoint");
    assert_eq!(broken.id, checkpoint.id);
    assert!(broken.reason.contains("gone"), "{}", broken.reason);
    // And an entry changed since the checkpoint (with its MAC put back as it was) is named.
    let changed = suki_ambient_inbox::audit::AuditCheckpoint {
        id: 3,
        hash: "hmac-sha256:0:0".into(),
    };
    let report = inbox.verify_audit_since(&changed).await.expect("verify");
    assert_eq!(report.broken.expect("differs").id, 3);
}

#[tokio::test]
async fn a_database_owner_cannot_rewrite_blank_cut_or_purge_the_sqlite_audit_log_unseen() {
    let dir = tempfile::tempdir().expect("dir");
    let url = common::sqlite_url(dir.path(), "insider.db");
    Inbox::connect(&url).await.expect("create");
    let conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    attacks(&url, Db::Sqlite(conn)).await;
    let url = common::sqlite_url(dir.path(), "cut.db");
    Inbox::connect(&url).await.expect("create");
    let conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    truncation(&url, Db::Sqlite(conn)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
#[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
async fn a_database_owner_cannot_rewrite_blank_cut_or_purge_the_postgres_audit_log_unseen() {
    for run in 0..2 {
        let url = common::fresh_postgres().await;
        Inbox::connect(&url).await.expect("create");
        let conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        if run == 0 {
            attacks(&url, Db::Postgres(conn)).await;
        } else {
            truncation(&url, Db::Postgres(conn)).await;
        }
    }
}
