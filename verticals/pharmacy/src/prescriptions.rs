//! Prescriptions: what a prescriber enters for a patient's medical card, and how each party
//! sees it. Content (items, notes) is personal health data: only the prescriber's hospital, the
//! drugstore holding the claim (or chosen by the patient), the patient and an operator see it,
//! each read is written to the access log the patient can list, and none of it reaches a log
//! line, an error message, a phone text or an escrow case.

use crate::EXPIRY_TIMER;
use crate::audit::{self, Access};
use crate::entities::{hospitals, items, prescription_events, prescriptions};
use crate::error::{PharmacyError, PharmacyResult};
use crate::number::PrescriptionNumber;
use crate::parties::{self, Actor, HospitalId};
use crate::state::PrescriptionState;
use chrono::{DateTime, Duration, Months, Utc};
use holdfast_core::cards::{self, CardId, CardNumber};
use holdfast_core::challenge::{self, ChallengePurpose, ChallengeStatus};
use holdfast_core::db::MinorUnits;
use holdfast_core::escrow::{self, CaseEvent, CaseState, EscrowCase};
use holdfast_core::ids::{ChallengeId, PartyId};
use holdfast_core::order_number::OrderNumber;
use holdfast_core::outbox::{self, PhoneMessage};
use holdfast_core::text::{MultilineText, Text};
use holdfast_core::{Core, CoreError, Currency, Money, events, timers};
use sea_orm::entity::prelude::*;
use sea_orm::{
    ActiveValue::Set, Condition, ConnectionTrait, DatabaseTransaction, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use utoipa::ToSchema;

pub const MAX_ITEMS: usize = 20;
pub const MAX_NOTES_CHARS: usize = 2_000;
pub const MAX_DRUG_CODE_CHARS: usize = 32;
pub const MAX_DRUG_NAME_CHARS: usize = 200;
pub const MAX_STRENGTH_CHARS: usize = 64;
pub const MAX_DOSE_CHARS: usize = 500;
pub const MAX_UNIT_CHARS: usize = 32;
pub type DrugCode = Text<1, MAX_DRUG_CODE_CHARS>;
pub type DrugName = Text<1, MAX_DRUG_NAME_CHARS>;
pub type Strength = Text<0, MAX_STRENGTH_CHARS>;
/// Dosage instructions, on one line (the patient's phone shows them in a text).
pub type Dose = Text<1, MAX_DOSE_CHARS>;
pub type Unit = Text<0, MAX_UNIT_CHARS>;
pub type PrescriptionNotes = MultilineText<0, MAX_NOTES_CHARS>;
pub const MAX_QUANTITY: u32 = 10_000;
pub const MAX_DAYS: u32 = 366;
/// A prescription is valid six months unless shorter (UK, NHS EPS).
pub const DEFAULT_VALIDITY_MONTHS: u32 = 6;
/// Controlled drugs (UK Schedule 2–4) are valid 28 days.
pub const CONTROLLED_VALIDITY_DAYS: i64 = 28;
pub const MAX_VALIDITY_DAYS: u32 = 183;

/// The class of a drug, which bounds how long a prescription of it stays valid.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::N(16))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
#[schema(as = PrescriptionDrugClass)]
pub enum DrugClass {
    /// Valid six months.
    #[default]
    Standard,
    /// A controlled drug (Schedule 2–4): valid 28 days.
    Controlled,
}

/// How the patient pays.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::N(16))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
#[schema(as = PrescriptionPaymentMethod)]
pub enum PaymentMethod {
    /// The whole amount, held in escrow.
    LumpSum,
    /// The whole amount is held in escrow like a lump sum; the card company runs the monthly
    /// plan, whose number of months the patient confirms on the phone.
    Installments,
    /// In cash at the counter: nothing is held; the choice is recorded.
    Cash,
}

/// How the medicine reached the patient.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::N(32))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
#[schema(as = PrescriptionHandover)]
pub enum Handover {
    /// The patient collected it at the drugstore.
    #[default]
    CollectedAtCounter,
    /// The drugstore delivered it to the hospital, where the patient received it.
    DeliveredToHospital,
}

/// One item as the prescriber enters it.
#[derive(Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewPrescriptionItem)]
pub struct NewItem {
    /// The drug's code in the national catalogue (letters, digits, '.', '-').
    #[schema(example = "641400260")]
    pub drug_code: DrugCode,
    #[schema(example = "Amoxicillin")]
    pub name: DrugName,
    #[serde(default)]
    #[schema(example = "500 mg capsules")]
    pub strength: Strength,
    /// Dosage instructions, as the patient reads them.
    #[schema(example = "1 capsule 3 times a day")]
    pub dose: Dose,
    pub quantity: u32,
    #[serde(default)]
    #[schema(example = "capsule")]
    pub unit: Unit,
    /// Days of treatment.
    pub days: u32,
    #[serde(default)]
    pub class: DrugClass,
}

impl std::fmt::Debug for NewItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewItem(…)")
    }
}

