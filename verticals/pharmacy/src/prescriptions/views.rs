//! Reading prescriptions: who may read what (every read of content is audited), the views
//! and receipts, lists and the history.

use super::*;
use holdfast_core::paging::{Cursor, Page, Paged};

/// Whether `actor` may read the content, and how the read is logged. A drugstore reads only a
/// prescription sent to it by the patient's choice, or one it holds the claim to (with the
/// claim secret).
pub(super) fn may_read(
    loaded: &Loaded,
    actor: &Actor,
    secret: Option<&str>,
    now: DateTime<Utc>,
) -> PharmacyResult<()> {
    let row = &loaded.row;
    match actor {
        Actor::Operator { .. } => Ok(()),
        Actor::Prescriber { hospital, .. } if hospital.hospital_id.uuid() == row.hospital_id => {
            Ok(())
        }
        Actor::Patient { party, .. } if party.uuid() == row.patient_party_id => Ok(()),
        Actor::Drugstore { drugstore, .. } => {
            let state = loaded.state_at(now);
            let mine = Some(drugstore.drugstore_id.uuid());
            if state == PrescriptionState::Routed && row.routed_drugstore_party_id == mine {
                return Ok(());
            }
            if row.holder_drugstore_party_id != mine || !state.is_claimed() {
                return Err(PharmacyError::NotHeld);
            }
            crate::claims::check_secret(row, secret)
        }
        _ => Err(CoreError::NotFound("prescription").into()),
    }
}

/// Reads a prescription with its content (`what` = "content" or "fhir"), writing the read to
/// the patient's access log in the same transaction.
#[tracing::instrument(name = "pharmacy.read", skip_all, fields(prescription_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub(crate) async fn read_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    actor: &Actor,
    number: &PrescriptionNumber,
    secret: Option<&str>,
    what: Access,
) -> PharmacyResult<Loaded> {
    let loaded = load(txn, find_row(txn, number).await?).await?;
    may_read(&loaded, actor, secret, core.clock.now())?;
    audit::record_in_txn(txn, core, actor, &loaded.row, what).await?;
    Ok(loaded)
}

/// One prescription with its content, for whoever may read it; the read is logged (so it is
/// a write, in the caller's transaction).
pub async fn read_view_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    actor: &Actor,
    number: &PrescriptionNumber,
    secret: Option<&str>,
) -> PharmacyResult<PrescriptionView> {
    let loaded = read_in_txn(txn, core, actor, number, secret, Access::Content).await?;
    let view = view_of(txn, &loaded, actor, core.clock.now()).await?;
    Ok(view)
}

pub(crate) async fn items_of(
    db: &impl ConnectionTrait,
    prescription: Uuid,
) -> PharmacyResult<Vec<items::Model>> {
    Ok(items::Entity::find()
        .filter(items::Column::PrescriptionId.eq(prescription))
        .order_by_asc(items::Column::LineNo)
        .all(db)
        .await?)
}

pub(super) async fn named_drugstore(
    db: &impl ConnectionTrait,
    id: Option<Uuid>,
) -> PharmacyResult<Option<Named>> {
    match id {
        Some(id) => Ok(Some(Named {
            id,
            name: parties::name_of(db, PartyId::from_uuid(id)).await?,
        })),
        None => Ok(None),
    }
}

pub(crate) fn terms_of(method: PaymentMethod, months: Option<i32>) -> Option<String> {
    match method {
        PaymentMethod::LumpSum => Some("lump sum".to_owned()),
        PaymentMethod::Installments => {
            Some(format!("{} monthly installments", months.unwrap_or(0)))
        }
        PaymentMethod::Cash => Some("cash at the counter".to_owned()),
    }
}

/// The payment as `viewer` sees it: a drugstore is shown the order number only once the
/// patient handed it over.
pub(super) fn payment_view(loaded: &Loaded, viewer: &Actor) -> Option<PaymentView> {
    let row = &loaded.row;
    let method = row.payment_method?;
    let is_drugstore = matches!(viewer, Actor::Drugstore { .. });
    let handed_over = row.dispensed_at.is_some();
    Some(PaymentView {
        method,
        installment_months: row.installment_months,
        terms: terms_of(method, row.installment_months),
        order_number: loaded
            .case
            .as_ref()
            .filter(|_| !is_drugstore || handed_over)
            .map(|c| c.order_number.clone()),
        escrow_state: loaded.case.as_ref().map(|c| c.state),
    })
}

