//! The holder's answers on the phone, and the capture deadline's timer.

use super::*;

/// Answers a `card_present` challenge, as the holder's phone does: for a terminal's
/// authorisation (approve places the hold; deny or an expired code declines it) or for an
/// approval being armed.
#[tracing::instrument(name = "card_present.answer", skip_all, fields(challenge_id = %challenge_id, case_id = tracing::field::Empty))]
pub async fn answer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    challenge_id: holdfast_core::ids::ChallengeId,
    code: &str,
    decision: Decision,
) -> CoreResult<Answered> {
    challenge::parse_code(code)?;
    let unlocked = challenge::get_challenge(txn, challenge_id).await?;
    let subject = unlocked
        .subject
        .filter(|_| unlocked.purpose == ChallengePurpose::CardPresent)
        .ok_or(CoreError::NotFound("challenge"))?;
    if auth_rows::Entity::find_by_id(subject)
        .one(txn)
        .await?
        .is_some()
    {
        answer_authorisation_in_txn(txn, core, challenge_id, subject, code, decision).await
    } else {
        answer_armed_in_txn(txn, core, challenge_id, subject, code, decision).await
    }
}

pub(super) async fn answer_authorisation_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    challenge_id: holdfast_core::ids::ChallengeId,
    subject: Uuid,
    code: &str,
    decision: Decision,
) -> CoreResult<Answered> {
    // Lock order: the authorisation, then its challenge, then (placing it) the hold.
    let row = lock_by_id(txn, AuthorisationId::from_uuid(subject)).await?;
    let challenge = challenge::lock_challenge_in_txn(txn, challenge_id).await?;
    if row.challenge_id != Some(challenge_id.uuid()) {
        return Err(CoreError::NotFound("challenge"));
    }
    let card_id = row
        .card_id
        .map(CardId::from_uuid)
        .ok_or(CoreError::NotFound("card"))?;
    let card = cards::get_card(txn, card_id).await?;
    if card.ensure_active().is_err() {
        // Blocked while the phone was asked: nobody may approve with it now.
        if row.status == AuthorisationStatus::ChallengeRequired {
            challenge::void_in_txn(txn, &core.clock, challenge_id).await?;
            apply(txn, core, &row, decline(DeclineReason::CardBlocked)).await?;
        }
        return Ok(Answered::Refused(CoreError::CardNotActive));
    }
    let merchant = merchant_name(txn, row.merchant_party_id).await?;
    let answer = challenge::answer_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &challenge,
        code,
        decision,
        &authorisation_binding(&row, &merchant)?,
    )
    .await?;
    let outcome = match answer {
        Answer::Approved(_) if row.status == AuthorisationStatus::ChallengeRequired => {
            match approve(txn, core, &card, &row, None).await? {
                Some(approved) => approved,
                None => decline_short_of_funds(txn, core, &card, &row).await?,
            }
        }
        Answer::Denied(_) if row.status == AuthorisationStatus::ChallengeRequired => {
            apply(txn, core, &row, decline(DeclineReason::DeniedOnPhone)).await?
        }
        Answer::Expired(_) => {
            if row.status == AuthorisationStatus::ChallengeRequired {
                apply(txn, core, &row, decline(DeclineReason::ConfirmationExpired)).await?;
            }
            return Ok(Answered::Refused(CoreError::ChallengeExpired));
        }
        Answer::Locked => {
            if row.status == AuthorisationStatus::ChallengeRequired {
                apply(txn, core, &row, decline(DeclineReason::ConfirmationLocked)).await?;
            }
            return Ok(Answered::Refused(CoreError::ChallengeLocked));
        }
        Answer::Approved(_) | Answer::Denied(_) => {
            // The terminal voided it while the phone was asked; the challenge was voided too,
            // so this is unreachable, but an answer must never revive it.
            return Ok(Answered::Refused(CoreError::ChallengeClosed {
                status: row.status.as_str(),
            }));
        }
        refused => {
            return Ok(Answered::Refused(
                challenge::answer_error(&refused).unwrap_or(CoreError::ChallengeNotAnswerable),
            ));
        }
    };
    let view = view_of(txn, &outcome, true, core.clock.now()).await?;
    Ok(Answered::Applied(serde_json::json!({
        "authorisation": view,
    })))
}

pub(super) async fn answer_armed_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    challenge_id: holdfast_core::ids::ChallengeId,
    subject: Uuid,
    code: &str,
    decision: Decision,
) -> CoreResult<Answered> {
    let row = lock_armed(txn, ArmedApprovalId::from_uuid(subject)).await?;
    let challenge = challenge::lock_challenge_in_txn(txn, challenge_id).await?;
    if row.challenge_id != Some(challenge_id.uuid()) {
        return Err(CoreError::NotFound("challenge"));
    }
    let card = cards::get_card(txn, CardId::from_uuid(row.card_id)).await?;
    card.ensure_active()?;
    let merchant = merchant_name(txn, row.merchant_party_id).await?;
    let answer = challenge::answer_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &challenge,
        code,
        decision,
        &armed_binding(&row, &merchant)?,
    )
    .await?;
    let waiting = row.status == ArmedStatus::AwaitingConfirmation;
    let updated = match answer {
        Answer::Approved(_) if waiting => {
            if core.clock.now() >= row.valid_until {
                set_armed_status(txn, core, &row, ArmedStatus::Expired).await?
            } else {
                set_armed_status(txn, core, &row, ArmedStatus::Armed).await?
            }
        }
        Answer::Denied(_) if waiting => {
            set_armed_status(txn, core, &row, ArmedStatus::Denied).await?
        }
        Answer::Expired(_) | Answer::Locked => {
            if waiting {
                set_armed_status(txn, core, &row, ArmedStatus::Expired).await?;
            }
            return Ok(Answered::Refused(
                challenge::answer_error(&answer).unwrap_or(CoreError::ChallengeExpired),
            ));
        }
        Answer::Approved(_) | Answer::Denied(_) => {
            return Ok(Answered::Refused(CoreError::ChallengeClosed {
                status: "cancelled",
            }));
        }
        refused => {
            return Ok(Answered::Refused(
                challenge::answer_error(&refused).unwrap_or(CoreError::ChallengeNotAnswerable),
            ));
        }
    };
    let view = armed_view(txn, &updated, core.clock.now()).await?;
    Ok(Answered::Applied(
        serde_json::json!({ "armed_approval": view }),
    ))
}

// ---------------------------------------------------------------------------------------
// Timers
// ---------------------------------------------------------------------------------------

/// Whether a timer kind is card-present's.
pub fn is_timer(kind: holdfast_core::TimerKind) -> bool {
    kind == CAPTURE_DEADLINE_TIMER
}

/// Locks the authorisation a timer is about (before the timer row).
pub async fn lock_timer_subject_in_txn(txn: &DatabaseTransaction, subject: Uuid) -> CoreResult<()> {
    lock_by_id(txn, AuthorisationId::from_uuid(subject))
        .await
        .map(|_| ())
}

/// An approval never captured in time: its hold returns. One that moved on is left alone.
#[tracing::instrument(name = "card_present.fire_timer", skip_all, fields(kind = %kind, timer_subject = %subject, case_id = tracing::field::Empty))]
pub async fn fire_timer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    kind: holdfast_core::TimerKind,
    subject: Uuid,
) -> CoreResult<()> {
    if !is_timer(kind) {
        return Err(CoreError::invalid(format!(
            "not a card-present timer: {kind}"
        )));
    }
    let row = lock_by_id(txn, AuthorisationId::from_uuid(subject)).await?;
    refresh_in_txn(txn, core, row).await.map(|_| ())
}
