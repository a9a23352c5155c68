//! Holds: two-phase transfers. A hold is placed (`pending`), then resolves exactly once:
//! `posted` (paid out, in full or in part, the remainder returned), `voided` or `expired`.
//!
//! A `Move` hold carries the money into the institution's freezing account at once (prepaid
//! and bank funding: the seed's freezing account holds real money). A `Reserve` hold only
//! reserves it on the funding account (credit lines), and money moves at posting.

use crate::clock::Clock;
use crate::db::MinorUnits;
use crate::entities::holds;
use crate::error::{CoreError, CoreResult};
use crate::ids::{AccountId, CaseId, HoldId, PartyId};
use crate::ledger::{self, Applied, Leg, NewTransfer, TransferKind};
use crate::money::{Currency, Money};
use crate::outcomes::{self, HoldResolution, Outcome};
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseTransaction, IntoActiveModel, QueryFilter,
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
pub enum HoldMode {
    /// Funds move into the freezing account when the hold is placed.
    Move,
    /// Funds stay on the funding account, reserved, until the hold is posted.
    Reserve,
}

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
pub enum HoldStatus {
    Pending,
    Posted,
    Voided,
    Expired,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Pending => "pending",
            HoldStatus::Posted => "posted",
            HoldStatus::Voided => "voided",
            HoldStatus::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub id: HoldId,
    pub key: String,
    pub funding_account: AccountId,
    pub freezing_account: AccountId,
    /// The institution whose freezing account holds the money (recorded per entry, because
    /// several institutions may share one freezing account).
    pub institution: PartyId,
    pub amount: Money,
    pub mode: HoldMode,
    pub status: HoldStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub posted_amount: Option<Money>,
    pub resolution_key: Option<String>,
}

impl TryFrom<holds::Model> for Hold {
    type Error = CoreError;

    fn try_from(row: holds::Model) -> CoreResult<Self> {
        let currency = Currency::from_str(&row.currency)?;
        Ok(Hold {
            id: HoldId::from_uuid(row.id),
            key: row.idempotency_key,
            funding_account: AccountId::from_uuid(row.funding_account_id),
            freezing_account: AccountId::from_uuid(row.freezing_account_id),
            institution: PartyId::from_uuid(row.institution_party_id),
            amount: Money::from_minor(row.amount.0, currency)?,
            mode: row.mode,
            status: row.status,
            expires_at: row.expires_at,
            posted_amount: row
                .posted_amount
                .map(|m| Money::from_minor(m.0, currency))
                .transpose()?,
            resolution_key: row.resolution_key,
        })
    }
}

#[derive(Debug, Clone)]
pub struct PlaceHold {
    pub key: String,
    pub funding_account: AccountId,
    pub freezing_account: AccountId,
    pub institution: PartyId,
    pub amount: Money,
    pub mode: HoldMode,
    pub expires_at: Option<DateTime<Utc>>,
    pub case: Option<CaseId>,
}

/// Where posted money goes: a payee's withdrawal account, a commission account…
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payout {
    pub account: AccountId,
    pub amount: Money,
}

pub async fn get_hold(db: &impl ConnectionTrait, id: HoldId) -> CoreResult<Hold> {
    holds::Entity::find_by_id(id.uuid())
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("hold"))
        .and_then(Hold::try_from)
}

