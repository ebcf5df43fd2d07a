//! The built-in SQL store: one generic [`SqlStore`] over a sqlx pool that runs the same SQL on
//! SQLite and Postgres, with what differs in [`SqlDialect`] (`dialect.rs`). The statements are
//! grouped by the store trait they serve: the delivery queue (`queue.rs`), the expectations
//! (`expectations.rs`), the read model (`read.rs`) and the operators' actions
//! (`operations.rs`); the rows they return are in `rows.rs`. Every statement names its tables
//! through [`Tables`], bound once when the store is built (the schema, on Postgres): no SQL text
//! is rewritten at run time.

mod dialect;
mod expectations;
mod operations;
mod queue;
mod read;
mod rows;
mod transaction;

use std::sync::Arc;

#[cfg(feature = "postgres")]
pub use dialect::PostgresDialect;
pub use dialect::SqlDialect;
#[cfg(feature = "sqlite")]
pub use dialect::SqliteDialect;
pub(crate) use rows::stored;

use crate::StoreError;

/// The inbox's tables as the statements name them: `suki_inbox_…`, or `"schema".suki_inbox_…`
/// when the tables are in a schema other than the connection's own (Postgres).
#[derive(Debug)]
pub struct Tables {
    pub(crate) deliveries: String,
    pub(crate) history: String,
    pub(crate) expectations: String,
    pub(crate) pauses: String,
    pub(crate) audit: String,
    pub(crate) audit_purges: String,
    pub(crate) audit_floors: String,
    pub(crate) counts: String,
    pub(crate) probe: String,
    pub(crate) leases: String,
    pub(crate) destinations: String,
}

impl Tables {
    /// The tables in `schema` (already validated: [`crate::migrate::valid_schema`]), or in the
    /// connection's own.
    pub(crate) fn new(schema: Option<&str>) -> Self {
        let name = |table: &str| match schema {
            Some(schema) => format!("\"{schema}\".suki_inbox_{table}"),
            None => format!("suki_inbox_{table}"),
        };
        Self {
            deliveries: name("deliveries"),
            history: name("history"),
            expectations: name("expectations"),
            pauses: name("pauses"),
            audit: name("audit"),
            audit_purges: name("audit_purges"),
            audit_floors: name("audit_floors"),
            counts: name("counts"),
            probe: name("probe"),
            leases: name("leases"),
            destinations: name("destinations"),
        }
    }
}

/// Every statement of one store, built once with its tables and dialect.
pub(crate) struct Statements {
    pub(crate) tables: Tables,
    pub(crate) queue: queue::QueueSql,
    pub(crate) expect: expectations::ExpectSql,
    pub(crate) read: read::ReadSql,
    pub(crate) ops: operations::OpsSql,
}

impl Statements {
    pub(crate) fn new<D: SqlDialect>(schema: Option<&str>) -> Self {
        let tables = Tables::new(schema);
        Self {
            queue: queue::QueueSql::new::<D>(&tables),
            expect: expectations::ExpectSql::new::<D>(&tables),
            read: read::ReadSql::new(&tables),
            ops: operations::OpsSql::new::<D>(&tables),
            tables,
        }
    }
}

/// The built-in SQL store over a sqlx pool: [`SqliteStore`](crate::SqliteStore) and
/// [`PostgresStore`](crate::PostgresStore) are this with their [`SqlDialect`].
pub struct SqlStore<D: SqlDialect> {
    pub(crate) pool: sqlx::Pool<D::Db>,
    /// The Postgres schema the tables are in, when not the connection's own.
    pub(crate) schema: Option<Arc<str>>,
    /// The statements, with the tables in their schema.
    pub(crate) sql: Arc<Statements>,
    /// The SQLite database file and its identity when opened (`None` in memory or on
    /// Postgres), so that the health probe notices a file deleted or replaced under the running
    /// process, which SQLite itself does not (it keeps writing to the unlinked file).
    pub(crate) file: Option<(std::path::PathBuf, FileId)>,
    pub(crate) dialect: std::marker::PhantomData<D>,
}

impl<D: SqlDialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            schema: self.schema.clone(),
            sql: Arc::clone(&self.sql),
            file: self.file.clone(),
            dialect: std::marker::PhantomData,
        }
    }
}

impl<D: SqlDialect> std::fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("dialect", &D::NAME)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl<D: SqlDialect> SqlStore<D> {
    pub(crate) fn new(pool: sqlx::Pool<D::Db>, schema: Option<&str>) -> Self {
        Self {
            pool,
            schema: schema.map(Arc::from),
            sql: Arc::new(Statements::new::<D>(schema)),
            file: None,
            dialect: std::marker::PhantomData,
        }
    }

    /// The connection pool (e.g. to read the tables from your own code).
    pub fn pool(&self) -> &sqlx::Pool<D::Db> {
        &self.pool
    }

