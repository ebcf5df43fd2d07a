//! Running the inbox's migrations on the built-in stores: in the inbox's own history table
//! (`suki_inbox_migrations`), under a lock, refusing a changed or newer schema, adopting an inbox
//! that an earlier release recorded in `_sqlx_migrations`. The migrations themselves (their SQL,
//! for your own tools) are in this module's parent.

use crate::MigrateError;
use crate::StoreError;
use crate::migrate::{HISTORY_TABLE, Migration};

/// How an inbox made by a release that recorded its versions in `_sqlx_migrations` is
/// recognised: the object each of those versions created (they ran one transaction each, so a
/// database holds a prefix of them).
const LEGACY: [(i64, &str); 4] = [
    (1, "suki_inbox_deliveries"),
    (2, "suki_inbox_deliveries_unfinished"),
    (3, "suki_inbox_expectations"),
    (4, "suki_inbox_probe"),
];

/// What the history says: (version, checksum) in order.
type Applied = Vec<(i64, String)>;

/// Compares the history with `known`; the migrations still to apply.
fn pending(applied: &Applied, known: &[Migration]) -> Result<Vec<Migration>, StoreError> {
    let newest = known.last().map_or(0, |m| m.version);
    for (version, checksum) in applied {
        match known.iter().find(|m| m.version == *version) {
            Some(m) if m.checksum() == *checksum => {}
            Some(_) => return Err(MigrateError::Changed { version: *version }.into()),
            None => {
                return Err(MigrateError::TooNew {
                    found: *version,
                    known: newest,
                }
                .into());
            }
        }
    }
    Ok(known
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
        .copied()
        .collect())
}

/// The versions an inbox of an earlier release holds, judged by its objects.
fn legacy_prefix(exists: &[bool]) -> i64 {
    LEGACY
        .iter()
        .zip(exists)
        .take_while(|(_, exists)| **exists)
        .map(|((version, _), _)| *version)
        .last()
        .unwrap_or(0)
}

fn failed(version: i64) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| {
        MigrateError::Failed {
            version,
            source: crate::error::database_error(e),
        }
        .into()
    }
}

fn history_ddl(blob: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (\
           version      BIGINT PRIMARY KEY, \
           description  TEXT   NOT NULL, \
           checksum     TEXT   NOT NULL, \
           installed_at BIGINT NOT NULL, \
           adopted      {blob} NOT NULL)"
    )
}

fn now_millis() -> i64 {
    i64::try_from(suki_ambient_core::Clock::now(&suki_ambient_core::SystemClock).0)
        .unwrap_or(i64::MAX)
}

const INSERT_HISTORY: &str = "INSERT INTO suki_inbox_migrations \
     (version, description, checksum, installed_at, adopted) VALUES ($1, $2, $3, $4, $5)";

