//! Who takes part: hospitals with their prescribers, member drugstores with their pharmacists,
//! patients (card holders), and operators. The operator onboards hospitals and drugstores.
//!
//! A hospital moves no money, so it is an organisation record; each prescriber is a party with
//! a login. A drugstore is a party — the payee of the prescriptions it fills, with its own login
//! and withdrawal account — and each of its pharmacists is a party with a login, acting for it.

use crate::entities::{drugstore_staff, drugstores, hospitals, prescribers};
use crate::error::{PharmacyError, PharmacyResult};
use crate::number::normalise_hospital_code;
use holdfast_core::cards::CardId;
use holdfast_core::ids::{Id, IdKind, PartyId};
use holdfast_core::onboarding::{StaffCredentials, create_staff_in_txn};
use holdfast_core::parties::{self, Party, Role};
use holdfast_core::passwords::PasswordWork;
use holdfast_core::{BasisPoints, Core, CoreError};
use rust_decimal::Decimal;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryOrder, QuerySelect};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug)]
pub enum HospitalKind {}
impl IdKind for HospitalKind {
    const NAME: &'static str = "hospital";
}
pub type HospitalId = Id<HospitalKind>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = PharmacyHospital)]
pub struct Hospital {
    pub hospital_id: HospitalId,
    pub name: String,
    /// Six letters and digits: the middle group of its prescription numbers.
    #[schema(example = "A83008")]
    pub code: String,
}

impl From<hospitals::Model> for Hospital {
    fn from(row: hospitals::Model) -> Self {
        Hospital {
            hospital_id: HospitalId::from_uuid(row.id),
            name: row.name,
            code: row.code,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = PharmacyDrugstore)]
pub struct Drugstore {
    pub drugstore_id: PartyId,
    pub name: String,
    /// The platform's share of what it is paid.
    #[schema(example = "0.03")]
    pub commission_rate: String,
    #[serde(skip)]
    pub commission: BasisPoints,
}

/// A member of staff as created: the login its holder uses.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PharmacyStaffCreated)]
pub struct StaffCreated {
    pub party_id: PartyId,
    pub role: Role,
    pub display_name: String,
    pub username: String,
    /// The hospital (prescribers) or drugstore (pharmacists) it works for.
    pub organisation_id: uuid::Uuid,
}

/// Who is acting, as the pharmacy vertical understands the caller.
#[derive(Debug, Clone)]
pub enum Actor {
    Prescriber {
        party: Party,
        hospital: Hospital,
    },
    /// The drugstore itself, or one of its pharmacists.
    Drugstore {
        staff: Party,
        drugstore: Drugstore,
    },
    Patient {
        party: PartyId,
        /// The card the session logged in with.
        card: Option<CardId>,
    },
    Operator {
        party: Party,
    },
}

impl Actor {
    pub fn party(&self) -> PartyId {
        match self {
            Actor::Prescriber { party, .. } | Actor::Operator { party } => party.id,
            Actor::Drugstore { staff, .. } => staff.id,
            Actor::Patient { party, .. } => *party,
        }
    }

    pub fn role(&self) -> Role {
        match self {
            Actor::Prescriber { .. } => Role::Prescriber,
            Actor::Drugstore { .. } => Role::Drugstore,
            Actor::Patient { .. } => Role::Shopper,
            Actor::Operator { .. } => Role::Operator,
        }
    }

