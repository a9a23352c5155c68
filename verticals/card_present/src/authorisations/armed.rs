//! Approvals a holder arms ahead on the phone: one merchant, a ceiling, a time window.

use super::*;
use holdfast_core::paging::{Page, Paged};

pub(super) fn armed_binding(
    row: &armed_rows::Model,
    merchant: &str,
) -> CoreResult<ChallengeBinding> {
    Ok(ChallengeBinding {
        amount: Some(money_of(row.max_amount, &row.currency)?),
        payee: Some(merchant.to_owned()),
        order_number: None,
        terms: Some(format!(
            "pre-approval of one payment up to this amount, {} to {} UTC",
            row.valid_from.format("%Y-%m-%d %H:%M"),
            row.valid_until.format("%Y-%m-%d %H:%M")
        )),
    })
}

pub(super) async fn armed_view(
    db: &impl ConnectionTrait,
    row: &armed_rows::Model,
    now: DateTime<Utc>,
) -> CoreResult<ArmedApproval> {
    let mut status = row.status;
    let mut pending_confirmation = None;
    match status {
        ArmedStatus::Armed if now >= row.valid_until => status = ArmedStatus::Expired,
        ArmedStatus::AwaitingConfirmation => match row.challenge_id {
            Some(id) => {
                let challenge =
                    challenge::get_challenge(db, holdfast_core::ids::ChallengeId::from_uuid(id))
                        .await?;
                if challenge.status == ChallengeStatus::Pending
                    && now < challenge.expires_at
                    && now < row.valid_until
                {
                    pending_confirmation = Some(PendingConfirmation {
                        challenge_id: challenge.id,
                        expires_at: challenge.expires_at,
                    });
                } else {
                    status = ArmedStatus::Expired;
                }
            }
            None => status = ArmedStatus::Expired,
        },
        _ => {}
    }
    let used_by = match row.used_by_authorisation_id {
        Some(id) => auth_rows::Entity::find_by_id(id)
            .one(db)
            .await?
            .map(|a| a.reference),
        None => None,
    };
    let card = cards::get_card(db, CardId::from_uuid(row.card_id)).await?;
    Ok(ArmedApproval {
        id: ArmedApprovalId::from_uuid(row.id),
        status,
        card: card.number.masked(),
        merchant_id: PartyId::from_uuid(row.merchant_party_id),
        merchant_name: merchant_name(db, row.merchant_party_id).await?,
        max_amount: money_of(row.max_amount, &row.currency)?,
        valid_from: row.valid_from,
        valid_until: row.valid_until,
        used_by,
        pending_confirmation,
        created_at: row.created_at,
    })
}

/// The holder arms an approval for one payment at `merchant`, up to a ceiling, within a time
/// window. It takes effect once confirmed on the phone (the code is bound to merchant, ceiling
/// and window); a matching terminal request is then approved at once, and uses it up.
#[tracing::instrument(name = "card_present.arm", skip_all)]
pub async fn arm_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    holder: PartyId,
    card: CardId,
    request: ArmRequest,
) -> CoreResult<ArmedApproval> {
    let card = cards::get_card(txn, card).await?;
    card.ensure_active()?;
    if card.holder != holder {
        return Err(CoreError::Forbidden("the card belongs to someone else"));
    }
    if request.max_amount.is_zero() {
        return Err(CoreError::invalid("a ceiling is more than zero"));
    }
    if !(1..=MAX_ARM_WINDOW_MINUTES).contains(&request.valid_for_minutes) {
        return Err(CoreError::invalid(format!(
            "an armed approval lasts 1 to {MAX_ARM_WINDOW_MINUTES} minutes"
        )));
    }
    let now = core.clock.now();
    let valid_from = request.valid_from.unwrap_or(now).max(now);
    if valid_from > now + Duration::days(MAX_ARM_LEAD_DAYS) {
        return Err(CoreError::invalid(format!(
            "an armed approval starts within {MAX_ARM_LEAD_DAYS} days"
        )));
    }
    let valid_until = valid_from + Duration::minutes(request.valid_for_minutes);
    let has_terminal = terminal_rows::Entity::find()
        .filter(terminal_rows::Column::MerchantPartyId.eq(request.merchant.uuid()))
        .one(txn)
        .await?
        .is_some();
    if !has_terminal {
        return Err(CoreError::NotFound("merchant"));
    }
    let funding = ledger::get_account(txn, card.funding_account).await?;
    if funding.currency != request.max_amount.currency() {
        return Err(CoreError::Money(
            holdfast_core::money::MoneyError::CurrencyMismatch {
                left: funding.currency,
                right: request.max_amount.currency(),
            },
        ));
    }
    let id = Uuid::now_v7();
    let row = armed_rows::Model {
        id,
        card_id: card.id.uuid(),
        holder_party_id: holder.uuid(),
        merchant_party_id: request.merchant.uuid(),
        max_amount: MinorUnits(request.max_amount.minor()),
        currency: request.max_amount.currency().code().to_owned(),
        valid_from,
        valid_until,
        status: ArmedStatus::AwaitingConfirmation,
        challenge_id: None,
        used_by_authorisation_id: None,
        created_at: now,
        updated_at: now,
    };
    let merchant = merchant_name(txn, row.merchant_party_id).await?;
    let challenge = challenge::issue_challenge_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &core.policy,
        NewChallenge {
            purpose: ChallengePurpose::CardPresent,
            party: holder,
            phone: card.phone.clone(),
            subject: Some(id),
            binding: armed_binding(&row, &merchant)?,
            note: None,
        },
    )
    .await?;
    let mut active: armed_rows::ActiveModel = row.into();
    active.challenge_id = Set(Some(challenge.id.uuid()));
    armed_rows::Entity::insert(active)
        .exec_without_returning(txn)
        .await?;
    let row = armed_rows::Entity::find_by_id(id)
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("armed approval"))?;
    armed_view(txn, &row, now).await
}