    /// [`StoreError::FileGone`] when the SQLite database file is no longer the one opened.
    fn check_file(&self) -> Result<(), StoreError> {
        match &self.file {
            Some((path, id)) if FileId::of(path).as_ref() != Some(id) => Err(StoreError::FileGone),
            _ => Ok(()),
        }
    }
}

/// `?` for sqlx results: the error becomes an opaque [`StoreError::Database`].
pub(crate) trait Db<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> Db<T> for Result<T, sqlx::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Database(crate::error::database_error(e)))
    }
}

/// A statement's parameter, for statements built at run time.
#[derive(Clone, Copy)]
enum Value<'a> {
    Int(i64),
    Text(&'a str),
}

/// The parameters of a statement built at run time, in order.
#[derive(Default)]
struct Params<'a> {
    values: Vec<Value<'a>>,
}

impl<'a> Params<'a> {
    /// Appends `value`'s placeholder to `sql`.
    fn push(&mut self, sql: &mut String, value: Value<'a>, placeholder: fn(&mut String, usize)) {
        self.values.push(value);
        placeholder(sql, self.values.len());
    }

    fn bind_scalar<'q, DB, O>(
        &self,
        mut query: sqlx::query::QueryScalar<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>,
    ) -> sqlx::query::QueryScalar<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>
    where
        'a: 'q,
        DB: sqlx::Database,
        i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        &'a str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        for value in &self.values {
            query = match *value {
                Value::Int(v) => query.bind(v),
                Value::Text(v) => query.bind(v),
            };
        }
        query
    }
}

/// An implementation of one of the store's traits for the [`SqlStore`] of each built-in
/// dialect (`D` in the body), written once: the shared SQL compiles against each concrete sqlx
/// database, so it needs no bounds on a generic one.
macro_rules! sql_impl {
    ($trait:path { $($body:tt)* }) => {
        #[cfg(feature = "sqlite")]
        const _: () = {
            use $crate::sql::SqliteDialect as D;
            #[async_trait::async_trait]
            impl $trait for $crate::sql::SqlStore<D> {
                $($body)*
            }
        };
        #[cfg(feature = "postgres")]
        const _: () = {
            use $crate::sql::PostgresDialect as D;
            #[async_trait::async_trait]
            impl $trait for $crate::sql::SqlStore<D> {
                $($body)*
            }
        };
    };
}
use sql_impl;

sql_impl! {
    crate::seam::Store {
        async fn migrate(&self) -> Result<(), StoreError> {
            D::migrate(&self.pool, self.schema.as_deref()).await
        }

        fn transactions(&self) -> Option<&dyn crate::seam::Transactions> {
            Some(self)
        }
    }
}

/// What identifies a file (device and inode on Unix; elsewhere only that it exists).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileId(u64, u64);

impl FileId {
    pub(crate) fn of(path: &std::path::Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            Some(Self(meta.dev(), meta.ino()))
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            Some(Self(0, 0))
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    fn dollar(sql: &mut String, n: usize) {
        use std::fmt::Write as _;
        let _ = write!(sql, "${n}");
    }

    fn anonymous(sql: &mut String, _n: usize) {
        sql.push('?');
    }

    /// Each parameter once, in order: numbered 1..=N for Postgres, N anonymous ones for SQLite.
    #[test]
    fn multi_row_statements_number_their_parameters_once_in_order() {
        let sql = Statements::new::<SqliteDialect>(None);
        let (queue, expect) = (&sql.queue, &sql.expect);
        for (sql, per_row) in [
            (queue.insert_many(3, dollar), 11),
            (expect.finish_many(3, dollar), 6),
        ] {
            let mut at = 0;
            for n in 1..=3 * per_row {
                let p = format!("${n}");
                let found = sql[at..].find(&p).unwrap_or_else(|| panic!("{p} in {sql}"));
                at += found + p.len();
            }
            assert!(!sql.contains(&format!("${}", 3 * per_row + 1)), "{sql}");
        }
        for (sql, per_row) in [
            (queue.insert_many(3, anonymous), 11),
            (expect.finish_many(3, anonymous), 6),
        ] {
            assert_eq!(sql.matches('?').count(), 3 * per_row, "{sql}");
            assert!(!sql.contains('$'), "{sql}");
        }
    }

    /// With a schema, every table a statement names is in it.
    #[test]
    fn statements_name_their_tables_in_the_schema() {
        let sql = Statements::new::<SqliteDialect>(Some("tenant"));
        for statement in [
            &sql.queue.complete,
            &sql.queue.insert_many(2, dollar),
            &sql.queue.purge_history,
            &sql.expect.finish_many(2, dollar),
            &sql.read.list_retrying,
            &sql.read.audit_anchor,
            &SqliteDialect::claim(&sql.tables),
        ] {
            let bare = statement.matches("suki_inbox_").count();
            let qualified = statement.matches("\"tenant\".suki_inbox_").count();
            assert!(bare > 0 && bare == qualified, "{statement}");
        }
    }
}
