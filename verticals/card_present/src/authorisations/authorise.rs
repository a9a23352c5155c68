//! A terminal asks to authorise a card: the limits per card, an armed approval that matches,
//! the phone asked, and the hold placed once the holder approved.

use super::*;

/// Places the authorisation's hold on the card's funding source, in a savepoint: when the
/// money is not there, nothing of the attempt is kept and `None` comes back.
pub(super) async fn try_hold(
    txn: &DatabaseTransaction,
    core: &Core,
    card: &Card,
    row: &auth_rows::Model,
    valid_until: DateTime<Utc>,
) -> CoreResult<Option<HoldId>> {
    let amount = money_of(row.amount, &row.currency)?;
    let funding = ledger::get_account(txn, card.funding_account).await?;
    let mode = funding::hold_mode(funding.kind)
        .ok_or_else(|| CoreError::invalid("the card's account cannot fund payments"))?;
    let institution = funding
        .institution
        .ok_or_else(|| CoreError::invalid("the funding account has no institution"))?;
    let freezing =
        funding::freezing_account_in_txn(txn, &core.clock, institution, amount.currency()).await?;
    let savepoint = txn.begin().await?;
    let placed = holds::place_hold_in_txn(
        &savepoint,
        &core.clock,
        PlaceHold {
            key: format!("card_present:{}:hold", row.id),
            funding_account: funding.id,
            freezing_account: freezing.id,
            institution,
            amount,
            mode,
            expires_at: Some(valid_until),
            case: None,
        },
    )
    .await;
    match placed {
        Ok(hold) => {
            savepoint.commit().await?;
            Ok(Some(hold.into_inner().id))
        }
        Err(CoreError::InsufficientFunds { .. }) => {
            savepoint.rollback().await?;
            Ok(None)
        }
        Err(other) => Err(other),
    }
}

/// Approves: holds the money until the capture is due, gives an approval code, and tells the
/// holder. `None` when the money is not there; then nothing changed.
pub(super) async fn approve(
    txn: &DatabaseTransaction,
    core: &Core,
    card: &Card,
    row: &auth_rows::Model,
    armed: Option<Uuid>,
) -> CoreResult<Option<auth_rows::Model>> {
    let valid_until = core.clock.now() + Duration::hours(AUTHORISATION_VALIDITY_HOURS);
    let Some(hold) = try_hold(txn, core, card, row, valid_until).await? else {
        return Ok(None);
    };
    let approved = apply(
        txn,
        core,
        row,
        Change {
            status: Some(AuthorisationStatus::Approved),
            armed,
            hold: Some(hold.uuid()),
            approval_code: Some(new_approval_code()),
            valid_until: Some(valid_until),
            ..Change::default()
        },
    )
    .await?;
    holdfast_core::timers::schedule_in_txn(
        txn,
        &core.clock,
        CAPTURE_DEADLINE_TIMER,
        row.id,
        valid_until,
    )
    .await?;
    let merchant = merchant_name(txn, row.merchant_party_id).await?;
    text_holder(
        txn,
        core,
        card,
        format!(
            "Holdfast: card payment of {} to {merchant} approved (card {}, approval {}).",
            money_of(row.amount, &row.currency)?,
            row.card_masked,
            approved.approval_code.clone().unwrap_or_default()
        ),
    )
    .await?;
    Ok(Some(approved))
}

/// The holder approved on the phone but the funding source cannot cover the amount: declined,
/// and the holder (only) is told why.
pub(super) async fn decline_short_of_funds(
    txn: &DatabaseTransaction,
    core: &Core,
    card: &Card,
    row: &auth_rows::Model,
) -> CoreResult<auth_rows::Model> {
    let merchant = merchant_name(txn, row.merchant_party_id).await?;
    text_holder(
        txn,
        core,
        card,
        format!(
            "Holdfast: card payment of {} to {merchant} declined: not enough money available \
             (card {}).",
            money_of(row.amount, &row.currency)?,
            row.card_masked,
        ),
    )
    .await?;
    apply(txn, core, row, decline(DeclineReason::InsufficientFunds)).await
}

/// Counts what a new authorisation of `card` would add to (the one being decided, `except`, is
/// not counted): requests within [`REQUEST_WINDOW_MINUTES`], and of those the questions still
/// open on the phone. The caller holds the card's row lock, so two requests cannot both see room
/// for one.
pub(super) async fn requests_on_card_in_txn(
    txn: &DatabaseTransaction,
    card: &Card,
    except: Uuid,
    now: DateTime<Utc>,
) -> CoreResult<(u64, u64)> {
    let recent = || {
        auth_rows::Entity::find()
            .filter(auth_rows::Column::CardId.eq(card.id.uuid()))
            .filter(
                auth_rows::Column::CreatedAt.gt(now - Duration::minutes(REQUEST_WINDOW_MINUTES)),
            )
            .filter(auth_rows::Column::Id.ne(except))
    };
    let requests = recent().count(txn).await?;
    let open = recent()
        .filter(auth_rows::Column::Status.eq(AuthorisationStatus::ChallengeRequired))
        .filter(auth_rows::Column::ConfirmBy.gt(now))
        .count(txn)
        .await?;
    Ok((requests, open))
}

