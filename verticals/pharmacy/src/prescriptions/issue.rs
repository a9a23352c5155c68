//! A prescriber issues a prescription: its items checked, its number drawn, its validity set,
//! routed to a drugstore if the patient chose one.

use super::*;

/// Issues a prescription (a prescriber): for the patient whose medical card number was given,
/// in the pool or sent to the drugstore the patient chose. The answer holds no content: the
/// prescriber reads it back like anyone else, with a logged read.
#[tracing::instrument(name = "pharmacy.issue", skip_all, fields(prescription_id = tracing::field::Empty))]
pub async fn issue_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    actor: &Actor,
    new: NewPrescription,
) -> PharmacyResult<PrescriptionReceipt> {
    let Actor::Prescriber { party, hospital } = actor else {
        return Err(CoreError::Forbidden("this needs the role prescriber").into());
    };
    validate(&new)?;
    let card = cards::find_by_number(txn, &new.card_number)
        .await?
        .ok_or(CoreError::NotFound("card"))?;
    card.ensure_active()?;
    let routed = match new.patient_chosen_drugstore_id {
        Some(id) => Some(parties::get_drugstore(txn, id).await?),
        None => None,
    };
    // The hospital's sequence: its row lock makes numbers of one hospital follow each other.
    let hospital_row = hospitals::Entity::find_by_id(hospital.hospital_id.uuid())
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("hospital"))?;
    let sequence = u32::try_from(hospital_row.next_sequence).unwrap_or(0);
    hospitals::Entity::update_many()
        .col_expr(
            hospitals::Column::NextSequence,
            sea_orm::sea_query::Expr::value(
                i32::try_from((sequence + 1) % crate::number::SEQUENCE_MODULUS).unwrap_or(0),
            ),
        )
        .filter(hospitals::Column::Id.eq(hospital_row.id))
        .exec(txn)
        .await?;
    let number = unused_number(txn, &hospital_row.code, sequence).await?;

    let now = core.clock.now();
    let expires_at = valid_until(now, new.items.iter().map(|i| i.class), new.validity_days);
    let id = Uuid::now_v7();
    tracing::Span::current().record("prescription_id", tracing::field::display(id));
    let state = if routed.is_some() {
        PrescriptionState::Routed
    } else {
        PrescriptionState::Issued
    };
    let row = prescriptions::Model {
        id,
        number: number.compact().to_owned(),
        hospital_id: hospital.hospital_id.uuid(),
        prescriber_party_id: party.id.uuid(),
        patient_party_id: card.holder.uuid(),
        patient_card_id: card.id.uuid(),
        state,
        routed_drugstore_party_id: routed.as_ref().map(|d| d.drugstore_id.uuid()),
        holder_drugstore_party_id: None,
        claim_secret_hash: None,
        claimed_at: None,
        consent_challenge_id: None,
        consent_expires_at: None,
        notes: new
            .notes
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty()),
        issued_at: now,
        expires_at,
        price: None,
        commission: None,
        currency: None,
        payment_method: None,
        installment_months: None,
        case_id: None,
        dispensed_at: None,
        dispensed_by_party_id: None,
        handover: None,
        created_at: now,
        updated_at: now,
    };
    prescriptions::Entity::insert(prescriptions::ActiveModel::from(row.clone()))
        .exec_without_returning(txn)
        .await?;
    let item_rows = new
        .items
        .iter()
        .zip(1..)
        .map(|(item, line_no)| items::ActiveModel {
            id: Set(Uuid::now_v7()),
            prescription_id: Set(id),
            line_no: Set(line_no),
            drug_code: Set(item.drug_code.trim().to_owned()),
            name: Set(item.name.trim().to_owned()),
            strength: Set(item.strength.trim().to_owned()),
            dose: Set(item.dose.trim().to_owned()),
            quantity: Set(i32::try_from(item.quantity).unwrap_or(i32::MAX)),
            unit: Set(item.unit.trim().to_owned()),
            days: Set(i32::try_from(item.days).unwrap_or(i32::MAX)),
            class: Set(item.class),
        });
    items::Entity::insert_many(item_rows)
        .exec_without_returning(txn)
        .await?;
    timers::schedule_in_txn(txn, &core.clock, EXPIRY_TIMER, id, expires_at).await?;
    let loaded = Loaded { row, case: None };
    match &routed {
        Some(drugstore) => {
            record_event_at(
                txn,
                id,
                "routed",
                None,
                Some(state),
                Some(party.id),
                Some(format!(
                    "to {}, the patient's choice",
                    drugstore.name.chars().take(200).collect::<String>()
                )),
                now,
            )
            .await?;
            notify_in_txn(
                txn,
                core,
                drugstore.drugstore_id,
                "prescription.routed",
                &loaded,
            )
            .await?;
        }
        None => {
            record_event_at(
                txn,
                id,
                "issued",
                None,
                Some(state),
                Some(party.id),
                None,
                now,
            )
            .await?;
        }
    }
    let text = match &routed {
        Some(drugstore) => format!(
            "Holdfast: prescription {number} was issued to you and sent to {}, the drugstore you \
             chose. Valid until {} UTC.",
            drugstore.name,
            expires_at.format("%Y-%m-%d")
        ),
        None => format!(
            "Holdfast: prescription {number} was issued to you. Show your medical card at any \
             member drugstore; your phone will be asked before it can open it. Valid until {} UTC.",
            expires_at.format("%Y-%m-%d")
        ),
    };
    text_patient_in_txn(txn, core, &loaded.row, text).await?;
    receipt_of(txn, &loaded, actor, core.clock.now()).await
}

pub(super) async fn unused_number(
    txn: &DatabaseTransaction,
    hospital_code: &str,
    sequence: u32,
) -> PharmacyResult<PrescriptionNumber> {
    // 16.7 million random prefixes per sequence value: a clash is rare, and the unique index
    // stays the final guard.
    for _ in 0..8 {
        let candidate = PrescriptionNumber::generate(hospital_code, sequence)
            .ok_or_else(|| CoreError::invalid("the hospital's code is not usable"))?;
        let taken = prescriptions::Entity::find()
            .filter(prescriptions::Column::Number.eq(candidate.compact()))
            .one(txn)
            .await?
            .is_some();
        if !taken {
            return Ok(candidate);
        }
    }
    Err(CoreError::Busy.into())
}