pub(super) async fn lock_armed(
    txn: &DatabaseTransaction,
    id: ArmedApprovalId,
) -> CoreResult<armed_rows::Model> {
    armed_rows::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("armed approval"))
}

pub(super) async fn set_armed_status(
    txn: &DatabaseTransaction,
    core: &Core,
    row: &armed_rows::Model,
    status: ArmedStatus,
) -> CoreResult<armed_rows::Model> {
    armed_rows::Entity::update_many()
        .col_expr(armed_rows::Column::Status, Expr::value(status))
        .col_expr(armed_rows::Column::UpdatedAt, Expr::value(core.clock.now()))
        .filter(armed_rows::Column::Id.eq(row.id))
        .filter(armed_rows::Column::Status.eq(row.status))
        .exec(txn)
        .await?;
    lock_armed(txn, ArmedApprovalId::from_uuid(row.id)).await
}

/// The holder withdraws an armed approval before it is used.
#[tracing::instrument(name = "card_present.cancel_armed", skip_all, fields(armed_id = %id))]
pub async fn cancel_armed_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    holder: PartyId,
    id: ArmedApprovalId,
) -> CoreResult<ArmedApproval> {
    let row = lock_armed(txn, id).await?;
    if row.holder_party_id != holder.uuid() {
        return Err(CoreError::NotFound("armed approval"));
    }
    // A window or confirmation that ran out is recorded as such first.
    let now = core.clock.now();
    let effective = armed_view(txn, &row, now).await?.status;
    let row = if effective == ArmedStatus::Expired && row.status != ArmedStatus::Expired {
        if let Some(challenge) = row.challenge_id {
            challenge::close_in_txn(
                txn,
                &core.clock,
                holdfast_core::ids::ChallengeId::from_uuid(challenge),
            )
            .await?;
        }
        set_armed_status(txn, core, &row, ArmedStatus::Expired).await?
    } else {
        row
    };
    let row = match row.status {
        ArmedStatus::Cancelled => row,
        ArmedStatus::AwaitingConfirmation | ArmedStatus::Armed => {
            if let Some(challenge) = row.challenge_id {
                challenge::void_in_txn(
                    txn,
                    &core.clock,
                    holdfast_core::ids::ChallengeId::from_uuid(challenge),
                )
                .await?;
            }
            set_armed_status(txn, core, &row, ArmedStatus::Cancelled).await?
        }
        ArmedStatus::Used => return Err(refuse("used", "cancel the armed approval")),
        ArmedStatus::Denied => return Err(refuse("denied", "cancel the armed approval")),
        ArmedStatus::Expired => return Err(refuse("expired", "cancel the armed approval")),
    };
    armed_view(txn, &row, core.clock.now()).await
}

/// A holder's armed approvals, newest first.
pub async fn armed_approvals_of(
    db: &impl ConnectionTrait,
    core: &Core,
    holder: PartyId,
    page: &Page,
) -> CoreResult<Paged<ArmedApproval>> {
    let select =
        armed_rows::Entity::find().filter(armed_rows::Column::HolderPartyId.eq(holder.uuid()));
    let rows = page
        .apply(
            select,
            armed_rows::Column::CreatedAt,
            armed_rows::Column::Id,
        )
        .all(db)
        .await?;
    let rows = page.finish(rows, |row| (row.created_at, row.id));
    let now = core.clock.now();
    let mut list = Vec::with_capacity(rows.items.len());
    for row in &rows.items {
        list.push(armed_view(db, row, now).await?);
    }
    Ok(Paged {
        items: list,
        next_cursor: rows.next_cursor,
    })
}

// ---------------------------------------------------------------------------------------
// The phone's answer
// ---------------------------------------------------------------------------------------