/// An armed approval that covers this payment now: the holder's, for this merchant, within its
/// window and ceiling. Locked; the one closing soonest is used first.
pub(super) async fn matching_armed_approval(
    txn: &DatabaseTransaction,
    card: &Card,
    row: &auth_rows::Model,
    now: DateTime<Utc>,
) -> CoreResult<Option<armed_rows::Model>> {
    Ok(armed_rows::Entity::find()
        .filter(armed_rows::Column::CardId.eq(card.id.uuid()))
        .filter(armed_rows::Column::MerchantPartyId.eq(row.merchant_party_id))
        .filter(armed_rows::Column::Status.eq(ArmedStatus::Armed))
        .filter(armed_rows::Column::Currency.eq(row.currency.clone()))
        .filter(armed_rows::Column::MaxAmount.gte(row.amount))
        .filter(armed_rows::Column::ValidFrom.lte(now))
        .filter(armed_rows::Column::ValidUntil.gt(now))
        .order_by_asc(armed_rows::Column::ValidUntil)
        .lock_exclusive()
        .one(txn)
        .await?)
}

/// A terminal asks to authorise a card for an amount. The first ask of an authorisation id
/// decides: declined at once (unknown or blocked card, another currency), approved at once (an
/// armed approval matches and the money is there), or `challenge_required` while the holder's
/// phone is asked — whatever the balance, which is only looked at once the holder approved.
/// Asking again with the same id returns where it stands (approved once the phone approved);
/// the same id with another card or amount is refused. A card asked for too often
/// ([`MAX_OPEN_CONFIRMATIONS_PER_CARD`], [`MAX_REQUESTS_PER_CARD_PER_WINDOW`]) refuses a new id
/// with [`CoreError::TooManyAttempts`], records nothing and texts no one.
#[tracing::instrument(name = "card_present.authorise", skip_all, fields(case_id = tracing::field::Empty))]
pub async fn authorise_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    terminal: PartyId,
    request: AuthoriseRequest,
) -> CoreResult<Authorisation> {
    let reference = valid_reference(&request.reference)?;
    if request.amount.is_zero() {
        return Err(CoreError::invalid("an authorisation is for more than zero"));
    }
    let terminal_row = terminal_row(txn, terminal).await?;
    let card = cards::find_by_number(txn, &request.card_number).await?;
    let now = core.clock.now();
    let id = AuthorisationId::new();
    // Claim the id first: whatever happens next happens once.
    let inserted = auth_rows::Entity::insert(auth_rows::ActiveModel {
        id: Set(id.uuid()),
        terminal_party_id: Set(terminal.uuid()),
        merchant_party_id: Set(terminal_row.merchant_party_id),
        reference: Set(reference.clone()),
        card_id: Set(card.as_ref().map(|c| c.id.uuid())),
        card_masked: Set(request.card_number.masked()),
        amount: Set(MinorUnits(request.amount.minor())),
        currency: Set(request.amount.currency().code().to_owned()),
        status: Set(AuthorisationStatus::ChallengeRequired),
        decline_reason: Set(None),
        challenge_id: Set(None),
        armed_approval_id: Set(None),
        hold_id: Set(None),
        approval_code: Set(None),
        captured_amount: Set(None),
        confirm_by: Set(None),
        valid_until: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict_do_nothing_on([
        auth_rows::Column::TerminalPartyId,
        auth_rows::Column::Reference,
    ])
    .exec_without_returning(txn)
    .await?;
    if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
        let existing = lock_by_reference(txn, terminal, &reference).await?;
        let same = existing.card_id == card.as_ref().map(|c| c.id.uuid())
            && existing.card_masked == request.card_number.masked()
            && existing.amount.0 == request.amount.minor()
            && existing.currency == request.amount.currency().code();
        if !same {
            return Err(CoreError::IdempotencyConflict);
        }
        let current = refresh_in_txn(txn, core, existing).await?;
        return view_of(txn, &current, false, core.clock.now()).await;
    }
    let row = lock_by_id(txn, id).await?;
    let decided = decide_in_txn(txn, core, row, card, request.amount).await?;
    view_of(txn, &decided, false, core.clock.now()).await
}

pub(super) async fn decide_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: auth_rows::Model,
    card: Option<Card>,
    amount: Money,
) -> CoreResult<auth_rows::Model> {
    let Some(card) = card else {
        return apply(txn, core, &row, decline(DeclineReason::CardUnknown)).await;
    };
    // From here on nearly every outcome texts the holder: count the card's requests first,
    // under its row lock, so that concurrent requests are counted one after another.
    let card = cards::lock_by_number_in_txn(txn, &card.number).await?;
    let now = core.clock.now();
    let (requests, open) = requests_on_card_in_txn(txn, &card, row.id, now).await?;
    if requests >= MAX_REQUESTS_PER_CARD_PER_WINDOW {
        return Err(CoreError::TooManyAttempts);
    }
    let merchant = merchant_name(txn, row.merchant_party_id).await?;
    if card.ensure_active().is_err() {
        // Whoever holds a lost card learns nothing; its holder is told at once.
        text_holder(
            txn,
            core,
            &card,
            format!(
                "Holdfast: a card payment of {amount} to {merchant} was attempted with your \
                 blocked card {} and declined.",
                card.number.masked()
            ),
        )
        .await?;
        return apply(txn, core, &row, decline(DeclineReason::CardBlocked)).await;
    }
    let funding = ledger::get_account(txn, card.funding_account).await?;
    if funding.currency != amount.currency() {
        return apply(txn, core, &row, decline(DeclineReason::CurrencyMismatch)).await;
    }
    // No look at the balance here: a decline before the phone is asked would tell the terminal,
    // amount by amount, what the holder has.
    if let Some(armed) = matching_armed_approval(txn, &card, &row, now).await? {
        // When the money is not there nothing changed: the phone is asked below as for any
        // payment, so the terminal hears the same as without an armed approval, and the
        // approval stays armed.
        if let Some(approved) = approve(txn, core, &card, &row, Some(armed.id)).await? {
            let used = armed_rows::Entity::update_many()
                .col_expr(armed_rows::Column::Status, Expr::value(ArmedStatus::Used))
                .col_expr(
                    armed_rows::Column::UsedByAuthorisationId,
                    Expr::value(Some(row.id)),
                )
                .col_expr(armed_rows::Column::UpdatedAt, Expr::value(now))
                .filter(armed_rows::Column::Id.eq(armed.id))
                .filter(armed_rows::Column::Status.eq(ArmedStatus::Armed))
                .exec(txn)
                .await?;
            if used.rows_affected != 1 {
                // The row lock makes this unreachable; without it, all of this rolls back.
                return Err(CoreError::Conflict);
            }
            return Ok(approved);
        }
    }
    if open >= MAX_OPEN_CONFIRMATIONS_PER_CARD {
        return Err(CoreError::TooManyAttempts);
    }
    let binding = authorisation_binding(&row, &merchant)?;
    let challenge = challenge::issue_challenge_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &core.policy,
        NewChallenge {
            purpose: ChallengePurpose::CardPresent,
            party: card.holder,
            phone: card.phone.clone(),
            subject: Some(row.id),
            binding,
            note: Some("deny if you are not paying at this shop now".to_owned()),
        },
    )
    .await?;
    apply(
        txn,
        core,
        &row,
        Change {
            challenge: Some(challenge.id.uuid()),
            confirm_by: Some(challenge.expires_at),
            ..Change::default()
        },
    )
    .await
}

