//! An authorisation's row and what it shows: its view for the terminal or the holder, looking
//! it up by the terminal's id, and the one step that changes its status, texting the holder.

use super::*;

pub(super) fn money_of(minor: MinorUnits, currency: &str) -> CoreResult<Money> {
    Ok(Money::from_minor(minor.0, Currency::from_str(currency)?)?)
}

/// The binding the holder's phone confirms: amount, merchant, card.
pub(super) fn authorisation_binding(
    row: &auth_rows::Model,
    merchant: &str,
) -> CoreResult<ChallengeBinding> {
    Ok(ChallengeBinding {
        amount: Some(money_of(row.amount, &row.currency)?),
        payee: Some(merchant.to_owned()),
        order_number: None,
        terms: Some(format!("card {} at the shop's terminal", row.card_masked)),
    })
}

pub(super) async fn view_of(
    db: &impl ConnectionTrait,
    row: &auth_rows::Model,
    for_holder: bool,
    now: DateTime<Utc>,
) -> CoreResult<Authorisation> {
    let mut status = row.status;
    let mut decline_reason = row.decline_reason;
    // Shown as it stands now, even before anyone touched it since its deadline.
    if status == AuthorisationStatus::ChallengeRequired && row.confirm_by.is_some_and(|t| now >= t)
    {
        status = AuthorisationStatus::Declined;
        decline_reason = Some(DeclineReason::ConfirmationExpired);
    }
    if !for_holder {
        decline_reason = decline_reason.map(DeclineReason::for_merchant);
    }
    if status == AuthorisationStatus::Approved && row.valid_until.is_some_and(|t| now >= t) {
        status = AuthorisationStatus::Expired;
    }
    let pending_confirmation = match (for_holder, status, row.challenge_id) {
        (true, AuthorisationStatus::ChallengeRequired, Some(id)) => Some(PendingConfirmation {
            challenge_id: holdfast_core::ids::ChallengeId::from_uuid(id),
            expires_at: row.confirm_by.unwrap_or(now),
        }),
        _ => None,
    };
    // Only an approval gives a code.
    let approved = row.approval_code.is_some();
    Ok(Authorisation {
        authorisation_id: row.reference.clone(),
        status,
        decline_reason,
        amount: money_of(row.amount, &row.currency)?,
        card: row.card_masked.clone(),
        merchant_id: PartyId::from_uuid(row.merchant_party_id),
        merchant_name: merchant_name(db, row.merchant_party_id).await?,
        terminal_id: PartyId::from_uuid(row.terminal_party_id),
        approval_code: row.approval_code.clone(),
        approved_by: approved.then(|| {
            if row.armed_approval_id.is_some() {
                ApprovedBy::ArmedApproval
            } else {
                ApprovedBy::Phone
            }
        }),
        confirm_by: (status == AuthorisationStatus::ChallengeRequired)
            .then_some(row.confirm_by)
            .flatten(),
        retry_after_secs: (status == AuthorisationStatus::ChallengeRequired)
            .then_some(RETRY_AFTER_SECS),
        valid_until: (status == AuthorisationStatus::Approved)
            .then_some(row.valid_until)
            .flatten(),
        captured_amount: row
            .captured_amount
            .map(|m| money_of(m, &row.currency))
            .transpose()?,
        pending_confirmation,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

pub(super) async fn find_by_reference(
    db: &impl ConnectionTrait,
    terminal: PartyId,
    reference: &str,
) -> CoreResult<Option<auth_rows::Model>> {
    // No stored id is malformed (authorise checks them), and a NUL byte is not for the
    // database to refuse: a malformed one is simply not found.
    if !well_formed_reference(reference) {
        return Ok(None);
    }
    Ok(auth_rows::Entity::find()
        .filter(auth_rows::Column::TerminalPartyId.eq(terminal.uuid()))
        .filter(auth_rows::Column::Reference.eq(reference))
        .one(db)
        .await?)
}

pub(super) async fn lock_by_reference(
    txn: &DatabaseTransaction,
    terminal: PartyId,
    reference: &str,
) -> CoreResult<auth_rows::Model> {
    if !well_formed_reference(reference) {
        return Err(CoreError::NotFound("authorisation"));
    }
    auth_rows::Entity::find()
        .filter(auth_rows::Column::TerminalPartyId.eq(terminal.uuid()))
        .filter(auth_rows::Column::Reference.eq(reference))
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("authorisation"))
}

pub(super) async fn lock_by_id(
    txn: &DatabaseTransaction,
    id: AuthorisationId,
) -> CoreResult<auth_rows::Model> {
    auth_rows::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("authorisation"))
}

/// The columns a step changes; everything else stays.
#[derive(Default)]
pub(super) struct Change {
    pub(super) status: Option<AuthorisationStatus>,
    pub(super) decline_reason: Option<DeclineReason>,
    pub(super) challenge: Option<Uuid>,
    pub(super) armed: Option<Uuid>,
    pub(super) hold: Option<Uuid>,
    pub(super) approval_code: Option<String>,
    pub(super) captured: Option<MinorUnits>,
    pub(super) confirm_by: Option<DateTime<Utc>>,
    pub(super) valid_until: Option<DateTime<Utc>>,
}

/// Writes a step, guarded by the status it was computed from.
pub(super) async fn apply(
    txn: &DatabaseTransaction,
    core: &Core,
    row: &auth_rows::Model,
    change: Change,
) -> CoreResult<auth_rows::Model> {
    let mut update = auth_rows::Entity::update_many()
        .col_expr(auth_rows::Column::UpdatedAt, Expr::value(core.clock.now()))
        .filter(auth_rows::Column::Id.eq(row.id))
        .filter(auth_rows::Column::Status.eq(row.status));
    if let Some(status) = change.status {
        update = update.col_expr(auth_rows::Column::Status, Expr::value(status));
    }
    if let Some(reason) = change.decline_reason {
        update = update.col_expr(auth_rows::Column::DeclineReason, Expr::value(Some(reason)));
    }
    if let Some(challenge) = change.challenge {
        update = update.col_expr(auth_rows::Column::ChallengeId, Expr::value(Some(challenge)));
    }
    if let Some(armed) = change.armed {
        update = update.col_expr(auth_rows::Column::ArmedApprovalId, Expr::value(Some(armed)));
    }
    if let Some(hold) = change.hold {
        update = update.col_expr(auth_rows::Column::HoldId, Expr::value(Some(hold)));
    }
    if let Some(code) = change.approval_code {
        update = update.col_expr(auth_rows::Column::ApprovalCode, Expr::value(Some(code)));
    }
    if let Some(captured) = change.captured {
        update = update.col_expr(
            auth_rows::Column::CapturedAmount,
            Expr::value(Some(captured)),
        );
    }
    if let Some(at) = change.confirm_by {
        update = update.col_expr(auth_rows::Column::ConfirmBy, Expr::value(Some(at)));
    }
    if let Some(at) = change.valid_until {
        update = update.col_expr(auth_rows::Column::ValidUntil, Expr::value(Some(at)));
    }
    let result = update.exec(txn).await?;
    if result.rows_affected != 1 {
        // The row lock makes this unreachable; the guard keeps it so without one.
        return Err(CoreError::Busy);
    }
    let updated = auth_rows::Entity::find_by_id(row.id)
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("authorisation"))?;
    if let Some(status) = change.status
        && status != row.status
    {
        holdfast_core::events::publish_in_txn(
            txn,
            &core.clock,
            PartyId::from_uuid(row.merchant_party_id),
            &format!("card_present.{}", status.as_str()),
            serde_json::json!({
                "authorisation_id": updated.reference,
                "terminal_id": updated.terminal_party_id,
                "status": status,
                "decline_reason": updated.decline_reason.map(DeclineReason::for_merchant),
                "amount": money_of(updated.amount, &updated.currency)?,
                "card": updated.card_masked,
                "approval_code": updated.approval_code,
            }),
        )
        .await?;
    }
    Ok(updated)
}

pub(super) fn decline(reason: DeclineReason) -> Change {
    Change {
        status: Some(AuthorisationStatus::Declined),
        decline_reason: Some(reason),
        ..Change::default()
    }
}

pub(super) async fn text_holder(
    txn: &DatabaseTransaction,
    core: &Core,
    card: &Card,
    body: String,
) -> CoreResult<()> {
    outbox::enqueue_phone_in_txn(
        txn,
        &core.clock,
        PhoneMessage {
            to: card.phone.clone(),
            body,
            challenge: None,
        },
    )
    .await
}