/// Places a hold, taking the funds only if they are available. Placing it again with the
/// same key and terms returns the first hold.
#[tracing::instrument(name = "holds.place", level = "debug", skip_all, fields(case_id = request.case.map(tracing::field::display), hold_id = tracing::field::Empty))]
pub async fn place_hold_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    request: PlaceHold,
) -> CoreResult<Applied<Hold>> {
    if request.amount.is_zero() {
        return Err(CoreError::invalid("a hold must be for more than zero"));
    }
    if request.key.is_empty() || request.key.len() > ledger::MAX_KEY_CHARS {
        return Err(CoreError::invalid("a hold key has 1 to 160 characters"));
    }
    let id = HoldId::new();
    tracing::Span::current().record("hold_id", tracing::field::display(id));
    let row = holds::Model {
        id: id.uuid(),
        idempotency_key: request.key.clone(),
        funding_account_id: request.funding_account.uuid(),
        freezing_account_id: request.freezing_account.uuid(),
        institution_party_id: request.institution.uuid(),
        amount: MinorUnits(request.amount.minor()),
        currency: request.amount.currency().code().to_owned(),
        mode: request.mode,
        status: HoldStatus::Pending,
        expires_at: request.expires_at,
        posted_amount: None,
        resolution_key: None,
        resolved_at: None,
        created_at: clock.now(),
    };
    // The hold as written, kept rather than read back after the money moved (the freeze
    // touches the accounts, never the hold's row).
    let hold = Hold::try_from(row.clone())?;
    let inserted = holds::Entity::insert(row.into_active_model().reset_all())
        .on_conflict_do_nothing_on([holds::Column::IdempotencyKey])
        .exec_without_returning(txn)
        .await?;
    if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
        let existing = find_by_key(txn, &request.key).await?;
        let same_terms = existing.funding_account == request.funding_account
            && existing.freezing_account == request.freezing_account
            && existing.amount == request.amount
            && existing.mode == request.mode;
        return if same_terms {
            Ok(Applied::Already(existing))
        } else {
            Err(CoreError::IdempotencyConflict)
        };
    }

    match request.mode {
        HoldMode::Move => {
            ledger::post_transfer_in_txn(
                txn,
                clock,
                NewTransfer {
                    key: format!("hold:{id}:freeze"),
                    kind: TransferKind::Freeze,
                    currency: request.amount.currency(),
                    legs: vec![
                        Leg::debit(request.funding_account, request.amount),
                        Leg::credit(request.freezing_account, request.amount),
                    ],
                    hold: Some(id),
                    case: request.case,
                },
            )
            .await?;
        }
        HoldMode::Reserve => {
            ledger::reserve_in_txn(txn, request.funding_account, request.amount).await?;
        }
    }
    tell_institution_in_txn(txn, clock, &hold, "hold.placed").await?;
    outcomes::count(Outcome::HoldPlaced(hold.mode));
    Ok(Applied::New(hold))
}

/// The institution whose funding source a hold draws on hears of each step.
async fn tell_institution_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    hold: &Hold,
    kind: &str,
) -> CoreResult<()> {
    crate::events::publish_in_txn(
        txn,
        clock,
        hold.institution,
        kind,
        serde_json::json!({
            "hold_id": hold.id,
            "amount": hold.amount,
            "mode": hold.mode,
            "status": hold.status,
            "posted_amount": hold.posted_amount,
            "funding_account_id": hold.funding_account,
            "freezing_account_id": hold.freezing_account,
        }),
    )
    .await?;
    Ok(())
}

async fn find_by_key(db: &impl ConnectionTrait, key: &str) -> CoreResult<Hold> {
    holds::Entity::find()
        .filter(holds::Column::IdempotencyKey.eq(key))
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("hold"))
        .and_then(Hold::try_from)
}

/// Moves the hold from `pending` to `to`, once. `Ok(None)` means it was not pending any more.
/// The resolution key names this hold's resolution (a replay carries the same one); it need
/// not be unique across holds, because the hold's own status is what makes it happen once.
async fn claim_resolution(
    txn: &DatabaseTransaction,
    clock: &Clock,
    id: HoldId,
    to: HoldStatus,
    resolution_key: &str,
    posted: Option<Money>,
) -> CoreResult<Option<Hold>> {
    // The resolved row comes back with the update (RETURNING), for the caller to report.
    let resolved = holds::Entity::update_many()
        .col_expr(holds::Column::Status, Expr::value(to))
        .col_expr(holds::Column::ResolutionKey, Expr::value(resolution_key))
        .col_expr(holds::Column::ResolvedAt, Expr::value(clock.now()))
        .col_expr(
            holds::Column::PostedAmount,
            Expr::value(posted.map(|m| MinorUnits(m.minor()))),
        )
        .filter(holds::Column::Id.eq(id.uuid()))
        .filter(holds::Column::Status.eq(HoldStatus::Pending))
        .exec_with_returning(txn)
        .await?;
    let resolved = resolved
        .into_iter()
        .next()
        .map(Hold::try_from)
        .transpose()?;
    if let Some(hold) = &resolved {
        let resolution = match to {
            HoldStatus::Posted => HoldResolution::Posted,
            HoldStatus::Expired => HoldResolution::Expired,
            HoldStatus::Voided | HoldStatus::Pending => HoldResolution::Voided,
        };
        outcomes::count(Outcome::HoldResolved(hold.mode, resolution));
    }
    Ok(resolved)
}

