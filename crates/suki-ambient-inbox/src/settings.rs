//! The settings an inbox is opened with, shared by the builder and the built-in stores.

use std::time::Duration;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::StoreError;

/// The settings an [`InboxBuilder`] collects.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) max_connections: Option<u32>,
    pub(crate) acquire_timeout: Option<Duration>,
    pub(crate) schema: Option<String>,
    pub(crate) migrate: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_connections: None,
            acquire_timeout: None,
            schema: None,
            migrate: true,
        }
    }
}

impl Settings {
    /// The schema setting, checked for `dialect`: SQLite keeps the inbox in its file and takes
    /// none; a Postgres schema name must be one the inbox accepts.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn schema_for(
        &self,
        dialect: crate::migrate::Dialect,
    ) -> Result<Option<&str>, StoreError> {
        match (&self.schema, dialect) {
            (None, _) => Ok(None),
            (Some(_), crate::migrate::Dialect::Sqlite) => Err(StoreError::Unsupported(
                "a schema (SQLite keeps the inbox in its database file)",
            )),
            (Some(schema), crate::migrate::Dialect::Postgres)
                if crate::migrate::valid_schema(schema) =>
            {
                Ok(Some(schema))
            }
            (Some(schema), crate::migrate::Dialect::Postgres) => Err(StoreError::InvalidSchema {
                schema: schema.clone(),
            }),
        }
    }
}

/// `url` as it can be shown: without a password or a query string (which may carry one).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn redact_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => format!("{scheme}://{user_info}@{host}{path}"),
        },
        None => format!("{scheme}://{rest}"),
    }
}
