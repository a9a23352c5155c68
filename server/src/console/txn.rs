//! Runs a use case's `_in_txn` form for a page, in the server's one transaction runner
//! ([`AppState::in_write_txn`]): no key (a page posts once and redirects). A refusal that
//! changed something (a wrong code counted) is committed, then shown.

use super::page::PageError;
use crate::error::ApiResult;
use crate::idempotency::Outcome;
use crate::state::AppState;
use sea_orm::DatabaseTransaction;
use std::future::Future;
use std::pin::Pin;

/// The future a page's use-case closure returns: the runner's outcome, borrowing the
/// transaction.
pub type TxnFuture<'t, T> = Pin<Box<dyn Future<Output = ApiResult<Outcome<T>>> + Send + 't>>;

pub async fn write<T, F>(state: &AppState, operation: F) -> Result<T, PageError>
where
    F: for<'t> FnOnce(&'t DatabaseTransaction) -> TxnFuture<'t, T>,
{
    let outcome = state
        .in_write_txn(async move |txn, _core| operation(txn).await)
        .await?;
    match outcome {
        Outcome::Done(value) => Ok(value),
        Outcome::Refused(error) => Err(PageError::Api(error)),
    }
}
