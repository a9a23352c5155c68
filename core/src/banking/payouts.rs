//! Payouts: money leaving a payee's withdrawal account for its bank account. Requesting one
//! moves the money at once into the paying institution's payouts-in-transit account, so it
//! can be neither spent twice nor lost while the bank has it: `pending` (waiting for the next
//! bank run) → `sent` (in a credit transfer file) → `paid` (the bank's statement shows it
//! booked; the money leaves the ledger through the institution's external account) or
//! `returned` (the bank sent it back, with its reason; the money returns to the withdrawal
//! account). Every step is a conditional update plus a transfer with a key of its own, so a
//! retried request, a statement imported twice or two instances racing move the money once.

use crate::banking::destinations;
use crate::clock::Clock;
use crate::entities::payouts as rows;
use crate::error::{CoreError, CoreResult};
use crate::ids::{AccountId, PartyId, PayoutDestinationId, PayoutId};
use crate::ledger::{self, AccountKind, Applied, Leg, NewAccount, NewTransfer, TransferKind};
use crate::money::{Currency, Money};
use crate::paging::{ListFilter, Page, Paged};
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use utoipa::ToSchema;

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::N(16))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    /// Taken from the withdrawal account; waiting for the next bank run.
    Pending,
    /// In a credit transfer file handed to the bank.
    Sent,
    /// The bank booked it to the payee's account.
    Paid,
    /// The bank sent it back; the money is on the withdrawal account again.
    Returned,
}

impl PayoutStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutStatus::Pending => "pending",
            PayoutStatus::Sent => "sent",
            PayoutStatus::Paid => "paid",
            PayoutStatus::Returned => "returned",
        }
    }
}

/// How much to pay out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayoutAmount {
    /// Everything on the withdrawal account when the request is carried out.
    All(Currency),
    Exactly(Money),
}

impl PayoutAmount {
    /// `all`, or an amount in `currency` (`"250.00"`).
    pub fn parse(typed: &str, currency: Currency) -> CoreResult<PayoutAmount> {
        let typed = typed.trim();
        if typed.eq_ignore_ascii_case("all") {
            Ok(PayoutAmount::All(currency))
        } else {
            Ok(PayoutAmount::Exactly(Money::parse(typed, currency)?))
        }
    }

    pub fn currency(self) -> Currency {
        match self {
            PayoutAmount::All(currency) => currency,
            PayoutAmount::Exactly(money) => money.currency(),
        }
    }