/// Brings a locked authorisation up to date with the clock: an unanswered phone past its
/// deadline declines it; an approval past its validity expires and its hold returns.
pub(super) async fn refresh_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: auth_rows::Model,
) -> CoreResult<auth_rows::Model> {
    let now = core.clock.now();
    match row.status {
        AuthorisationStatus::ChallengeRequired if row.confirm_by.is_some_and(|t| now >= t) => {
            if let Some(challenge) = row.challenge_id {
                challenge::close_in_txn(
                    txn,
                    &core.clock,
                    holdfast_core::ids::ChallengeId::from_uuid(challenge),
                )
                .await?;
            }
            apply(txn, core, &row, decline(DeclineReason::ConfirmationExpired)).await
        }
        AuthorisationStatus::Approved if row.valid_until.is_some_and(|t| now >= t) => {
            expire_in_txn(txn, core, row).await
        }
        _ => Ok(row),
    }
}

pub(super) async fn expire_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: auth_rows::Model,
) -> CoreResult<auth_rows::Model> {
    if let Some(hold) = row.hold_id {
        holds::expire_hold_in_txn(txn, &core.clock, HoldId::from_uuid(hold)).await?;
    }
    holdfast_core::timers::cancel_in_txn(txn, CAPTURE_DEADLINE_TIMER, row.id).await?;
    apply(
        txn,
        core,
        &row,
        Change {
            status: Some(AuthorisationStatus::Expired),
            ..Change::default()
        },
    )
    .await
}