    pub fn drugstore(&self) -> PharmacyResult<&Drugstore> {
        match self {
            Actor::Drugstore { drugstore, .. } => Ok(drugstore),
            _ => Err(CoreError::Forbidden("this needs the role drugstore").into()),
        }
    }
}

/// Resolves the caller: a prescriber must belong to a hospital, a drugstore login to a member
/// drugstore.
pub async fn actor(
    db: &impl ConnectionTrait,
    party: PartyId,
    role: Role,
    card: Option<CardId>,
) -> PharmacyResult<Actor> {
    match role {
        Role::Prescriber => {
            let link = prescribers::Entity::find_by_id(party.uuid())
                .one(db)
                .await?
                .ok_or(PharmacyError::NotAMember(
                    "this prescriber belongs to no hospital",
                ))?;
            let hospital = get_hospital(db, HospitalId::from_uuid(link.hospital_id)).await?;
            Ok(Actor::Prescriber {
                party: parties::get_party(db, party).await?,
                hospital,
            })
        }
        Role::Drugstore => {
            let link = drugstore_staff::Entity::find_by_id(party.uuid())
                .one(db)
                .await?
                .ok_or(PharmacyError::NotAMember(
                    "this login belongs to no member drugstore",
                ))?;
            Ok(Actor::Drugstore {
                staff: parties::get_party(db, party).await?,
                drugstore: get_drugstore(db, PartyId::from_uuid(link.drugstore_party_id)).await?,
            })
        }
        Role::Shopper => Ok(Actor::Patient { party, card }),
        Role::Operator => Ok(Actor::Operator {
            party: parties::get_party(db, party).await?,
        }),
        _ => Err(CoreError::Forbidden(
            "prescriptions are for prescribers, drugstores, patients and operators",
        )
        .into()),
    }
}

pub async fn get_hospital(db: &impl ConnectionTrait, id: HospitalId) -> PharmacyResult<Hospital> {
    hospitals::Entity::find_by_id(id.uuid())
        .one(db)
        .await?
        .map(Hospital::from)
        .ok_or_else(|| CoreError::NotFound("hospital").into())
}

/// A member drugstore (not one of its pharmacists).
pub async fn get_drugstore(db: &impl ConnectionTrait, id: PartyId) -> PharmacyResult<Drugstore> {
    let row = drugstores::Entity::find_by_id(id.uuid())
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("drugstore"))?;
    let party = parties::get_party(db, id).await?;
    drugstore_of(party, row.commission_bps)
}

fn drugstore_of(party: Party, stored_commission: i32) -> PharmacyResult<Drugstore> {
    let commission = BasisPoints::new(stored_commission).map_err(CoreError::Money)?;
    Ok(Drugstore {
        drugstore_id: party.id,
        name: party.display_name,
        commission_rate: commission.to_string(),
        commission,
    })
}

/// Parses a commission rate: a decimal fraction from 0 up to (not including) 1, to a basis
/// point.
pub fn parse_commission_rate(input: &str) -> PharmacyResult<BasisPoints> {
    let invalid =
        || PharmacyError::invalid("a commission rate is a decimal from 0 up to 1, e.g. 0.03");
    let rate = Decimal::from_str_exact(input.trim()).map_err(|_| invalid())?;
    BasisPoints::from_fraction(rate)
        .ok()
        .filter(|rate| *rate < BasisPoints::WHOLE)
        .ok_or_else(invalid)
}

pub const MAX_NAME_CHARS: usize = parties::MAX_DISPLAY_NAME_CHARS;

