//! Capturing or voiding an approved authorisation, and the lists terminals and holders read.

use super::*;
use holdfast_core::paging::{ListFilter, Page, Paged};
use sea_orm::Select;

/// The terminal's view of one of its authorisations, as it stands now.
pub async fn get(
    db: &impl ConnectionTrait,
    core: &Core,
    terminal: PartyId,
    reference: &str,
) -> CoreResult<Authorisation> {
    let row = find_by_reference(db, terminal, reference)
        .await?
        .ok_or(CoreError::NotFound("authorisation"))?;
    view_of(db, &row, false, core.clock.now()).await
}

/// The merchant takes the money of an approved authorisation: all of it, or less (the rest
/// returns to the card). Its withdrawal account receives the amount minus the card
/// institution's fee. Capturing again the same amount is a no-op.
#[tracing::instrument(name = "card_present.capture", skip_all, fields(case_id = tracing::field::Empty))]
pub async fn capture_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    terminal: PartyId,
    reference: &str,
    amount: Option<Money>,
) -> CoreResult<Authorisation> {
    let row = lock_by_reference(txn, terminal, reference).await?;
    let row = refresh_in_txn(txn, core, row).await?;
    let authorised = money_of(row.amount, &row.currency)?;
    let amount = amount.unwrap_or(authorised);
    if row.status == AuthorisationStatus::Captured
        && row.captured_amount.map(|m| m.0) == Some(amount.minor())
    {
        return view_of(txn, &row, false, core.clock.now()).await;
    }
    if row.status != AuthorisationStatus::Approved {
        return Err(refuse(row.status.as_str(), "capture the payment"));
    }
    if amount.is_zero() || !matches!(amount.checked_cmp(&authorised), Ok(order) if order.is_le()) {
        return Err(CoreError::invalid(
            "a capture is for more than zero and at most the authorised amount, in its currency",
        ));
    }
    let hold_id = row
        .hold_id
        .map(HoldId::from_uuid)
        .ok_or_else(|| CoreError::invalid("the authorisation holds no money"))?;
    let hold = holds::get_hold(txn, hold_id).await?;
    let currency = amount.currency();
    let fee = match (
        hold.mode,
        funding::get_institution(txn, hold.institution).await,
    ) {
        (HoldMode::Reserve, Ok(institution)) => amount.share_at(institution.card_fee)?,
        _ => Money::zero(currency),
    };
    let merchant = PartyId::from_uuid(row.merchant_party_id);
    let withdrawal =
        funding::withdrawal_account_in_txn(txn, &core.clock, merchant, currency).await?;
    let mut payouts = vec![Payout {
        account: withdrawal.id,
        amount: amount.checked_sub(&fee)?,
    }];
    if !fee.is_zero() {
        let fee_account = ledger::get_or_open_keyed_account_in_txn(
            txn,
            &core.clock,
            NewAccount {
                key: Some(keys::institution_fee(hold.institution, currency)),
                kind: AccountKind::InstitutionFee,
                owner: hold.institution,
                institution: None,
                currency,
                credit_limit: Money::zero(currency),
                credit_class: None,
            },
        )
        .await?;
        payouts.push(Payout {
            account: fee_account.id,
            amount: fee,
        });
    }
    holds::post_hold_in_txn(
        txn,
        &core.clock,
        hold_id,
        &format!("card_present:{}:capture", row.id),
        amount,
        &payouts,
    )
    .await?;
    holdfast_core::timers::cancel_in_txn(txn, CAPTURE_DEADLINE_TIMER, row.id).await?;
    let captured = apply(
        txn,
        core,
        &row,
        Change {
            status: Some(AuthorisationStatus::Captured),
            captured: Some(MinorUnits(amount.minor())),
            ..Change::default()
        },
    )
    .await?;
    if let Some(card) = row.card_id {
        let card = cards::get_card(txn, CardId::from_uuid(card)).await?;
        let merchant_name = merchant_name(txn, row.merchant_party_id).await?;
        text_holder(
            txn,
            core,
            &card,
            format!(
                "Holdfast: {amount} paid to {merchant_name} with card {} (approval {}).",
                row.card_masked,
                row.approval_code.clone().unwrap_or_default()
            ),
        )
        .await?;
    }
    view_of(txn, &captured, false, core.clock.now()).await
}