    /// What the payout row records as asked: `None` for everything.
    fn requested_minor(self) -> Option<i64> {
        match self {
            PayoutAmount::All(_) => None,
            PayoutAmount::Exactly(money) => Some(money.minor()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct PayoutRequest {
    pub party: PartyId,
    pub amount: PayoutAmount,
    /// The payee's idempotency key: the same key again returns the first payout.
    pub key: String,
    /// The bank that sends the money.
    pub institution: PartyId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payout {
    pub id: PayoutId,
    pub party: PartyId,
    pub destination: PayoutDestinationId,
    pub institution: PartyId,
    pub withdrawal_account: AccountId,
    pub amount: Money,
    pub status: PayoutStatus,
    /// ISO 20022 end-to-end id: the credit transfer and the statements name the payout by it.
    pub end_to_end_id: String,
    pub return_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// When the bank reported it paid or returned.
    pub settled_at: Option<DateTime<Utc>>,
    /// The credit transfer file that carried it, once sent.
    pub bank_file: Option<Uuid>,
}

impl TryFrom<rows::Model> for Payout {
    type Error = CoreError;

    fn try_from(row: rows::Model) -> CoreResult<Self> {
        let currency = Currency::from_str(&row.currency)?;
        Ok(Payout {
            id: PayoutId::from_uuid(row.id),
            party: PartyId::from_uuid(row.party_id),
            destination: PayoutDestinationId::from_uuid(row.destination_id),
            institution: PartyId::from_uuid(row.institution_party_id),
            withdrawal_account: AccountId::from_uuid(row.withdrawal_account_id),
            amount: Money::from_minor(row.amount.0, currency)?,
            status: row.status,
            end_to_end_id: row.end_to_end_id,
            return_reason: row.return_reason,
            created_at: row.created_at,
            sent_at: row.sent_at,
            settled_at: row.settled_at,
            bank_file: row.bank_file_id,
        })
    }
}

/// The end-to-end id of a payout: 34 characters, within ISO 20022's `Max35Text`, and unique
/// because the payout's id is.
fn end_to_end_id(id: PayoutId) -> String {
    format!("HF{}", id.uuid().simple()).to_ascii_uppercase()
}

/// The payouts-in-transit account of `institution` in `currency`, opened on first use.
async fn in_transit_account_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    institution: PartyId,
    currency: Currency,
) -> CoreResult<ledger::Account> {
    ledger::get_or_open_keyed_account_in_txn(
        txn,
        clock,
        NewAccount {
            key: Some(ledger::keys::payouts_in_transit(institution, currency)),
            kind: AccountKind::PayoutsInTransit,
            owner: crate::parties::PLATFORM_PARTY,
            institution: Some(institution),
            currency,
            credit_limit: Money::zero(currency),
            credit_class: None,
        },
    )
    .await
}

/// Takes the money of a payout from `request.party`'s withdrawal account into payouts in
/// transit, for the bank run to send to the payee's active destination. The same key again
/// returns the first payout (`Applied::Already`); with another amount, `IdempotencyConflict`.
/// Without a confirmed destination, or with less on the account than asked, nothing happens.
pub async fn request_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    request: PayoutRequest,
) -> CoreResult<Applied<Payout>> {
    if request.key.is_empty() || request.key.chars().count() > ledger::MAX_KEY_CHARS {
        return Err(CoreError::invalid(
            "an idempotency key has 1 to 160 characters",
        ));
    }
    if let PayoutAmount::Exactly(money) = request.amount
        && money.is_zero()
    {
        return Err(CoreError::invalid("a payout must be more than zero"));
    }
    let currency = request.amount.currency();
    if let Some(first) = rows::Entity::find()
        .filter(rows::Column::PartyId.eq(request.party.uuid()))
        .filter(rows::Column::IdempotencyKey.eq(request.key.as_str()))
        .one(txn)
        .await?
    {
        let same = first.currency == currency.code()
            && first.requested_amount.map(|m| m.0) == request.amount.requested_minor();
        return if same {
            Ok(Applied::Already(Payout::try_from(first)?))
        } else {
            Err(CoreError::IdempotencyConflict)
        };
    }
    let destination = destinations::active(txn, request.party)
        .await?
        .ok_or(CoreError::PayoutDestinationRequired)?;
    let nothing = || CoreError::InsufficientFunds {
        available: Money::zero(currency),
    };
    let withdrawal =
        ledger::find_keyed_account(txn, &ledger::keys::withdrawal(request.party, currency))
            .await?
            .ok_or_else(nothing)?;
    let amount = match request.amount {
        PayoutAmount::Exactly(money) => money,
        PayoutAmount::All(_) => {
            // Locked first, so the balance read is what the debit below may take.
            let locked = ledger::lock_and_read_in_txn(txn, withdrawal.id).await?;
            let available = locked.available();
            if available.is_zero() {
                return Err(nothing());
            }
            available
        }
    };
    let in_transit = in_transit_account_in_txn(txn, clock, request.institution, currency).await?;
    let id = PayoutId::new();
    let row = rows::ActiveModel {
        id: Set(id.uuid()),
        party_id: Set(request.party.uuid()),
        idempotency_key: Set(request.key),
        destination_id: Set(destination.id.uuid()),
        institution_party_id: Set(request.institution.uuid()),
        withdrawal_account_id: Set(withdrawal.id.uuid()),
        currency: Set(currency.code().to_owned()),
        requested_amount: Set(request.amount.requested_minor().map(crate::db::MinorUnits)),
        amount: Set(crate::db::MinorUnits(amount.minor())),
        status: Set(PayoutStatus::Pending),
        end_to_end_id: Set(end_to_end_id(id)),
        return_reason: Set(None),
        created_at: Set(clock.now()),
        sent_at: Set(None),
        settled_at: Set(None),
        bank_file_id: Set(None),
    }
    .insert(txn)
    .await?;
    // A checked debit: refused (and the caller's transaction rolled back) if the account
    // holds less than the amount.
    ledger::post_transfer_in_txn(
        txn,
        clock,
        NewTransfer {
            key: format!("payout:{id}"),
            kind: TransferKind::Payout,
            currency,
            legs: vec![
                Leg::debit(withdrawal.id, amount),
                Leg::credit(in_transit.id, amount),
            ],
            hold: None,
            case: None,
        },
    )
    .await?;
    Ok(Applied::New(Payout::try_from(row)?))
}

/// Marks pending payouts as sent in a bank run; returns those it marked (a payout another run
/// took meanwhile is left out).
pub async fn mark_sent_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    ids: &[PayoutId],
) -> CoreResult<Vec<Payout>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let uuids: Vec<Uuid> = ids.iter().map(|id| id.uuid()).collect();
    // Only the rows this update moved come back: the conditional update is the claim.
    rows::Entity::update_many()
        .col_expr(
            rows::Column::Status,
            Expr::value(PayoutStatus::Sent.as_str()),
        )
        .col_expr(rows::Column::SentAt, Expr::value(clock.now()))
        .filter(rows::Column::Id.is_in(uuids))
        .filter(rows::Column::Status.eq(PayoutStatus::Pending))
        .exec_with_returning(txn)
        .await?
        .into_iter()
        .map(Payout::try_from)
        .collect()
}

/// What the bank reported about a payout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BankOutcome {
    Paid,
    /// Sent back, with the bank's reason (an ISO 20022 return reason code and its text).
    Returned {
        reason: String,
    },
}

