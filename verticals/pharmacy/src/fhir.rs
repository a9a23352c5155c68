//! A prescription as HL7 FHIR R4: a `Bundle` (type `collection`) of one `MedicationRequest` per
//! item (the clinical status), the `Task` that carries the workflow (NHS EPS / gematik style:
//! its status, an EPS business status, its owner once a drugstore holds it), and one
//! `MedicationDispense` per item once dispensed. Money stays out: it is the escrow case's.

use crate::audit::Access;
use crate::entities::items;
use crate::error::PharmacyResult;
use crate::number::PrescriptionNumber;
use crate::parties::{self, Actor, HospitalId};
use crate::prescriptions::{self as rx, DrugClass, Handover, Loaded};
use crate::state::PrescriptionState;
use chrono::{DateTime, SecondsFormat, Utc};
use holdfast_core::Core;
use holdfast_core::cards::{self, CardId};
use holdfast_core::ids::PartyId;
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use serde_json::{Value, json};
use uuid::Uuid;

pub const PRESCRIPTION_NUMBER_SYSTEM: &str = "urn:holdfast:prescription-number";
pub const DRUG_CODE_SYSTEM: &str = "urn:holdfast:drug-code";
pub const DRUG_CLASS_EXTENSION: &str = "urn:holdfast:fhir:StructureDefinition:drug-class";
pub const EPS_BUSINESS_STATUS: &str = "https://fhir.nhs.uk/CodeSystem/EPS-task-business-status";
const UCUM: &str = "http://unitsofmeasure.org";

/// MedicationRequest.status (R4 value set `medicationrequest-status`).
pub fn medication_request_status(state: PrescriptionState) -> &'static str {
    use PrescriptionState as P;
    match state {
        P::Issued
        | P::Routed
        | P::AwaitingConsent
        | P::Claimed
        | P::Priced
        | P::PaymentPending
        | P::Paid => "active",
        P::Dispensed | P::Settled => "completed",
        P::Cancelled => "cancelled",
        // R4 has no "ended": the prescription may no longer be acted on.
        P::Expired => "stopped",
    }
}

/// Task.status (R4 value set `task-status`) with the NHS EPS business status: in the pool
/// `ready`, sent to the chosen drugstore `requested`, with a drugstore `accepted` (NHS's
/// "release"), handed over `completed`.
pub fn task_status(state: PrescriptionState) -> (&'static str, &'static str, &'static str) {
    use PrescriptionState as P;
    match state {
        P::Issued | P::AwaitingConsent => ("ready", "0001", "To be dispensed"),
        P::Routed => ("requested", "0001", "To be dispensed"),
        P::Claimed | P::Priced | P::PaymentPending => ("accepted", "0002", "With dispenser"),
        P::Paid => ("in-progress", "0002", "With dispenser"),
        P::Dispensed | P::Settled => ("completed", "0006", "Dispensed"),
        P::Cancelled => ("cancelled", "0005", "Cancelled"),
        P::Expired => ("cancelled", "0004", "Expired"),
    }
}

fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn urn(id: Uuid) -> String {
    format!("urn:uuid:{id}")
}

/// The dispense of an item has an id of its own, derived so that every read shows the same.
fn dispense_id(item: Uuid) -> Uuid {
    Uuid::from_u128(item.as_u128() ^ 0x0000_0000_0000_0000_0000_0000_0000_0d15)
}

fn medication(item: &items::Model) -> Value {
    let text = if item.strength.is_empty() {
        item.name.clone()
    } else {
        format!("{} {}", item.name, item.strength)
    };
    json!({
        "coding": [{"system": DRUG_CODE_SYSTEM, "code": item.drug_code, "display": item.name}],
        "text": text,
    })
}

fn quantity(item: &items::Model) -> Value {
    let mut quantity = json!({"value": item.quantity});
    if !item.unit.is_empty() {
        quantity["unit"] = json!(item.unit);
    }
    quantity
}