/// The confirmation the patient's phone is asked for now, for the patient only.
pub(super) async fn pending_for(
    db: &impl ConnectionTrait,
    loaded: &Loaded,
    viewer: &Actor,
    state: PrescriptionState,
) -> PharmacyResult<Option<PendingConfirmation>> {
    let is_patient = matches!(
        viewer,
        Actor::Patient { party, .. } if party.uuid() == loaded.row.patient_party_id
    );
    if is_patient {
        pending_confirmation(db, loaded, state).await
    } else {
        Ok(None)
    }
}

/// Where the prescription stands, as `viewer` sees it, without its content: the answer to a
/// change, which needs no entry in the access log.
pub(crate) async fn receipt_of(
    db: &impl ConnectionTrait,
    loaded: &Loaded,
    viewer: &Actor,
    now: DateTime<Utc>,
) -> PharmacyResult<PrescriptionReceipt> {
    let row = &loaded.row;
    let state = loaded.state_at(now);
    Ok(PrescriptionReceipt {
        prescription_number: loaded.number(),
        state,
        valid_from: row.issued_at,
        valid_until: row.expires_at,
        routed_to: named_drugstore(db, row.routed_drugstore_party_id).await?,
        held_by: named_drugstore(db, row.holder_drugstore_party_id)
            .await?
            .filter(|_| state != PrescriptionState::Issued),
        price: loaded.price()?,
        payment: payment_view(loaded, viewer),
        dispensed_at: row.dispensed_at,
        handover: row.handover,
        pending_confirmation: pending_for(db, loaded, viewer, state).await?,
    })
}

