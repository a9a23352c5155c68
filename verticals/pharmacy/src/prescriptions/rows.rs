//! A prescription loaded with its case, and the steps every use case shares: locking, syncing
//! the state with the escrow case, saving, the timeline, texts to the patient and notices.

use super::*;

/// A prescription's row with what it depends on: its items and its escrow case.
pub(crate) struct Loaded {
    pub row: prescriptions::Model,
    pub case: Option<EscrowCase>,
}

impl Loaded {
    pub fn number(&self) -> PrescriptionNumber {
        PrescriptionNumber::from_stored(self.row.number.clone())
    }

    /// The state as of `now`: the stored state, moved on by its escrow case (a confirmed
    /// payment, a settlement the patient approved or nobody disputed) and by the clock (a
    /// validity that ended, a consent request nobody answered) — before the use case or the
    /// timer that will write it down.
    pub fn state_at(&self, now: DateTime<Utc>) -> PrescriptionState {
        let state = effective_state(self.row.state, self.case.as_ref().map(|c| c.state));
        if state.is_undispensed() && now >= self.row.expires_at {
            return PrescriptionState::Expired;
        }
        if state == PrescriptionState::AwaitingConsent
            && self.row.consent_expires_at.is_none_or(|at| now >= at)
        {
            return PrescriptionState::Issued;
        }
        state
    }

    pub fn price(&self) -> PharmacyResult<Option<Money>> {
        money_of(self.row.price, self.row.currency.as_deref())
    }
}

pub(super) fn money_of(
    minor: Option<MinorUnits>,
    currency: Option<&str>,
) -> PharmacyResult<Option<Money>> {
    match (minor, currency) {
        (Some(minor), Some(code)) => Ok(Some(Money::from_minor(
            minor.0,
            Currency::from_str(code).map_err(CoreError::from)?,
        )?)),
        _ => Ok(None),
    }
}

/// Where the prescription stands given its escrow case's state.
pub fn effective_state(stored: PrescriptionState, case: Option<CaseState>) -> PrescriptionState {
    use PrescriptionState as P;
    match (stored, case) {
        (P::PaymentPending, Some(CaseState::AwaitingOrderConfirmation)) => P::PaymentPending,
        (
            P::PaymentPending,
            Some(
                CaseState::Denied | CaseState::Expired | CaseState::Cancelled | CaseState::Refused,
            ),
        ) => P::Priced,
        (P::PaymentPending, Some(_)) => P::Paid,
        (P::Dispensed, Some(CaseState::Settled)) => P::Settled,
        (stored, _) => stored,
    }
}

pub(crate) async fn find_row(
    db: &impl ConnectionTrait,
    number: &PrescriptionNumber,
) -> PharmacyResult<prescriptions::Model> {
    prescriptions::Entity::find()
        .filter(prescriptions::Column::Number.eq(number.compact()))
        .one(db)
        .await?
        .ok_or_else(|| CoreError::NotFound("prescription").into())
}

pub(crate) async fn load(
    db: &impl ConnectionTrait,
    row: prescriptions::Model,
) -> PharmacyResult<Loaded> {
    let case = match row.case_id {
        Some(id) => Some(escrow::get_case(db, holdfast_core::ids::CaseId::from_uuid(id)).await?),
        None => None,
    };
    Ok(Loaded { row, case })
}

/// Locks the prescription, then its escrow case (the order every use case and timer
/// follows), and writes down what the case and the clock changed meanwhile.
pub(crate) async fn lock_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    id: Uuid,
) -> PharmacyResult<Loaded> {
    let mut loaded = lock_raw_in_txn(txn, id).await?;
    sync_in_txn(txn, core, &mut loaded).await?;
    Ok(loaded)
}

/// Locks the prescription, then its escrow case, as they stand.
pub(crate) async fn lock_raw_in_txn(txn: &DatabaseTransaction, id: Uuid) -> PharmacyResult<Loaded> {
    // The use case's span names the prescription by its id, never by its number.
    tracing::Span::current().record("prescription_id", tracing::field::display(id));
    let row = prescriptions::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("prescription"))?;
    let case = match row.case_id {
        Some(id) => {
            Some(escrow::lock_case_in_txn(txn, holdfast_core::ids::CaseId::from_uuid(id)).await?)
        }
        None => None,
    };
    Ok(Loaded { row, case })
}

pub(crate) async fn lock_by_number_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    number: &PrescriptionNumber,
) -> PharmacyResult<Loaded> {
    let id = find_row(txn, number).await?.id;
    lock_in_txn(txn, core, id).await
}

