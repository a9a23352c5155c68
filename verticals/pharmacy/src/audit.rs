//! The access log: every read of a prescription — its content, its FHIR view, or only that it
//! exists — with who read it, in what role, for which organisation, and when. Written in the
//! read's transaction (the runner's: no read without its entry), append-only, listed to the
//! patient.

use crate::entities::{access_log, prescriptions};
use crate::error::PharmacyResult;
use crate::number::PrescriptionNumber;
use crate::parties::Actor;
use chrono::{DateTime, Utc};
use holdfast_core::Core;
use holdfast_core::ids::PartyId;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryOrder, QuerySelect};
use serde::Serialize;
use utoipa::ToSchema;

/// What was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PrescriptionAccess)]
pub enum Access {
    /// The prescription with its items and notes.
    Content,
    /// Its FHIR R4 view (which holds the content too).
    Fhir,
    /// Only that it exists, with its number and item count (a drugstore given the medical
    /// card number, before the patient's consent).
    Existence,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::Content => "content",
            Access::Fhir => "fhir",
            Access::Existence => "existence",
        }
    }
}

/// One read, as the patient sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PrescriptionAccessEntry)]
pub struct AccessEntry {
    pub prescription_number: PrescriptionNumber,
    pub reader_id: PartyId,
    #[schema(example = "drugstore")]
    pub reader_role: String,
    pub reader_name: String,
    /// The hospital or drugstore the reader acted for.
    pub organisation: Option<String>,
    #[schema(example = "content")]
    pub what: String,
    pub at: DateTime<Utc>,
}

fn reader_of(actor: &Actor) -> (String, Option<String>) {
    match actor {
        Actor::Prescriber { party, hospital } => {
            (party.display_name.clone(), Some(hospital.name.clone()))
        }
        Actor::Drugstore { staff, drugstore } => {
            (staff.display_name.clone(), Some(drugstore.name.clone()))
        }
        Actor::Patient { .. } => ("the patient".to_owned(), None),
        Actor::Operator { party } => (party.display_name.clone(), Some("Holdfast".to_owned())),
    }
}

pub(crate) async fn record_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    actor: &Actor,
    row: &prescriptions::Model,
    what: Access,
) -> PharmacyResult<()> {
    let (name, organisation) = reader_of(actor);
    access_log::Entity::insert(access_log::ActiveModel {
        id: Set(Uuid::now_v7()),
        prescription_id: Set(row.id),
        prescription_number: Set(row.number.clone()),
        patient_party_id: Set(row.patient_party_id),
        reader_party_id: Set(actor.party().uuid()),
        reader_role: Set(actor.role().as_str().to_owned()),
        reader_name: Set(name.chars().take(200).collect()),
        organisation: Set(organisation.map(|o| o.chars().take(200).collect())),
        what: Set(what.as_str().to_owned()),
        at: Set(core.clock.now()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

pub const MAX_PAGE: u64 = 100;

/// Who read the patient's prescriptions, newest first; `before` (an entry's time) pages back.
pub async fn access_log_of(
    db: &impl ConnectionTrait,
    patient: PartyId,
    before: Option<DateTime<Utc>>,
    limit: u64,
) -> PharmacyResult<Vec<AccessEntry>> {
    let mut query = access_log::Entity::find()
        .filter(access_log::Column::PatientPartyId.eq(patient.uuid()))
        .order_by_desc(access_log::Column::At)
        .order_by_desc(access_log::Column::Id)
        .limit(limit.clamp(1, MAX_PAGE));
    if let Some(before) = before {
        query = query.filter(access_log::Column::At.lt(before));
    }
    Ok(query
        .all(db)
        .await?
        .into_iter()
        .map(|row| AccessEntry {
            prescription_number: PrescriptionNumber::from_stored(row.prescription_number),
            reader_id: PartyId::from_uuid(row.reader_party_id),
            reader_role: row.reader_role,
            reader_name: row.reader_name,
            organisation: row.organisation,
            what: row.what,
            at: row.at,
        })
        .collect())
}