fn days(item: &items::Model) -> Value {
    json!({"value": item.days, "unit": "day", "system": UCUM, "code": "d"})
}

fn reference(kind: &str, id: Uuid, display: &str) -> Value {
    json!({"reference": format!("{kind}/{id}"), "display": display})
}

/// The prescription as a FHIR R4 Bundle, for whoever may read its content; the read is logged
/// as `fhir`.
#[tracing::instrument(name = "pharmacy.fhir_bundle", skip_all, fields(prescription_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn bundle_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    actor: &Actor,
    number: &PrescriptionNumber,
    secret: Option<&str>,
) -> PharmacyResult<Value> {
    let loaded = rx::read_in_txn(txn, core, actor, number, secret, Access::Fhir).await?;
    let bundle = build(txn, &loaded, core.clock.now()).await?;
    Ok(bundle)
}

async fn build(
    db: &impl ConnectionTrait,
    loaded: &Loaded,
    now: DateTime<Utc>,
) -> PharmacyResult<Value> {
    let row = &loaded.row;
    let state = loaded.state_at(now);
    let number = loaded.number().to_string();
    let items = rx::items_of(db, row.id).await?;
    let hospital = parties::get_hospital(db, HospitalId::from_uuid(row.hospital_id)).await?;
    let card = cards::get_card(db, CardId::from_uuid(row.patient_card_id)).await?;
    let patient = reference(
        "Patient",
        row.patient_party_id,
        &format!("medical card {}", card.number.masked()),
    );
    let prescriber_name = parties::name_of(db, PartyId::from_uuid(row.prescriber_party_id)).await?;
    let requester = reference("Practitioner", row.prescriber_party_id, &prescriber_name);
    let routed = match row.routed_drugstore_party_id {
        Some(id) => Some(reference(
            "Organization",
            id,
            &parties::name_of(db, PartyId::from_uuid(id)).await?,
        )),
        None => None,
    };
    let owner = match row.holder_drugstore_party_id {
        Some(id) if state.is_claimed() || state == PrescriptionState::Cancelled => Some(reference(
            "Organization",
            id,
            &parties::name_of(db, PartyId::from_uuid(id)).await?,
        )),
        _ => None,
    };
    let group = json!({"system": PRESCRIPTION_NUMBER_SYSTEM, "value": number});
    let status_reason = match state {
        PrescriptionState::Cancelled => Some(json!({"text": "cancelled by the prescriber"})),
        PrescriptionState::Expired => Some(json!({"text": "the validity period ended"})),
        _ => None,
    };

    let mut entries = Vec::new();
    let mut requests = Vec::new();
    for item in &items {
        let mut request = json!({
            "resourceType": "MedicationRequest",
            "id": item.id.to_string(),
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": urn(item.id)}],
            "status": medication_request_status(state),
            "intent": "order",
            "groupIdentifier": group,
            "medicationCodeableConcept": medication(item),
            "subject": patient,
            "authoredOn": instant(row.issued_at),
            "requester": requester,
            "dosageInstruction": [{"sequence": 1, "text": item.dose}],
            "dispenseRequest": {
                "validityPeriod": {"start": instant(row.issued_at), "end": instant(row.expires_at)},
                "quantity": quantity(item),
                "expectedSupplyDuration": days(item),
            },
            "extension": [{
                "url": DRUG_CLASS_EXTENSION,
                "valueCode": match item.class {
                    DrugClass::Standard => "standard",
                    DrugClass::Controlled => "controlled",
                },
            }],
        });
        if let Some(reason) = &status_reason {
            request["statusReason"] = reason.clone();
        }
        if let Some(routed) = &routed {
            request["dispenseRequest"]["performer"] = routed.clone();
        }
        requests.push(json!({"reference": urn(item.id)}));
        entries.push(json!({"fullUrl": urn(item.id), "resource": request}));
    }

    let (task_status, business_code, business_display) = task_status(state);
    let mut task = json!({
        "resourceType": "Task",
        "id": row.id.to_string(),
        "identifier": [{"system": PRESCRIPTION_NUMBER_SYSTEM, "value": number}],
        "groupIdentifier": group,
        "status": task_status,
        "businessStatus": {
            "coding": [{"system": EPS_BUSINESS_STATUS, "code": business_code, "display": business_display}],
            "text": state.as_str(),
        },
        "intent": "order",
        "basedOn": requests,
        "for": patient,
        "authoredOn": instant(row.issued_at),
        "lastModified": instant(row.updated_at),
        "requester": requester,
        "restriction": {"period": {"end": instant(row.expires_at)}},
    });
    if let Some(first) = items.first() {
        task["focus"] = json!({"reference": urn(first.id)});
    }
    if let Some(reason) = &status_reason {
        task["statusReason"] = reason.clone();
    }
    match (&owner, &routed, state) {
        (Some(owner), _, _) => task["owner"] = owner.clone(),
        (None, Some(routed), PrescriptionState::Routed) => task["owner"] = routed.clone(),
        _ => {}
    }
    if let Some(start) = row.claimed_at {
        let mut period = json!({"start": instant(start)});
        if let Some(end) = row.dispensed_at {
            period["end"] = json!(instant(end));
        }
        task["executionPeriod"] = period;
    }
    if let Some(notes) = &row.notes {
        task["note"] = json!([{"text": notes}]);
    }
    entries.push(json!({"fullUrl": urn(row.id), "resource": task}));

    if let (Some(handed_over), Some(performer)) = (row.dispensed_at, &owner) {
        for item in &items {
            let id = dispense_id(item.id);
            let mut dispense = json!({
                "resourceType": "MedicationDispense",
                "id": id.to_string(),
                "status": "completed",
                "medicationCodeableConcept": medication(item),
                "subject": patient,
                "performer": [{"actor": performer}],
                "authorizingPrescription": [{"reference": urn(item.id)}],
                "quantity": quantity(item),
                "daysSupply": days(item),
                "whenHandedOver": instant(handed_over),
                "dosageInstruction": [{"sequence": 1, "text": item.dose}],
            });
            if row.handover == Some(Handover::DeliveredToHospital) {
                dispense["destination"] = json!({"display": hospital.name});
            }
            entries.push(json!({"fullUrl": urn(id), "resource": dispense}));
        }
    }

    Ok(json!({
        "resourceType": "Bundle",
        "id": row.id.to_string(),
        "identifier": {"system": PRESCRIPTION_NUMBER_SYSTEM, "value": number},
        "type": "collection",
        "timestamp": instant(now),
        "entry": entries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEDICATION_REQUEST: [&str; 8] = [
        "active",
        "on-hold",
        "cancelled",
        "completed",
        "entered-in-error",
        "stopped",
        "draft",
        "unknown",
    ];
    const TASK: [&str; 12] = [
        "draft",
        "requested",
        "received",
        "accepted",
        "rejected",
        "ready",
        "cancelled",
        "in-progress",
        "on-hold",
        "failed",
        "completed",
        "entered-in-error",
    ];

    #[test]
    fn every_state_maps_into_the_r4_value_sets() {
        use PrescriptionState as P;
        for state in [
            P::Issued,
            P::Routed,
            P::AwaitingConsent,
            P::Claimed,
            P::Priced,
            P::PaymentPending,
            P::Paid,
            P::Dispensed,
            P::Settled,
            P::Cancelled,
            P::Expired,
        ] {
            assert!(MEDICATION_REQUEST.contains(&medication_request_status(state)));
            assert!(TASK.contains(&task_status(state).0));
        }
    }

    #[test]
    fn a_dispense_id_is_stable_and_differs_from_its_item() {
        let item = Uuid::now_v7();
        assert_eq!(dispense_id(item), dispense_id(item));
        assert_ne!(dispense_id(item), item);
    }
}