/// Records what the bank reported about the payout with `end_to_end_id`. Reported again (a
/// statement imported twice), it is `Applied::Already` and moves nothing. A return after the
/// payout was reported paid brings the money back from the outside world; a payout the bank
/// cannot have yet (pending), or one already returned, refuses any other outcome.
pub async fn record_outcome_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    end_to_end_id: &str,
    outcome: BankOutcome,
) -> CoreResult<Applied<Payout>> {
    let payout = by_end_to_end_id(txn, end_to_end_id).await?;
    let target = match &outcome {
        BankOutcome::Paid => PayoutStatus::Paid,
        BankOutcome::Returned { .. } => PayoutStatus::Returned,
    };
    if payout.status == target {
        return Ok(Applied::Already(payout));
    }
    let allowed = matches!(
        (payout.status, target),
        (PayoutStatus::Sent, _) | (PayoutStatus::Paid, PayoutStatus::Returned)
    );
    if !allowed {
        return Err(CoreError::InvalidTransition {
            state: payout.status.as_str(),
            action: match target {
                PayoutStatus::Paid => "record it paid",
                _ => "record it returned",
            },
        });
    }
    let now = clock.now();
    let reason = match &outcome {
        BankOutcome::Returned { reason } => Some(truncate(reason, 140)),
        BankOutcome::Paid => None,
    };
    let updated = rows::Entity::update_many()
        .col_expr(rows::Column::Status, Expr::value(target.as_str()))
        .col_expr(rows::Column::SettledAt, Expr::value(now))
        .col_expr(rows::Column::ReturnReason, Expr::value(reason))
        .filter(rows::Column::Id.eq(payout.id.uuid()))
        .filter(rows::Column::Status.eq(payout.status))
        .exec(txn)
        .await?;
    if updated.rows_affected != 1 {
        // Another import recorded an outcome meanwhile; the caller retries and finds it.
        return Err(CoreError::Conflict);
    }
    let currency = payout.amount.currency();
    let in_transit = in_transit_account_in_txn(txn, clock, payout.institution, currency).await?;
    let (kind, key, from, to) = match (payout.status, target) {
        (PayoutStatus::Sent, PayoutStatus::Paid) => (
            TransferKind::PayoutPaid,
            format!("payout:{}:paid", payout.id),
            in_transit.id,
            external_account_in_txn(txn, clock, payout.institution, currency)
                .await?
                .id,
        ),
        (PayoutStatus::Sent, _) => (
            TransferKind::PayoutReturned,
            format!("payout:{}:returned", payout.id),
            in_transit.id,
            payout.withdrawal_account,
        ),
        _ => (
            TransferKind::PayoutReturned,
            format!("payout:{}:returned", payout.id),
            external_account_in_txn(txn, clock, payout.institution, currency)
                .await?
                .id,
            payout.withdrawal_account,
        ),
    };
    ledger::post_transfer_in_txn(
        txn,
        clock,
        NewTransfer {
            key,
            kind,
            currency,
            legs: vec![
                Leg::debit(from, payout.amount),
                Leg::credit(to, payout.amount),
            ],
            hold: None,
            case: None,
        },
    )
    .await?;
    by_end_to_end_id(txn, end_to_end_id).await.map(Applied::New)
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

async fn external_account_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    institution: PartyId,
    currency: Currency,
) -> CoreResult<ledger::Account> {
    ledger::get_or_open_keyed_account_in_txn(
        txn,
        clock,
        NewAccount {
            key: Some(ledger::keys::external(institution, currency)),
            kind: AccountKind::External,
            owner: institution,
            institution: Some(institution),
            currency,
            credit_limit: Money::zero(currency),
            credit_class: None,
        },
    )
    .await
}