/// The terminal cancels an authorisation it will not capture: a pending phone question is
/// withdrawn, a hold returns. Voiding again is a no-op.
#[tracing::instrument(name = "card_present.void", skip_all, fields(case_id = tracing::field::Empty))]
pub async fn void_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    terminal: PartyId,
    reference: &str,
) -> CoreResult<Authorisation> {
    let row = lock_by_reference(txn, terminal, reference).await?;
    let row = refresh_in_txn(txn, core, row).await?;
    let voided = match row.status {
        AuthorisationStatus::Voided => row,
        AuthorisationStatus::ChallengeRequired => {
            if let Some(challenge) = row.challenge_id {
                challenge::void_in_txn(
                    txn,
                    &core.clock,
                    holdfast_core::ids::ChallengeId::from_uuid(challenge),
                )
                .await?;
            }
            apply(
                txn,
                core,
                &row,
                Change {
                    status: Some(AuthorisationStatus::Voided),
                    ..Change::default()
                },
            )
            .await?
        }
        AuthorisationStatus::Approved => {
            if let Some(hold) = row.hold_id {
                holds::void_hold_in_txn(
                    txn,
                    &core.clock,
                    HoldId::from_uuid(hold),
                    &format!("card_present:{}:void", row.id),
                )
                .await?;
            }
            holdfast_core::timers::cancel_in_txn(txn, CAPTURE_DEADLINE_TIMER, row.id).await?;
            apply(
                txn,
                core,
                &row,
                Change {
                    status: Some(AuthorisationStatus::Voided),
                    ..Change::default()
                },
            )
            .await?
        }
        other => return Err(refuse(other.as_str(), "void the payment")),
    };
    view_of(txn, &voided, false, core.clock.now()).await
}

/// The newest authorisations of a terminal, in the filter's status and created in its date
/// range.
pub async fn authorisations_of_terminal(
    db: &impl ConnectionTrait,
    core: &Core,
    terminal: PartyId,
    filter: &ListFilter<AuthorisationStatus>,
    page: &Page,
) -> CoreResult<Paged<Authorisation>> {
    let select =
        auth_rows::Entity::find().filter(auth_rows::Column::TerminalPartyId.eq(terminal.uuid()));
    page_of_authorisations(db, core, select, false, filter, page).await
}

/// The newest authorisations asked on a holder's cards, with the pending phone confirmations.
pub async fn authorisations_of_holder(
    db: &impl ConnectionTrait,
    core: &Core,
    holder: PartyId,
    filter: &ListFilter<AuthorisationStatus>,
    page: &Page,
) -> CoreResult<Paged<Authorisation>> {
    let cards: Vec<Uuid> = cards::cards_of_holder(db, holder)
        .await?
        .into_iter()
        .map(|c| c.id.uuid())
        .collect();
    if cards.is_empty() {
        return Ok(Paged::empty());
    }
    let select = auth_rows::Entity::find().filter(auth_rows::Column::CardId.is_in(cards));
    page_of_authorisations(db, core, select, true, filter, page).await
}

async fn page_of_authorisations(
    db: &impl ConnectionTrait,
    core: &Core,
    mut select: Select<auth_rows::Entity>,
    for_holder: bool,
    filter: &ListFilter<AuthorisationStatus>,
    page: &Page,
) -> CoreResult<Paged<Authorisation>> {
    select = select.filter(filter.created.condition(auth_rows::Column::CreatedAt));
    if let Some(status) = filter.state {
        select = select.filter(auth_rows::Column::Status.eq(status));
    }
    let rows = page
        .apply(select, auth_rows::Column::CreatedAt, auth_rows::Column::Id)
        .all(db)
        .await?;
    let rows = page.finish(rows, |row| (row.created_at, row.id));
    let now = core.clock.now();
    let mut list = Vec::with_capacity(rows.items.len());
    for row in &rows.items {
        list.push(view_of(db, row, for_holder, now).await?);
    }
    Ok(Paged {
        items: list,
        next_cursor: rows.next_cursor,
    })
}

// ---------------------------------------------------------------------------------------
// Armed approvals
// ---------------------------------------------------------------------------------------