/// A prescription as the prescriber enters it.
#[derive(Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPrescription {
    /// The patient's medical card number (an EC card): it identifies the patient, whose phone
    /// and funding source stay on the server.
    pub card_number: CardNumber,
    pub items: Vec<NewItem>,
    pub notes: Option<PrescriptionNotes>,
    /// Shorter validity than the default (six months; 28 days with a controlled drug).
    pub validity_days: Option<u32>,
    /// The member drugstore the patient chose to receive it (flow A). Recorded as the
    /// patient's choice; a prescriber must not steer it. Without one, the prescription waits
    /// in the pool for any member drugstore the patient presents the card to (flow B).
    pub patient_chosen_drugstore_id: Option<PartyId>,
}

impl std::fmt::Debug for NewPrescription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewPrescription")
            .field("card_number", &self.card_number)
            .field("items", &self.items.len())
            .finish_non_exhaustive()
    }
}

fn length_between(value: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&value.chars().count()) && !value.chars().any(char::is_control)
}

/// Checks what was entered. Messages name the rule, never the value.
fn validate(new: &NewPrescription) -> PharmacyResult<()> {
    if new.items.is_empty() || new.items.len() > MAX_ITEMS {
        return Err(PharmacyError::invalid(format!(
            "a prescription has 1 to {MAX_ITEMS} items"
        )));
    }
    for (index, item) in new.items.iter().enumerate() {
        let line = index + 1;
        let code_ok = length_between(item.drug_code.trim(), 1, MAX_DRUG_CODE_CHARS)
            && item
                .drug_code
                .trim()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
        if !code_ok {
            return Err(PharmacyError::invalid(format!(
                "item {line}: a drug code has 1 to {MAX_DRUG_CODE_CHARS} letters, digits, '.' or '-'"
            )));
        }
        if !length_between(item.name.trim(), 1, MAX_DRUG_NAME_CHARS) {
            return Err(PharmacyError::invalid(format!(
                "item {line}: a drug name has 1 to {MAX_DRUG_NAME_CHARS} characters"
            )));
        }
        if !length_between(item.strength.trim(), 0, MAX_STRENGTH_CHARS) {
            return Err(PharmacyError::invalid(format!(
                "item {line}: a strength has at most {MAX_STRENGTH_CHARS} characters"
            )));
        }
        if !length_between(item.dose.trim(), 1, MAX_DOSE_CHARS) {
            return Err(PharmacyError::invalid(format!(
                "item {line}: a dose has 1 to {MAX_DOSE_CHARS} characters"
            )));
        }
        if !length_between(item.unit.trim(), 0, MAX_UNIT_CHARS) {
            return Err(PharmacyError::invalid(format!(
                "item {line}: a unit has at most {MAX_UNIT_CHARS} characters"
            )));
        }
        if item.quantity == 0 || item.quantity > MAX_QUANTITY {
            return Err(PharmacyError::invalid(format!(
                "item {line}: a quantity is 1 to {MAX_QUANTITY}"
            )));
        }
        if item.days == 0 || item.days > MAX_DAYS {
            return Err(PharmacyError::invalid(format!(
                "item {line}: a treatment lasts 1 to {MAX_DAYS} days"
            )));
        }
    }
    if let Some(notes) = &new.notes
        && notes.chars().count() > MAX_NOTES_CHARS
    {
        return Err(PharmacyError::invalid(format!(
            "notes have at most {MAX_NOTES_CHARS} characters"
        )));
    }
    if let Some(days) = new.validity_days
        && (days == 0 || days > MAX_VALIDITY_DAYS)
    {
        return Err(PharmacyError::invalid(format!(
            "a validity is 1 to {MAX_VALIDITY_DAYS} days"
        )));
    }
    Ok(())
}