/// The run shared by both databases, on a transaction's connection that holds the
/// migration lock: the history table, the history read and compared, an earlier release's
/// inbox adopted (`exists` answers whether a legacy object is there, given its name as
/// `legacy_name` spells it), the missing migrations applied and recorded.
async fn run_in<DB>(
    conn: &mut DB::Connection,
    known: &[Migration],
    exists: &str,
    legacy_name: impl Fn(&str) -> String + Send,
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (i64, String): sqlx::FromRow<'r, DB::Row>,
    for<'r> (bool,): sqlx::FromRow<'r, DB::Row>,
{
    sqlx::query(&history_ddl("BOOLEAN"))
        .execute(&mut *conn)
        .await
        .map_err(failed(0))?;
    let mut applied: Applied =
        sqlx::query_as("SELECT version, checksum FROM suki_inbox_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .map_err(failed(0))?;
    let mut adopt = Vec::new();
    if applied.is_empty() {
        let mut found = Vec::new();
        for (_, name) in LEGACY {
            let (there,): (bool,) = sqlx::query_as(exists)
                .bind(legacy_name(name))
                .fetch_one(&mut *conn)
                .await
                .map_err(failed(0))?;
            found.push(there);
        }
        let prefix = legacy_prefix(&found);
        adopt = known
            .iter()
            .filter(|m| m.version <= prefix)
            .copied()
            .collect();
        applied.extend(adopt.iter().map(|m| (m.version, m.checksum())));
    }
    let steps: Vec<(Migration, bool)> = adopt
        .into_iter()
        .map(|m| (m, true))
        .chain(pending(&applied, known)?.into_iter().map(|m| (m, false)))
        .collect();
    for (m, adopted) in steps {
        if !adopted {
            // A query without arguments runs every statement of the file (as sqlx's own
            // migrator does).
            sqlx::Executor::execute(&mut *conn, m.sql)
                .await
                .map_err(failed(m.version))?;
        }
        sqlx::query(INSERT_HISTORY)
            .bind(m.version)
            .bind(m.description)
            .bind(m.checksum())
            .bind(now_millis())
            .bind(adopted)
            .execute(&mut *conn)
            .await
            .map_err(failed(m.version))?;
    }
    Ok(())
}

#[cfg(feature = "sqlite")]
pub(crate) async fn sqlite(pool: &sqlx::SqlitePool) -> Result<(), StoreError> {
    // The write lock at once: a second process starting now waits, then finds it done.
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(failed(0))?;
    run_in::<sqlx::Sqlite>(
        &mut tx,
        crate::migrate::migrations(crate::migrate::Dialect::Sqlite),
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = $1 AND type IN ('table', 'index')",
        str::to_owned,
    )
    .await?;
    tx.commit().await.map_err(failed(0))?;
    Ok(())
}

/// Migrates the inbox's tables in `schema` (`None`: the connection's current schema),
/// creating the schema if missing.
#[cfg(feature = "postgres")]
pub(crate) async fn postgres(pool: &sqlx::PgPool, schema: Option<&str>) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(failed(0))?;
    let schema: String = match schema {
        Some(schema) => schema.to_owned(),
        None => sqlx::query_scalar::<_, Option<String>>("SELECT current_schema()")
            .fetch_one(&mut *tx)
            .await
            .map_err(failed(0))?
            .ok_or(StoreError::InvalidSchema {
                schema: String::new(),
            })?,
    };
    if !crate::migrate::valid_schema(&schema) {
        return Err(StoreError::InvalidSchema { schema });
    }
    // One migrator per schema at a time, fleet-wide; released when this transaction ends.
    sqlx::query("SELECT pg_advisory_xact_lock(1937075561, hashtext($1))")
        .bind(&schema)
        .execute(&mut *tx)
        .await
        .map_err(failed(0))?;
    for statement in [
        format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""),
        // Every unqualified name below (tables, indexes, functions, triggers) is created in
        // the inbox's schema; the functions keep that path (migration 0005) whatever the
        // caller's connection uses.
        format!("SET LOCAL search_path TO \"{schema}\""),
    ] {
        sqlx::query(&statement)
            .execute(&mut *tx)
            .await
            .map_err(failed(0))?;
    }
    run_in::<sqlx::Postgres>(
        &mut tx,
        crate::migrate::migrations(crate::migrate::Dialect::Postgres),
        "SELECT to_regclass($1) IS NOT NULL",
        |name| format!("\"{schema}\".{name}"),
    )
    .await?;
    tx.commit().await.map_err(failed(0))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_earlier_release_is_recognised_by_the_prefix_of_its_objects() {
        assert_eq!(legacy_prefix(&[false, false, false, false]), 0);
        assert_eq!(legacy_prefix(&[true, false, false, false]), 1);
        assert_eq!(legacy_prefix(&[true, true, true, false]), 3);
        assert_eq!(legacy_prefix(&[true, true, true, true]), 4);
        // A gap is not a prefix: what follows it is applied again, and fails loudly if the
        // objects are there.
        assert_eq!(legacy_prefix(&[true, false, true, true]), 1);
    }

    #[test]
    fn the_history_is_compared_with_this_build() {
        let known = crate::migrate::migrations(crate::migrate::Dialect::Sqlite);
        let all: Applied = known.iter().map(|m| (m.version, m.checksum())).collect();
        assert!(pending(&all, known).expect("current").is_empty());
        assert_eq!(
            pending(&all[..2].to_vec(), known).expect("older").len(),
            known.len() - 2
        );
        let mut changed = all.clone();
        changed[1].1 = "0".repeat(64);
        assert!(matches!(
            pending(&changed, known),
            Err(StoreError::Migrate(MigrateError::Changed { version: 2 }))
        ));
        let mut newer = all;
        newer.push((99, "x".into()));
        assert!(matches!(
            pending(&newer, known),
            Err(StoreError::Migrate(MigrateError::TooNew { found: 99, .. }))
        ));
    }
}