/// Onboards a hospital (the operator). Its code must be unused.
#[tracing::instrument(name = "pharmacy.create_hospital", skip_all)]
pub async fn create_hospital_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    name: &str,
    code: &str,
) -> PharmacyResult<Hospital> {
    let name = parties::validate_display_name(name)?;
    let code = normalise_hospital_code(code)
        .ok_or_else(|| PharmacyError::invalid("a hospital code is 1 to 6 letters and digits"))?;
    let taken = hospitals::Entity::find()
        .filter(hospitals::Column::Code.eq(code.clone()))
        .one(txn)
        .await?
        .is_some();
    if taken {
        return Err(CoreError::Conflict.into());
    }
    let id = HospitalId::new();
    hospitals::Entity::insert(hospitals::ActiveModel {
        id: Set(id.uuid()),
        name: Set(name.clone()),
        code: Set(code.clone()),
        next_sequence: Set(0),
        created_at: Set(core.clock.now()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(Hospital {
        hospital_id: id,
        name,
        code,
    })
}

/// A login for a new member of staff.
#[derive(Clone)]
pub struct NewStaff {
    pub display_name: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for NewStaff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewStaff")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl NewStaff {
    /// Hashes the password: slow on purpose, so before the transaction (the write lock should
    /// not wait on it).
    pub async fn hash(self, work: &PasswordWork) -> PharmacyResult<HashedStaff> {
        let credentials =
            StaffCredentials::hash(work, &self.username, &self.password, None).await?;
        Ok(HashedStaff {
            display_name: self.display_name,
            credentials,
        })
    }
}

/// A new member of staff whose password is hashed, ready for the transaction.
#[derive(Debug, Clone)]
pub struct HashedStaff {
    pub display_name: String,
    pub credentials: StaffCredentials,
}

/// Gives a hospital a prescriber with a login (the operator).
#[tracing::instrument(name = "pharmacy.add_prescriber", skip_all, fields(hospital_id = %hospital))]
pub async fn add_prescriber_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    hospital: HospitalId,
    new: HashedStaff,
) -> PharmacyResult<StaffCreated> {
    let hospital = get_hospital(txn, hospital).await?;
    let (party, username) = create_staff_in_txn(
        txn,
        core,
        Role::Prescriber,
        &new.display_name,
        new.credentials,
    )
    .await?;
    prescribers::Entity::insert(prescribers::ActiveModel {
        party_id: Set(party.id.uuid()),
        hospital_id: Set(hospital.hospital_id.uuid()),
        created_at: Set(core.clock.now()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(StaffCreated {
        party_id: party.id,
        role: party.role,
        display_name: party.display_name,
        username,
        organisation_id: hospital.hospital_id.uuid(),
    })
}

/// Onboards a member drugstore with its own login (the operator). `commission_bps` is the
/// platform's share of what it is paid.
#[tracing::instrument(name = "pharmacy.create_drugstore", skip_all)]
pub async fn create_drugstore_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    new: HashedStaff,
    commission: BasisPoints,
) -> PharmacyResult<(Drugstore, String)> {
    if commission >= BasisPoints::WHOLE {
        return Err(PharmacyError::invalid(
            "a commission rate is a decimal from 0 up to 1, e.g. 0.03",
        ));
    }
    let (party, username) = create_staff_in_txn(
        txn,
        core,
        Role::Drugstore,
        &new.display_name,
        new.credentials,
    )
    .await?;
    let now = core.clock.now();
    drugstores::Entity::insert(drugstores::ActiveModel {
        party_id: Set(party.id.uuid()),
        commission_bps: Set(commission.get()),
        created_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    link_staff_in_txn(txn, core, party.id, party.id).await?;
    Ok((drugstore_of(party, commission.get())?, username))
}

async fn link_staff_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    staff: PartyId,
    drugstore: PartyId,
) -> PharmacyResult<()> {
    drugstore_staff::Entity::insert(drugstore_staff::ActiveModel {
        party_id: Set(staff.uuid()),
        drugstore_party_id: Set(drugstore.uuid()),
        created_at: Set(core.clock.now()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Gives a member drugstore a pharmacist with a login (the operator).
#[tracing::instrument(name = "pharmacy.add_pharmacist", skip_all)]
pub async fn add_pharmacist_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    drugstore: PartyId,
    new: HashedStaff,
) -> PharmacyResult<StaffCreated> {
    let drugstore = get_drugstore(txn, drugstore).await?;
    let (party, username) = create_staff_in_txn(
        txn,
        core,
        Role::Drugstore,
        &new.display_name,
        new.credentials,
    )
    .await?;
    link_staff_in_txn(txn, core, party.id, drugstore.drugstore_id).await?;
    Ok(StaffCreated {
        party_id: party.id,
        role: party.role,
        display_name: party.display_name,
        username,
        organisation_id: drugstore.drugstore_id.uuid(),
    })
}

/// Member drugstores, oldest first (a patient chooses one; a prescriber records the choice).
pub async fn list_drugstores(
    db: &impl ConnectionTrait,
    limit: u64,
) -> PharmacyResult<Vec<Drugstore>> {
    let rows = drugstores::Entity::find()
        .order_by_asc(drugstores::Column::CreatedAt)
        .order_by_asc(drugstores::Column::PartyId)
        .limit(limit.clamp(1, 100))
        .all(db)
        .await?;
    let mut list = Vec::with_capacity(rows.len());
    for row in rows {
        let party = parties::get_party(db, PartyId::from_uuid(row.party_id)).await?;
        list.push(drugstore_of(party, row.commission_bps)?);
    }
    Ok(list)
}

/// A party's display name, or a placeholder for one that no longer exists.
pub async fn name_of(db: &impl ConnectionTrait, party: PartyId) -> PharmacyResult<String> {
    Ok(parties::find_party(db, party)
        .await?
        .map(|p| p.display_name)
        .unwrap_or_else(|| "(unknown)".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commission_rates_are_fractions_below_one() {
        assert_eq!(parse_commission_rate("0.03").unwrap().get(), 300);
        assert_eq!(parse_commission_rate("0").unwrap().get(), 0);
        assert_eq!(parse_commission_rate("0.1234").unwrap().get(), 1234);
        assert!(parse_commission_rate("1").is_err());
        assert!(parse_commission_rate("-0.1").is_err());
        assert!(parse_commission_rate("0.12345").is_err());
        assert!(parse_commission_rate("x").is_err());
    }
}