pub async fn by_end_to_end_id(
    db: &impl ConnectionTrait,
    end_to_end_id: &str,
) -> CoreResult<Payout> {
    rows::Entity::find()
        .filter(rows::Column::EndToEndId.eq(end_to_end_id))
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("payout"))
        .and_then(Payout::try_from)
}

/// `party`'s payout `id`; another payee's is not found.
pub async fn get(db: &impl ConnectionTrait, party: PartyId, id: PayoutId) -> CoreResult<Payout> {
    rows::Entity::find_by_id(id.uuid())
        .filter(rows::Column::PartyId.eq(party.uuid()))
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("payout"))
        .and_then(Payout::try_from)
}

/// `party`'s payouts, newest first.
pub async fn payouts_of(
    db: &impl ConnectionTrait,
    party: PartyId,
    filter: &ListFilter<PayoutStatus>,
    page: &Page,
) -> CoreResult<Paged<Payout>> {
    let mut select = rows::Entity::find()
        .filter(rows::Column::PartyId.eq(party.uuid()))
        .filter(filter.created.condition(rows::Column::CreatedAt));
    if let Some(status) = filter.state {
        select = select.filter(rows::Column::Status.eq(status));
    }
    let rows = page
        .apply(select, rows::Column::CreatedAt, rows::Column::Id)
        .all(db)
        .await?;
    page.finish(rows, |row| (row.created_at, row.id))
        .try_map(Payout::try_from)
}

/// Pending payouts of `institution`, oldest first: what the next bank run sends.
pub async fn pending_of_institution(
    db: &impl ConnectionTrait,
    institution: PartyId,
    limit: u64,
) -> CoreResult<Vec<Payout>> {
    rows::Entity::find()
        .filter(rows::Column::InstitutionPartyId.eq(institution.uuid()))
        .filter(rows::Column::Status.eq(PayoutStatus::Pending))
        .order_by_asc(rows::Column::CreatedAt)
        .order_by_asc(rows::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(Payout::try_from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_to_end_id_fits_iso_20022_and_is_the_payouts_own() {
        let id = PayoutId::new();
        let e2e = end_to_end_id(id);
        assert_eq!(e2e.len(), 34);
        assert!(e2e.starts_with("HF"));
        assert!(e2e.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(e2e, end_to_end_id(PayoutId::new()));
    }
}