/// Explains why a hold could not be resolved: a replay of the same resolution is
/// `Applied::Already`, anything else `HoldAlreadyResolved`.
async fn already_resolved(
    txn: &DatabaseTransaction,
    id: HoldId,
    wanted: HoldStatus,
    resolution_key: &str,
) -> CoreResult<Applied<Hold>> {
    let hold = get_hold(txn, id).await?;
    if hold.status == wanted && hold.resolution_key.as_deref() == Some(resolution_key) {
        Ok(Applied::Already(hold))
    } else {
        Err(CoreError::HoldAlreadyResolved {
            status: hold.status.as_str(),
        })
    }
}

/// Posts `amount` (at most the hold's) to `payouts`, which must add up to it; the rest of the
/// hold returns to the funding account. Resolves the hold exactly once.
#[tracing::instrument(name = "holds.post", level = "debug", skip_all, fields(hold_id = %id))]
pub async fn post_hold_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    id: HoldId,
    resolution_key: &str,
    amount: Money,
    payouts: &[Payout],
) -> CoreResult<Applied<Hold>> {
    let hold = get_hold(txn, id).await?;
    let remainder = hold
        .amount
        .checked_sub(&amount)
        .map_err(|_| CoreError::invalid("cannot post more than the hold"))?;
    let mut paid = Money::zero(amount.currency());
    for payout in payouts {
        paid = paid.checked_add(&payout.amount)?;
    }
    if paid != amount {
        return Err(CoreError::invalid(
            "the payouts must add up to the posted amount",
        ));
    }
    let Some(posted) = claim_resolution(
        txn,
        clock,
        id,
        HoldStatus::Posted,
        resolution_key,
        Some(amount),
    )
    .await?
    else {
        return already_resolved(txn, id, HoldStatus::Posted, resolution_key).await;
    };

    if hold.mode == HoldMode::Reserve {
        // Reserved credit is drawn now: the institution pays the posted amount into its
        // freezing account, so that payouts, as always, leave from a freezing account.
        ledger::release_reservation_in_txn(txn, hold.funding_account, hold.amount).await?;
        if !amount.is_zero() {
            ledger::post_transfer_in_txn(
                txn,
                clock,
                NewTransfer {
                    key: format!("hold:{id}:capture"),
                    kind: TransferKind::Capture,
                    currency: hold.amount.currency(),
                    legs: vec![
                        Leg::debit(hold.funding_account, amount),
                        Leg::credit(hold.freezing_account, amount),
                    ],
                    hold: Some(id),
                    case: None,
                },
            )
            .await?;
        }
    }
    // Out of the freezing account: the payouts, and for moved money whatever was not posted
    // back to its source.
    let frozen = match hold.mode {
        HoldMode::Move => hold.amount,
        HoldMode::Reserve => amount,
    };
    let mut legs: Vec<Leg> = payouts
        .iter()
        .filter(|p| !p.amount.is_zero())
        .map(|p| Leg::credit(p.account, p.amount))
        .collect();
    if hold.mode == HoldMode::Move && !remainder.is_zero() {
        legs.push(Leg::credit(hold.funding_account, remainder));
    }
    if !frozen.is_zero() {
        legs.push(Leg::debit(hold.freezing_account, frozen));
        ledger::post_transfer_in_txn(
            txn,
            clock,
            NewTransfer {
                key: format!("hold:{id}:settle"),
                kind: TransferKind::Settle,
                currency: hold.amount.currency(),
                legs,
                hold: Some(id),
                case: None,
            },
        )
        .await?;
    }
    tell_institution_in_txn(txn, clock, &posted, "hold.posted").await?;
    Ok(Applied::New(posted))
}

