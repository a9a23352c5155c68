//! A payee asking to be paid out: which institution sends its money, and the request itself.
//!
//! A withdrawal account belongs to no institution (money reaches it from whichever freezing
//! account settled an order), so the payout needs one chosen: the institution whose own bank
//! account in the payout's currency was registered first (it can send the credit transfer
//! today), or, while no institution has one, the platform's default institution — the payout
//! then waits, pending, for that institution's account in the currency (a bank run skips a
//! currency it has no account in).

use crate::banking::payouts::{self, Payout, PayoutAmount, PayoutRequest};
use crate::clock::Clock;
use crate::entities::institution_bank_accounts as accounts_rows;
use crate::error::CoreResult;
use crate::funding::DEFAULT_INSTITUTION;
use crate::ids::PartyId;
use crate::ledger::Applied;
use crate::money::Currency;
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, DatabaseTransaction, QueryFilter, QueryOrder};

/// The institution that sends payouts in `currency`.
pub async fn paying_institution(
    db: &impl ConnectionTrait,
    currency: Currency,
) -> CoreResult<PartyId> {
    let first = accounts_rows::Entity::find()
        .filter(accounts_rows::Column::Currency.eq(currency.code()))
        .order_by_asc(accounts_rows::Column::CreatedAt)
        .order_by_asc(accounts_rows::Column::Id)
        .one(db)
        .await?;
    Ok(first.map_or(DEFAULT_INSTITUTION, |row| {
        PartyId::from_uuid(row.institution_party_id)
    }))
}

/// Pays `amount` of `party`'s withdrawal account out to its active destination, through the
/// [`paying_institution`] of the currency. `key` is the payee's own idempotency key: the same
/// key again returns the first payout and moves nothing.
pub async fn request_payout_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    party: PartyId,
    amount: PayoutAmount,
    key: String,
) -> CoreResult<Applied<Payout>> {
    let institution = paying_institution(txn, amount.currency()).await?;
    payouts::request_in_txn(
        txn,
        clock,
        PayoutRequest {
            party,
            amount,
            key,
            institution,
        },
    )
    .await
}