/// The end of the validity: six months, at most 28 days with a controlled drug, and no later
/// than the prescriber asked.
pub fn valid_until(
    issued_at: DateTime<Utc>,
    classes: impl IntoIterator<Item = DrugClass>,
    validity_days: Option<u32>,
) -> DateTime<Utc> {
    let mut until = issued_at
        .checked_add_months(Months::new(DEFAULT_VALIDITY_MONTHS))
        .unwrap_or(issued_at + Duration::days(i64::from(MAX_VALIDITY_DAYS)));
    if classes.into_iter().any(|c| c == DrugClass::Controlled) {
        until = until.min(issued_at + Duration::days(CONTROLLED_VALIDITY_DAYS));
    }
    if let Some(days) = validity_days {
        until = until.min(issued_at + Duration::days(i64::from(days)));
    }
    until
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PharmacyNamed)]
pub struct Named {
    pub id: Uuid,
    pub name: String,
}

#[derive(Clone, Serialize, ToSchema)]
#[schema(as = PrescriptionItem)]
pub struct ItemView {
    pub line_no: i32,
    pub drug_code: String,
    pub name: String,
    pub strength: String,
    pub dose: String,
    pub quantity: i32,
    pub unit: String,
    pub days: i32,
    pub class: DrugClass,
}

impl From<items::Model> for ItemView {
    fn from(row: items::Model) -> Self {
        ItemView {
            line_no: row.line_no,
            drug_code: row.drug_code,
            name: row.name,
            strength: row.strength,
            dose: row.dose,
            quantity: row.quantity,
            unit: row.unit,
            days: row.days,
            class: row.class,
        }
    }
}

/// A confirmation the patient's phone was asked for and has not answered yet.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PrescriptionPendingConfirmation)]
pub struct PendingConfirmation {
    pub challenge_id: ChallengeId,
    pub purpose: ChallengePurpose,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PrescriptionPayment)]
pub struct PaymentView {
    pub method: PaymentMethod,
    pub installment_months: Option<i32>,
    /// What the patient confirmed besides the amount ("lump sum", "3 monthly installments").
    pub terms: Option<String>,
    /// The escrow payment's order number: the patient hands it to the drugstore on delivery,
    /// so the drugstore is shown it only once it was handed over.
    pub order_number: Option<OrderNumber>,
    /// Where the money is (card payments).
    pub escrow_state: Option<CaseState>,
}

/// A prescription with its content, for those allowed to read it.
#[derive(Clone, Serialize, ToSchema)]
pub struct PrescriptionView {
    pub prescription_number: PrescriptionNumber,
    pub state: PrescriptionState,
    pub hospital: Named,
    pub prescriber: Named,
    /// The patient's medical card, masked.
    #[schema(example = "9000-21••-••••-7897")]
    pub patient_card: String,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    /// The drugstore the patient chose when it was prescribed (the patient's choice).
    pub routed_to: Option<Named>,
    /// The drugstore holding the claim (or, while the patient is asked, asking for it).
    pub held_by: Option<Named>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub items: Vec<ItemView>,
    pub notes: Option<String>,
    pub price: Option<Money>,
    pub payment: Option<PaymentView>,
    pub dispensed_at: Option<DateTime<Utc>>,
    pub handover: Option<Handover>,
    /// For the patient only: the confirmation its phone is asked for now.
    pub pending_confirmation: Option<PendingConfirmation>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for PrescriptionView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrescriptionView")
            .field("prescription_number", &self.prescription_number)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Where a prescription stands after a change, without its content: what every request that
/// changes a prescription answers. Its items and notes are read with
/// `GET /v1/pharmacy/prescriptions/{number}`, which writes the read to the patient's access log;
/// an answer to a change is not logged, and may be kept as an idempotency record and replayed,
/// so it must never hold them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PrescriptionReceipt {
    pub prescription_number: PrescriptionNumber,
    pub state: PrescriptionState,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    /// The drugstore the patient chose when it was prescribed (the patient's choice).
    pub routed_to: Option<Named>,
    /// The drugstore holding the claim (or, while the patient is asked, asking for it).
    pub held_by: Option<Named>,
    pub price: Option<Money>,
    pub payment: Option<PaymentView>,
    pub dispensed_at: Option<DateTime<Utc>>,
    pub handover: Option<Handover>,
    /// For the patient only: the confirmation its phone is asked for now.
    pub pending_confirmation: Option<PendingConfirmation>,
}

/// A prescription without its content: what lists show.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PrescriptionSummary {
    pub prescription_number: PrescriptionNumber,
    pub state: PrescriptionState,
    pub item_count: u64,
    pub valid_until: DateTime<Utc>,
    pub held_by: Option<Named>,
    pub price: Option<Money>,
    pub created_at: DateTime<Utc>,
}

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