/// Writes down a state the escrow case or an unanswered consent request moved it to.
pub(crate) async fn sync_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    loaded: &mut Loaded,
) -> PharmacyResult<()> {
    let now = core.clock.now();
    let stored = loaded.row.state;
    if stored == PrescriptionState::AwaitingConsent
        && loaded.row.consent_expires_at.is_none_or(|at| now >= at)
    {
        crate::claims::withdraw_consent_request_in_txn(txn, core, loaded, "consent_lapsed").await?;
        return Ok(());
    }
    let target = effective_state(stored, loaded.case.as_ref().map(|c| c.state));
    if target == stored {
        return Ok(());
    }
    let at = loaded.case.as_ref().map_or(now, |c| c.updated_at);
    let kind = match target {
        PrescriptionState::Paid => "payment_confirmed",
        PrescriptionState::Priced => {
            // Nothing is held any more: the next payment opens a new case.
            loaded.row.case_id = None;
            loaded.row.payment_method = None;
            loaded.row.installment_months = None;
            "payment_lapsed"
        }
        _ => "settled",
    };
    loaded.row.state = target;
    save_in_txn(txn, core, &loaded.row, stored).await?;
    record_event_at(
        txn,
        loaded.row.id,
        kind,
        Some(stored),
        Some(target),
        None,
        None,
        at,
    )
    .await?;
    if loaded.row.case_id.is_none() {
        loaded.case = None;
    }
    Ok(())
}

/// Writes the row's mutable columns, guarded by the state they were computed from.
pub(crate) async fn save_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: &prescriptions::Model,
    from: PrescriptionState,
) -> PharmacyResult<()> {
    let result = prescriptions::Entity::update_many()
        .set(prescriptions::ActiveModel {
            state: Set(row.state),
            routed_drugstore_party_id: Set(row.routed_drugstore_party_id),
            holder_drugstore_party_id: Set(row.holder_drugstore_party_id),
            claim_secret_hash: Set(row.claim_secret_hash.clone()),
            claimed_at: Set(row.claimed_at),
            consent_challenge_id: Set(row.consent_challenge_id),
            consent_expires_at: Set(row.consent_expires_at),
            price: Set(row.price),
            commission: Set(row.commission),
            currency: Set(row.currency.clone()),
            payment_method: Set(row.payment_method),
            installment_months: Set(row.installment_months),
            case_id: Set(row.case_id),
            dispensed_at: Set(row.dispensed_at),
            dispensed_by_party_id: Set(row.dispensed_by_party_id),
            handover: Set(row.handover),
            updated_at: Set(core.clock.now()),
            ..Default::default()
        })
        .filter(prescriptions::Column::Id.eq(row.id))
        .filter(prescriptions::Column::State.eq(from))
        .exec(txn)
        .await?;
    if result.rows_affected != 1 {
        // The row lock makes this unreachable; the guard keeps it so without one.
        return Err(CoreError::Busy.into());
    }
    Ok(())
}

pub const MAX_DETAIL_CHARS: usize = 300;

/// Adds a line to the prescription's history. `detail` must never hold content.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record_event_at(
    txn: &DatabaseTransaction,
    prescription: Uuid,
    kind: &str,
    from: Option<PrescriptionState>,
    to: Option<PrescriptionState>,
    actor: Option<PartyId>,
    detail: Option<String>,
    at: DateTime<Utc>,
) -> PharmacyResult<()> {
    prescription_events::Entity::insert(prescription_events::ActiveModel {
        id: Set(Uuid::now_v7()),
        prescription_id: Set(prescription),
        kind: Set(kind.to_owned()),
        from_state: Set(from.map(|s| s.as_str().to_owned())),
        to_state: Set(to.map(|s| s.as_str().to_owned())),
        actor_party_id: Set(actor.map(|a| a.uuid())),
        detail: Set(detail.map(|d| d.chars().take(MAX_DETAIL_CHARS).collect())),
        at: Set(at),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Moves the prescription to `to`, writes it, and records the step.
pub(crate) async fn transition_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    loaded: &mut Loaded,
    to: PrescriptionState,
    kind: &str,
    actor: Option<PartyId>,
    detail: Option<String>,
) -> PharmacyResult<()> {
    let from = loaded.row.state;
    loaded.row.state = to;
    save_in_txn(txn, core, &loaded.row, from).await?;
    record_event_at(
        txn,
        loaded.row.id,
        kind,
        Some(from),
        Some(to),
        actor,
        detail,
        core.clock.now(),
    )
    .await
}

/// Texts the patient on the phone of the medical card it was prescribed to. The text names
/// the prescription number and states, never its content.
pub(crate) async fn text_patient_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: &prescriptions::Model,
    text: String,
) -> PharmacyResult<()> {
    let card = cards::get_card(txn, CardId::from_uuid(row.patient_card_id)).await?;
    outbox::enqueue_phone_in_txn(
        txn,
        &core.clock,
        PhoneMessage {
            to: card.phone,
            body: text,
            challenge: None,
        },
    )
    .await?;
    Ok(())
}

/// Tells a party (a drugstore, a prescriber) through its feed and webhooks; the payload names
/// the prescription number and state only.
pub(crate) async fn notify_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    party: PartyId,
    kind: &str,
    loaded: &Loaded,
) -> PharmacyResult<()> {
    events::publish_in_txn(
        txn,
        &core.clock,
        party,
        kind,
        serde_json::json!({
            "prescription_number": loaded.number(),
            "state": loaded.row.state,
        }),
    )
    .await?;
    Ok(())
}
