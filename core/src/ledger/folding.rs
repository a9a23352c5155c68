//! The fold step: an append-only account's unfolded postings added to its balance, in id order, under its row lock.

use super::*;

/// What one fold of one account did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Folded {
    pub postings: u64,
    /// Minor units added to the folded balance.
    pub amount: i64,
}

/// Accounts with unfolded postings, at most `limit` of them.
pub async fn accounts_to_fold(db: &impl ConnectionTrait, limit: u64) -> CoreResult<Vec<AccountId>> {
    Ok(postings::Entity::find()
        .select_only()
        .column(postings::Column::AccountId)
        .distinct()
        .filter(postings::Column::Folded.eq(false))
        .limit(limit)
        .into_tuple::<Uuid>()
        .all(db)
        .await?
        .into_iter()
        .map(AccountId::from_uuid)
        .collect())
}

/// Folds up to `limit` of `account`'s unfolded postings, in id order, into its balance, and
/// marks them folded — in the caller's transaction, so a crash folds all of them or none.
/// `None` when another transaction holds the account (another fold, or a checked debit):
/// it is skipped, not waited for. Running it again folds only what is still unfolded.
#[tracing::instrument(name = "ledger.fold", level = "debug", skip_all, fields(account_id = %account))]
pub async fn fold_account_in_txn(
    txn: &DatabaseTransaction,
    account: AccountId,
    limit: u64,
) -> CoreResult<Option<Folded>> {
    if !lock_account(txn, account, true).await? {
        return Ok(None);
    }
    // After the lock, in a statement of its own: sees every fold committed before it.
    let batch: Vec<(Uuid, MinorUnits)> = postings::Entity::find()
        .select_only()
        .columns([postings::Column::Id, postings::Column::Amount])
        .filter(postings::Column::AccountId.eq(account.uuid()))
        .filter(postings::Column::Folded.eq(false))
        .order_by_asc(postings::Column::Id)
        .limit(limit.clamp(1, MAX_FOLD_BATCH))
        .into_tuple()
        .all(txn)
        .await?;
    if batch.is_empty() {
        return Ok(Some(Folded::default()));
    }
    let too_large = || CoreError::Money(crate::money::MoneyError::TooLarge);
    let amount = batch
        .iter()
        .try_fold(0i64, |sum, (_, amount)| sum.checked_add(amount.0))
        .ok_or_else(too_large)?;
    let ids: Vec<Uuid> = batch.iter().map(|(id, _)| *id).collect();
    let count = u64::try_from(ids.len()).map_err(|_| too_large())?;
    let marked = postings::Entity::update_many()
        .col_expr(postings::Column::Folded, Expr::value(true))
        .filter(postings::Column::Id.is_in(ids))
        .filter(postings::Column::Folded.eq(false))
        .exec(txn)
        .await?;
    if marked.rows_affected != count {
        // Under the row lock nobody else folds this account; if it happened anyway, the
        // caller's transaction must roll back rather than add money twice.
        return Err(CoreError::invalid(
            "postings were folded by another transaction",
        ));
    }
    accounts::Entity::update_many()
        .col_expr(
            accounts::Column::Balance,
            Expr::col(accounts::Column::Balance).add(amount),
        )
        .filter(accounts::Column::Id.eq(account.uuid()))
        .exec(txn)
        .await?;
    Ok(Some(Folded {
        postings: count,
        amount,
    }))
}