/// Returns the whole hold to its funding account.
#[tracing::instrument(name = "holds.void", level = "debug", skip_all, fields(hold_id = %id))]
pub async fn void_hold_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    id: HoldId,
    resolution_key: &str,
) -> CoreResult<Applied<Hold>> {
    release(txn, clock, id, HoldStatus::Voided, resolution_key).await
}

/// Expires a hold whose deadline has passed, returning its money; refuses one whose deadline
/// has not.
#[tracing::instrument(name = "holds.expire", level = "debug", skip_all, fields(hold_id = %id))]
pub async fn expire_hold_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    id: HoldId,
) -> CoreResult<Applied<Hold>> {
    let hold = get_hold(txn, id).await?;
    match hold.expires_at {
        Some(deadline) if deadline <= clock.now() => {}
        _ => return Err(CoreError::invalid("the hold has not reached its deadline")),
    }
    release(
        txn,
        clock,
        id,
        HoldStatus::Expired,
        &format!("hold:{id}:expire"),
    )
    .await
}

async fn release(
    txn: &DatabaseTransaction,
    clock: &Clock,
    id: HoldId,
    to: HoldStatus,
    resolution_key: &str,
) -> CoreResult<Applied<Hold>> {
    let Some(hold) = claim_resolution(txn, clock, id, to, resolution_key, None).await? else {
        return already_resolved(txn, id, to, resolution_key).await;
    };
    match hold.mode {
        HoldMode::Move => {
            ledger::post_transfer_in_txn(
                txn,
                clock,
                NewTransfer {
                    key: format!("hold:{id}:release"),
                    kind: TransferKind::Unfreeze,
                    currency: hold.amount.currency(),
                    legs: vec![
                        Leg::debit(hold.freezing_account, hold.amount),
                        Leg::credit(hold.funding_account, hold.amount),
                    ],
                    hold: Some(id),
                    case: None,
                },
            )
            .await?;
        }
        HoldMode::Reserve => {
            ledger::release_reservation_in_txn(txn, hold.funding_account, hold.amount).await?;
        }
    }
    let kind = match to {
        HoldStatus::Expired => "hold.expired",
        _ => "hold.voided",
    };
    tell_institution_in_txn(txn, clock, &hold, kind).await?;
    Ok(Applied::New(hold))
}

/// Takes the deadline off a pending hold: once the buyer approved, the money stays frozen until
/// settlement, however long delivery takes.
pub async fn clear_expiry_in_txn(txn: &DatabaseTransaction, id: HoldId) -> CoreResult<()> {
    let result = holds::Entity::update_many()
        .col_expr(
            holds::Column::ExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(holds::Column::Id.eq(id.uuid()))
        .filter(holds::Column::Status.eq(HoldStatus::Pending))
        .exec(txn)
        .await?;
    if result.rows_affected == 1 {
        Ok(())
    } else {
        let hold = get_hold(txn, id).await?;
        Err(CoreError::HoldAlreadyResolved {
            status: hold.status.as_str(),
        })
    }
}

/// The newest holds whose money `institution` froze (whatever freezing account holds it), in
/// the filter's status and created in its date range.
pub async fn holds_of_institution(
    db: &impl ConnectionTrait,
    institution: PartyId,
    filter: &crate::paging::ListFilter<HoldStatus>,
    page: &crate::paging::Page,
) -> CoreResult<crate::paging::Paged<Hold>> {
    let mut select = holds::Entity::find()
        .filter(holds::Column::InstitutionPartyId.eq(institution.uuid()))
        .filter(filter.created.condition(holds::Column::CreatedAt));
    if let Some(status) = filter.state {
        select = select.filter(holds::Column::Status.eq(status));
    }
    let rows = page
        .apply(select, holds::Column::CreatedAt, holds::Column::Id)
        .all(db)
        .await?;
    page.finish(rows, |row| (row.created_at, row.id))
        .try_map(Hold::try_from)
}
