//! Runs a use case's `_in_txn` form in one write transaction for a page: the same closure
//! shape as the API's idempotency runner ([`crate::idempotency::run`]), without a key (a page
//! posts once and redirects). A refusal that changed something (a wrong code counted) is
//! committed, then shown.

use super::page::PageError;
use crate::idempotency::{Outcome, TxnFuture};
use crate::state::AppState;
use holdfast_core::db;
use sea_orm::DatabaseTransaction;

pub async fn write<T, F>(state: &AppState, operation: F) -> Result<T, PageError>
where
    F: for<'t> FnOnce(&'t DatabaseTransaction) -> TxnFuture<'t, T>,
{
    let txn = db::begin_write(&state.db).await?;
    let outcome = operation(&txn).await?;
    txn.commit().await?;
    state.core.wake_outbox();
    match outcome {
        Outcome::Done(value) => Ok(value),
        Outcome::Refused(error) => Err(PageError::Api(error)),
    }
}