fn money_of(minor: Option<MinorUnits>, currency: Option<&str>) -> PharmacyResult<Option<Money>> {
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

/// Issues a prescription (a prescriber): for the patient whose medical card number was given,
/// in the pool or sent to the drugstore the patient chose. The answer holds no content: the
/// prescriber reads it back like anyone else, with a logged read.
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

async fn unused_number(
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

/// Whether `actor` may read the content, and how the read is logged. A drugstore reads only a
/// prescription sent to it by the patient's choice, or one it holds the claim to (with the
/// claim secret).
fn may_read(
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

/// One prescription with its content, for whoever may read it; the read is logged.
pub async fn read(
    db: &sea_orm::DatabaseConnection,
    core: &Core,
    actor: &Actor,
    number: &PrescriptionNumber,
    secret: Option<&str>,
) -> PharmacyResult<PrescriptionView> {
    let txn = holdfast_core::db::begin_write(db).await?;
    let loaded = read_in_txn(&txn, core, actor, number, secret, Access::Content).await?;
    let view = view_of(&txn, &loaded, actor, core.clock.now()).await?;
    txn.commit().await?;
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

async fn named_drugstore(
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
fn payment_view(loaded: &Loaded, viewer: &Actor) -> Option<PaymentView> {
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
async fn pending_for(
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

async fn pending_confirmation(
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

/// The caller's prescriptions, newest first, without content: a prescriber's hospital's, a
/// drugstore's (held or sent to it), a patient's own.
pub async fn list(
    db: &impl ConnectionTrait,
    core: &Core,
    actor: &Actor,
    limit: u64,
) -> PharmacyResult<Vec<PrescriptionSummary>> {
    let mut query = prescriptions::Entity::find()
        .order_by_desc(prescriptions::Column::CreatedAt)
        .order_by_desc(prescriptions::Column::Id)
        .limit(limit.clamp(1, MAX_PAGE));
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
    let mut list = Vec::new();
    for row in query.all(db).await? {
        let loaded = load(db, row).await?;
        let state = loaded.state_at(now);
        // A drugstore's list keeps only what it holds now or was sent.
        if let Actor::Drugstore { drugstore, .. } = actor {
            let mine = Some(drugstore.drugstore_id.uuid());
            let holds = loaded.row.holder_drugstore_party_id == mine && state.is_claimed();
            let routed =
                loaded.row.routed_drugstore_party_id == mine && state == PrescriptionState::Routed;
            if !holds && !routed {
                continue;
            }
        }
        list.push(summary_of(db, &loaded, state).await?);
    }
    Ok(list)
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

async fn summary_of(
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn validity_is_six_months_or_28_days_with_a_controlled_drug() {
        let issued = Utc.with_ymd_and_hms(2026, 1, 31, 9, 0, 0).unwrap();
        assert_eq!(
            valid_until(issued, [DrugClass::Standard], None),
            Utc.with_ymd_and_hms(2026, 7, 31, 9, 0, 0).unwrap()
        );
        assert_eq!(
            valid_until(issued, [DrugClass::Standard, DrugClass::Controlled], None),
            issued + Duration::days(28)
        );
        assert_eq!(
            valid_until(issued, [DrugClass::Controlled], Some(60)),
            issued + Duration::days(28),
            "a prescriber cannot lengthen a controlled drug's validity"
        );
        assert_eq!(
            valid_until(issued, [DrugClass::Standard], Some(3)),
            issued + Duration::days(3)
        );
    }

    #[test]
    fn the_escrow_case_moves_a_payment_on() {
        use PrescriptionState as P;
        assert_eq!(
            effective_state(
                P::PaymentPending,
                Some(CaseState::AwaitingOrderConfirmation)
            ),
            P::PaymentPending
        );
        assert_eq!(
            effective_state(P::PaymentPending, Some(CaseState::Frozen)),
            P::Paid
        );
        assert_eq!(
            effective_state(P::PaymentPending, Some(CaseState::Denied)),
            P::Priced
        );
        assert_eq!(
            effective_state(P::PaymentPending, Some(CaseState::Expired)),
            P::Priced
        );
        assert_eq!(
            effective_state(P::Dispensed, Some(CaseState::SettlementRequested)),
            P::Dispensed
        );
        assert_eq!(
            effective_state(P::Dispensed, Some(CaseState::Settled)),
            P::Settled
        );
        assert_eq!(
            effective_state(P::Dispensed, Some(CaseState::Disputed)),
            P::Dispensed
        );
        assert_eq!(effective_state(P::Claimed, None), P::Claimed);
    }
}
