//! The one map from keysmith errors to gRPC statuses. Internal causes are
//! logged here and never sent to the client.

use tonic::Status;

use crate::{error::Error, store::StoreError};

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument { field, reason } => {
                Status::invalid_argument(format!("{field}: {reason}"))
            }
            Error::NotFound(what) => Status::not_found(format!("{what} not found")),
            Error::FailedPrecondition(msg) => Status::failed_precondition(msg),
            Error::AlreadyExists(msg) => Status::already_exists(msg),
            Error::Unauthenticated => Status::unauthenticated("missing or invalid admin token"),
            Error::PermissionDenied(msg) => Status::permission_denied(msg),
            Error::Unavailable(msg) => Status::unavailable(msg),
            Error::OutOfRange(msg) => Status::out_of_range(msg),
            Error::Aborted(msg) => Status::aborted(msg),
            Error::ResourceExhausted(msg) => Status::resource_exhausted(msg),
            Error::DataLoss(msg) => Status::data_loss(msg),
            Error::Store(e) => store_status(e),
            Error::Internal(msg) => {
                tracing::error!(error = %msg, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

fn store_status(err: StoreError) -> Status {
    match err {
        StoreError::Conflict => Status::aborted("the key changed concurrently; retry"),
        StoreError::Database(ref e) if is_unavailable(e) => {
            tracing::warn!(error = %err, "database unavailable");
            Status::unavailable("database unavailable; retry")
        }
        StoreError::Duplicate
        | StoreError::Corrupt(_)
        | StoreError::Database(_)
        | StoreError::Migrate(_) => {
            tracing::error!(error = %err, "store error");
            Status::internal("internal error")
        }
    }
}

/// Errors that mean "the database cannot be reached right now": retryable.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        // SQLSTATE class 08 (connection exception) and 57 (operator
        // intervention, e.g. the server is shutting down).
        // SQLite's busy and locked results (5, 6 and their extended
        // codes): its one writer stayed taken past the busy timeout.
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08")
                || c.starts_with("57")
                || matches!(&*c, "5" | "6" | "261" | "262" | "517" | "518" | "773")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::{Connection, SqliteConnection, sqlite::SqliteConnectOptions};

    use super::*;

    /// SQLite's one writer, held past the busy timeout: a real SQLITE_BUSY.
    #[tokio::test]
    async fn a_busy_sqlite_writer_is_unavailable_not_internal() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("busy.db"))
            .create_if_missing(true)
            .busy_timeout(Duration::ZERO);
        let mut holder = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::raw_sql("CREATE TABLE t (x INTEGER); BEGIN IMMEDIATE; INSERT INTO t VALUES (1)")
            .execute(&mut holder)
            .await
            .unwrap();
        let mut other = SqliteConnection::connect_with(&options).await.unwrap();
        let busy = sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect_err("the write lock is held");
        let status = Status::from(Error::Store(StoreError::Database(busy)));
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert_eq!(status.message(), "database unavailable; retry");
    }
}
