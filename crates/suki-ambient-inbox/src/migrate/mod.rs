//! The inbox's schema migrations, recorded in **its own history table**
//! (`suki_inbox_migrations`), never in sqlx's `_sqlx_migrations`: the inbox can live in the
//! database your application already owns, next to your own sqlx (or other) migrations, in
//! either order.
//!
//! The SQL is public too ([`migrations`]; the files ship in the crate's `migrations/`
//! directory; `suki-ambient inbox migrations --print [--postgres]` prints them in order), so
//! that a team that applies every schema change with its own tool can apply these the same way
//! and build the inbox with `migrate(false)`.
//!
//! How a run works: one transaction (SQLite `BEGIN IMMEDIATE`; Postgres under a transaction
//! advisory lock, so concurrent starts of a fleet migrate once), the history table created if
//! missing, each recorded version's checksum compared with this build's (a changed migration is
//! an error, not a silent drift), a version newer than this build refused (an older SDK must not
//! run on a newer schema), and the missing versions applied in order and recorded.
//!
//! An inbox created by an earlier release (which recorded its versions in `_sqlx_migrations`)
//! is recognised by its tables and adopted: its versions are recorded in the inbox's own table,
//! and `_sqlx_migrations` is left untouched (see docs/inbox.md to remove the inbox's old rows
//! from it).

/// Running them on the built-in stores (their history table, the lock, adopting an earlier
/// release's inbox).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod run;

use sha2::{Digest as _, Sha256};

/// The SQL dialect of a set of migrations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// SQLite (the embedded store).
    Sqlite,
    /// Postgres (the fleet store).
    Postgres,
}

/// One schema migration of the inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    /// Its version: applied in increasing order.
    pub version: i64,
    /// What it does, in a few words (its file name without the version).
    pub description: &'static str,
    /// The SQL, as shipped in `migrations/<dialect>/<version>_<description>.sql`.
    pub sql: &'static str,
}

impl Migration {
    /// The file name it ships as (`0004_counts_and_probe.sql`).
    pub fn file_name(&self) -> String {
        format!("{:04}_{}.sql", self.version, self.description)
    }

    /// The SHA-256 of its SQL, hex: what the history table records.
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

macro_rules! migration {
    ($dialect:literal, $version:literal, $prefix:literal, $name:literal) => {
        Migration {
            version: $version,
            description: $name,
            sql: include_str!(concat!(
                "../../migrations/",
                $dialect,
                "/",
                $prefix,
                "_",
                $name,
                ".sql"
            )),
        }
    };
}

const SQLITE: &[Migration] = &[
    migration!("sqlite", 1, "0001", "deliveries"),
    migration!("sqlite", 2, "0002", "due_index"),
    migration!("sqlite", 3, "0003", "expectations"),
    migration!("sqlite", 4, "0004", "counts_and_probe"),
    migration!("sqlite", 5, "0005", "fleet"),
    migration!("sqlite", 6, "0006", "operators"),
    migration!("sqlite", 7, "0007", "body_keys"),
    migration!("sqlite", 8, "0008", "fetched"),
    migration!("sqlite", 9, "0009", "audit_chain"),
    migration!("sqlite", 10, "0010", "retry_rounds"),
    migration!("sqlite", 11, "0011", "expectation_context"),
    migration!("sqlite", 12, "0012", "destinations"),
    migration!("sqlite", 13, "0013", "side_doors"),
];

const POSTGRES: &[Migration] = &[
    migration!("postgres", 1, "0001", "deliveries"),
    migration!("postgres", 2, "0002", "due_index"),
    migration!("postgres", 3, "0003", "expectations"),
    migration!("postgres", 4, "0004", "counts_and_probe"),
    migration!("postgres", 5, "0005", "function_search_path"),
    migration!("postgres", 6, "0006", "fleet"),
    migration!("postgres", 7, "0007", "operators"),
    migration!("postgres", 8, "0008", "body_keys"),
    migration!("postgres", 9, "0009", "fetched"),
    migration!("postgres", 10, "0010", "audit_chain"),
    migration!("postgres", 11, "0011", "retry_rounds"),
    migration!("postgres", 12, "0012", "expectation_context"),
    migration!("postgres", 13, "0013", "destinations"),
    migration!("postgres", 14, "0014", "side_doors"),
];

/// The inbox's migrations for `dialect`, in the order they apply.
pub fn migrations(dialect: Dialect) -> &'static [Migration] {
    match dialect {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
    }
}

/// The table that records which migrations were applied.
pub const HISTORY_TABLE: &str = "suki_inbox_migrations";

/// A Postgres schema (namespace) name the inbox accepts: letters, digits and `_`, not starting
/// with a digit, at most 63 bytes; quoted wherever it is used.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_in_order_and_named_as_their_files() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let all = migrations(dialect);
            assert!(all.windows(2).all(|w| w[0].version < w[1].version));
            assert_eq!(all[0].file_name(), "0001_deliveries.sql");
            assert!(all.iter().all(|m| !m.sql.trim().is_empty()));
            assert!(
                all.iter().all(|m| !m.sql.contains("_sqlx_migrations")),
                "{dialect:?}"
            );
        }
    }
}