/// The prescription with its content, as `viewer` sees it. Only for a read that was allowed
/// and written to the access log (see [`read_in_txn`]).
pub(crate) async fn view_of(
    db: &impl ConnectionTrait,
    loaded: &Loaded,
    viewer: &Actor,
    now: DateTime<Utc>,
) -> PharmacyResult<PrescriptionView> {
    let row = &loaded.row;
    let state = loaded.state_at(now);
    let hospital = parties::get_hospital(db, HospitalId::from_uuid(row.hospital_id)).await?;
    let card = cards::get_card(db, CardId::from_uuid(row.patient_card_id)).await?;
    let payment = payment_view(loaded, viewer);
    let pending = pending_for(db, loaded, viewer, state).await?;
    Ok(PrescriptionView {
        prescription_number: loaded.number(),
        state,
        hospital: Named {
            id: hospital.hospital_id.uuid(),
            name: hospital.name,
        },
        prescriber: Named {
            id: row.prescriber_party_id,
            name: parties::name_of(db, PartyId::from_uuid(row.prescriber_party_id)).await?,
        },
        patient_card: card.number.masked(),
        valid_from: row.issued_at,
        valid_until: row.expires_at,
        routed_to: named_drugstore(db, row.routed_drugstore_party_id).await?,
        held_by: named_drugstore(db, row.holder_drugstore_party_id)
            .await?
            .filter(|_| state != PrescriptionState::Issued),
        claimed_at: row.claimed_at,
        items: items_of(db, row.id)
            .await?
            .into_iter()
            .map(ItemView::from)
            .collect(),
        notes: row.notes.clone(),
        price: loaded.price()?,
        payment,
        dispensed_at: row.dispensed_at,
        handover: row.handover,
        pending_confirmation: pending,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

pub(super) async fn pending_confirmation(
    db: &impl ConnectionTrait,
    loaded: &Loaded,
    state: PrescriptionState,
) -> PharmacyResult<Option<PendingConfirmation>> {
    let id = match (state, &loaded.case) {
        (PrescriptionState::AwaitingConsent, _) => {
            loaded.row.consent_challenge_id.map(ChallengeId::from_uuid)
        }
        (PrescriptionState::PaymentPending, Some(case)) => case.order_challenge,
        (PrescriptionState::Dispensed, Some(case))
            if case.state == CaseState::SettlementRequested =>
        {
            case.settlement_challenge
        }
        _ => None,
    };
    let Some(id) = id else {
        return Ok(None);
    };
    let challenge = challenge::get_challenge(db, id).await?;
    Ok(
        (challenge.status == ChallengeStatus::Pending).then_some(PendingConfirmation {
            challenge_id: challenge.id,
            purpose: challenge.purpose,
            expires_at: challenge.expires_at,
        }),
    )
}

pub const MAX_PAGE: u64 = 100;

/// Which of the caller's prescriptions a page of [`list_page`] shows: those in a state (as of
/// now: a lapsed validity counts as `expired`), created in a date range.
pub type ListFilter = holdfast_core::paging::ListFilter<PrescriptionState>;

/// A page of the caller's prescriptions, newest first, without content: a prescriber's
/// hospital's, a drugstore's (held or sent to it), a patient's own.
pub async fn list_page(
    db: &impl ConnectionTrait,
    core: &Core,
    actor: &Actor,
    filter: &ListFilter,
    page: &Page,
) -> PharmacyResult<Paged<PrescriptionSummary>> {
    let mut query = prescriptions::Entity::find()
        .filter(filter.created.condition(prescriptions::Column::CreatedAt));
    query = match actor {
        Actor::Prescriber { hospital, .. } => {
            query.filter(prescriptions::Column::HospitalId.eq(hospital.hospital_id.uuid()))
        }
        Actor::Drugstore { drugstore, .. } => query.filter(
            Condition::any()
                .add(
                    prescriptions::Column::HolderDrugstorePartyId.eq(drugstore.drugstore_id.uuid()),
                )
                .add(
                    Condition::all()
                        .add(
                            prescriptions::Column::RoutedDrugstorePartyId
                                .eq(drugstore.drugstore_id.uuid()),
                        )
                        .add(prescriptions::Column::State.eq(PrescriptionState::Routed)),
                ),
        ),
        Actor::Patient { party, .. } => {
            query.filter(prescriptions::Column::PatientPartyId.eq(party.uuid()))
        }
        Actor::Operator { .. } => query,
    };
    let now = core.clock.now();
    let mut found = Vec::new();
    // The state shown is computed (a case, the clock), so filtering by it happens here, over
    // batches read by the same keyset, until one row more than the page is found (so the
    // cursor is given only when another page follows) or the rows run out.
    let mut batch = Page::new(page.kind(), MAX_PAGE, page.cursor().copied());
    'scan: loop {
        let mut rows = batch
            .apply(
                query.clone(),
                prescriptions::Column::CreatedAt,
                prescriptions::Column::Id,
            )
            .all(db)
            .await?;
        let more = rows.len() as u64 > MAX_PAGE;
        rows.truncate(MAX_PAGE as usize);
        let last = rows.last().map(|row| (row.created_at, row.id));
        for row in rows {
            let key = (row.created_at, row.id);
            let loaded = load(db, row).await?;
            let state = loaded.state_at(now);
            // A drugstore's list keeps only what it holds now or was sent.
            if let Actor::Drugstore { drugstore, .. } = actor {
                let mine = Some(drugstore.drugstore_id.uuid());
                let holds = loaded.row.holder_drugstore_party_id == mine && state.is_claimed();
                let routed = loaded.row.routed_drugstore_party_id == mine
                    && state == PrescriptionState::Routed;
                if !holds && !routed {
                    continue;
                }
            }
            if filter.state.is_some_and(|wanted| wanted != state) {
                continue;
            }
            found.push((summary_of(db, &loaded, state).await?, key));
            if found.len() as u64 > page.limit() {
                break 'scan;
            }
        }
        match last {
            Some((created_at, id)) if more => {
                batch = Page::new(
                    page.kind(),
                    MAX_PAGE,
                    Some(Cursor::new(page.kind(), created_at, id)),
                );
            }
            _ => break,
        }
    }
    Ok(page
        .finish(found, |(_, key)| *key)
        .map(|(summary, _)| summary))
}

/// Where one prescription stands, without its content — so nothing is written to the access
/// log: for whoever may read it, and for the drugstore waiting for the patient's answer to
/// its request to open it (with the claim secret it was given).
pub async fn receipt(
    db: &impl ConnectionTrait,
    core: &Core,
    actor: &Actor,
    number: &PrescriptionNumber,
    secret: Option<&str>,
) -> PharmacyResult<PrescriptionReceipt> {
    let loaded = load(db, find_row(db, number).await?).await?;
    let now = core.clock.now();
    let asking = match actor {
        Actor::Drugstore { drugstore, .. } => {
            loaded.state_at(now) == PrescriptionState::AwaitingConsent
                && loaded.row.holder_drugstore_party_id == Some(drugstore.drugstore_id.uuid())
        }
        _ => false,
    };
    if asking {
        crate::claims::check_secret(&loaded.row, secret)?;
    } else {
        may_read(&loaded, actor, secret, now)?;
    }
    receipt_of(db, &loaded, actor, now).await
}

pub(crate) async fn item_count(
    db: &impl ConnectionTrait,
    prescription: Uuid,
) -> PharmacyResult<u64> {
    Ok(items::Entity::find()
        .filter(items::Column::PrescriptionId.eq(prescription))
        .count(db)
        .await?)
}

pub(super) async fn summary_of(
    db: &impl ConnectionTrait,
    loaded: &Loaded,
    state: PrescriptionState,
) -> PharmacyResult<PrescriptionSummary> {
    Ok(PrescriptionSummary {
        prescription_number: loaded.number(),
        state,
        item_count: item_count(db, loaded.row.id).await?,
        valid_until: loaded.row.expires_at,
        held_by: named_drugstore(db, loaded.row.holder_drugstore_party_id)
            .await?
            .filter(|_| state.is_claimed() || state == PrescriptionState::AwaitingConsent),
        price: loaded.price()?,
        created_at: loaded.row.created_at,
    })
}

/// One line of a prescription's history.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PrescriptionHistoryEntry)]
pub struct HistoryEntry {
    pub kind: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

/// The prescription's history, oldest first, with its payment's timeline (`payment.*`), for
/// its patient, its prescriber's hospital, an operator, or the drugstore holding it. It holds
/// no content.
pub async fn history(
    db: &impl ConnectionTrait,
    core: &Core,
    actor: &Actor,
    number: &PrescriptionNumber,
    secret: Option<&str>,
) -> PharmacyResult<Vec<HistoryEntry>> {
    let loaded = load(db, find_row(db, number).await?).await?;
    may_read(&loaded, actor, secret, core.clock.now())?;
    let mut entries: Vec<HistoryEntry> = prescription_events::Entity::find()
        .filter(prescription_events::Column::PrescriptionId.eq(loaded.row.id))
        .order_by_asc(prescription_events::Column::At)
        .order_by_asc(prescription_events::Column::Id)
        .limit(escrow::MAX_EVENTS)
        .all(db)
        .await?
        .into_iter()
        .map(|e| HistoryEntry {
            kind: e.kind,
            from_state: e.from_state,
            to_state: e.to_state,
            detail: e.detail,
            at: e.at,
        })
        .collect();
    if let Some(case) = &loaded.case {
        let case_events: Vec<CaseEvent> = escrow::events(db, case.id).await?;
        entries.extend(case_events.into_iter().map(|e| HistoryEntry {
            kind: format!("payment.{}", e.kind),
            from_state: e.from_state,
            to_state: e.to_state,
            detail: e.detail,
            at: e.at,
        }));
    }
    entries.sort_by_key(|e| e.at);
    Ok(entries)
}

/// Refuses a prescription past its validity.
pub(crate) fn ensure_valid(loaded: &Loaded, now: DateTime<Utc>) -> PharmacyResult<()> {
    match loaded.state_at(now) {
        PrescriptionState::Expired => Err(PharmacyError::Expired),
        PrescriptionState::Cancelled => Err(PharmacyError::Cancelled),
        _ => Ok(()),
    }
}
