//! Claims: how exactly one drugstore comes to hold a prescription, after gematik's E-Rezept
//! (`$accept` locks the Task to one pharmacy and hands it a secret; `$reject` returns it to the
//! pool and deletes the secret).
//!
//! - A drugstore given a patient's medical card number learns only that prescriptions exist
//!   (numbers, item counts, validity): [`lookup`].
//! - It asks to open one ([`claim_in_txn`]): the patient's phone gets a `prescription_open`
//!   confirmation naming the drugstore, and the drugstore gets a claim secret that works only
//!   once the patient approves. A second drugstore asking meanwhile, or after, gets 409.
//! - A prescription the patient sent to a drugstore when it was prescribed is claimed by that
//!   drugstore at once: the patient's choice is its consent.
//! - The holder may hand it back ([`hand_back_in_txn`]): the secret is deleted and the
//!   prescription returns to the pool.
//! - The holder that lost the secret claims again: until it dispenses, it gets a fresh one and
//!   the old one stops working (a limited number of times an hour, each in the history).
//!
//! The secret (256 random bits, shown once) is stored only as its SHA-256.

use crate::CONSENT_TIMER;
use crate::audit::{self, Access};
use crate::entities::{prescription_events, prescriptions};
use crate::error::{PharmacyError, PharmacyResult};
use crate::hooks::VerticalAnswer;
use crate::number::PrescriptionNumber;
use crate::parties::{self, Actor, Drugstore};
use crate::prescriptions::{
    self as rx, Loaded, PrescriptionSummary, ensure_valid, lock_by_number_in_txn, record_event_at,
    text_patient_in_txn, transition_in_txn,
};
use crate::state::PrescriptionState;
use chrono::{DateTime, Utc};
use holdfast_core::cards::{self, CardNumber};
use holdfast_core::challenge::{
    self, Answer, ChallengeBinding, ChallengePurpose, Decision, NewChallenge,
};
use holdfast_core::escrow::{self, CaseState};
use holdfast_core::ids::{ChallengeId, PartyId};
use holdfast_core::{Core, CoreError, timers};
use rand::Rng;
use sea_orm::entity::prelude::*;
use sea_orm::{DatabaseTransaction, PaginatorTrait, QueryOrder, QuerySelect};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

/// A fresh claim secret and its hash.
fn new_secret() -> (String, String) {
    let bytes: [u8; 32] = rand::rng().random();
    let secret = hex::encode(bytes);
    let hash = hash_secret(&secret);
    (secret, hash)
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.trim().as_bytes()))
}

/// Checks the claim secret a drugstore sent against the stored hash, in constant time.
pub(crate) fn check_secret(row: &prescriptions::Model, given: Option<&str>) -> PharmacyResult<()> {
    let (Some(stored), Some(given)) = (row.claim_secret_hash.as_deref(), given) else {
        return Err(PharmacyError::ClaimSecret);
    };
    if given.len() > 128 {
        return Err(PharmacyError::ClaimSecret);
    }
    let matches: bool = hash_secret(given)
        .as_bytes()
        .ct_eq(stored.as_bytes())
        .into();
    if matches {
        Ok(())
    } else {
        Err(PharmacyError::ClaimSecret)
    }
}

/// Refuses anyone but the drugstore holding the claim with its secret; returns that drugstore.
pub(crate) fn check_holder<'a>(
    loaded: &Loaded,
    actor: &'a Actor,
    secret: Option<&str>,
) -> PharmacyResult<&'a Drugstore> {
    let drugstore = actor.drugstore()?;
    let row = &loaded.row;
    if row.holder_drugstore_party_id != Some(drugstore.drugstore_id.uuid()) {
        return Err(PharmacyError::NotHeld);
    }
    match row.state {
        PrescriptionState::Cancelled => Err(PharmacyError::Cancelled),
        PrescriptionState::Expired => Err(PharmacyError::Expired),
        state if !state.is_claimed() => Err(PharmacyError::NotHeld),
        _ => check_secret(row, secret).map(|()| drugstore),
    }
}

/// What a drugstore learns before the patient's consent: that a prescription exists.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PrescriptionExistence)]
pub struct Existence {
    pub prescription_number: PrescriptionNumber,
    pub item_count: u64,
    pub valid_until: DateTime<Utc>,
    pub availability: Availability,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PrescriptionAvailability)]
pub enum Availability {
    /// In the pool: ask to open it (the patient's phone is asked).
    Available,
    /// A drugstore is waiting for the patient's answer.
    AwaitingConsent,
    /// The patient chose this drugstore when it was prescribed: claim it.
    RoutedToYou,
}

pub const MAX_LOOKUP: u64 = 50;

/// The prescriptions a drugstore could fill for the patient whose medical card number it was
/// given: numbers, item counts and validity only. Each one shown is written to the patient's
/// access log as a read of its existence.
#[tracing::instrument(name = "pharmacy.lookup_by_card", skip_all, fields(prescription_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn lookup_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    actor: &Actor,
    card_number: &CardNumber,
) -> PharmacyResult<Vec<Existence>> {
    let drugstore = actor.drugstore()?;
    let card = cards::find_by_number(txn, card_number)
        .await?
        .ok_or(CoreError::NotFound("card"))?;
    card.ensure_active()?;
    let now = core.clock.now();
    let rows = prescriptions::Entity::find()
        .filter(prescriptions::Column::PatientPartyId.eq(card.holder.uuid()))
        .filter(prescriptions::Column::State.is_in([
            PrescriptionState::Issued,
            PrescriptionState::AwaitingConsent,
            PrescriptionState::Routed,
        ]))
        .order_by_desc(prescriptions::Column::CreatedAt)
        .limit(MAX_LOOKUP)
        .all(txn)
        .await?;
    let mine = Some(drugstore.drugstore_id.uuid());
    let mut found = Vec::new();
    for row in rows {
        let loaded = rx::load(txn, row).await?;
        let availability = match loaded.state_at(now) {
            PrescriptionState::Issued => Availability::Available,
            PrescriptionState::AwaitingConsent => Availability::AwaitingConsent,
            PrescriptionState::Routed if loaded.row.routed_drugstore_party_id == mine => {
                Availability::RoutedToYou
            }
            _ => continue,
        };
        audit::record_in_txn(txn, core, actor, &loaded.row, Access::Existence).await?;
        found.push(Existence {
            prescription_number: loaded.number(),
            item_count: rx::item_count(txn, loaded.row.id).await?,
            valid_until: loaded.row.expires_at,
            availability,
        });
    }
    Ok(found)
}

/// A claim as the drugstore receives it. The secret is shown this once: send it as the
/// `Claim-Secret` header with every later request about the prescription.
#[derive(Clone, Serialize, ToSchema)]
#[schema(as = PrescriptionClaim)]
pub struct Claim {
    pub prescription_number: PrescriptionNumber,
    /// `claimed` (the patient chose this drugstore) or `awaiting_consent` (the patient's phone
    /// is asked; the secret works once the patient approves); for a drugstore claiming again
    /// what it already holds, the state it is in (`claimed` up to `paid`).
    pub state: PrescriptionState,
    #[schema(example = "9f2c…64 hex digits")]
    pub claim_secret: String,
    /// Until when the patient may approve.
    pub consent_expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim")
            .field("prescription_number", &self.prescription_number)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// What the patient's phone confirms when a drugstore asks to open a prescription: which
/// prescription, and which drugstore would see it.
fn consent_binding(number: &PrescriptionNumber, drugstore: &str) -> ChallengeBinding {
    ChallengeBinding {
        amount: None,
        payee: Some(drugstore.to_owned()),
        order_number: Some(number.to_string()),
        terms: None,
    }
}

/// How many times the patient's phone may be asked to let drugstores open one prescription
/// within [`CONSENT_WINDOW_MINUTES`].
pub const MAX_CONSENT_REQUESTS: u64 = 5;
pub const CONSENT_WINDOW_MINUTES: i64 = 60;

/// A drugstore claims a prescription. Sent to it by the patient's choice: it holds it at once.
/// In the pool: `card_number` (the medical card the patient presented) must be the patient's,
/// and the patient's phone is asked to let this drugstore open it. Asked again by the drugstore
/// that already holds it, until it is dispensed: a fresh secret replaces the old one (the
/// drugstore lost the first answer).
#[tracing::instrument(name = "pharmacy.claim", skip_all, fields(prescription_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn claim_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    actor: &Actor,
    number: &PrescriptionNumber,
    card_number: Option<CardNumber>,
) -> PharmacyResult<Claim> {
    let drugstore = actor.drugstore()?;
    let mut loaded = lock_by_number_in_txn(txn, core, number).await?;
    let now = core.clock.now();
    ensure_valid(&loaded, now)?;
    let mine = Some(drugstore.drugstore_id.uuid());
    match loaded.row.state {
        PrescriptionState::Routed if loaded.row.routed_drugstore_party_id == mine => {
            let to = loaded.row.state.claim_routed()?;
            let (secret, hash) = new_secret();
            loaded.row.holder_drugstore_party_id = mine;
            loaded.row.claim_secret_hash = Some(hash);
            loaded.row.claimed_at = Some(now);
            transition_in_txn(
                txn,
                core,
                &mut loaded,
                to,
                "claimed",
                Some(actor.party()),
                Some(format!("by {}, the patient's choice", drugstore.name)),
            )
            .await?;
            Ok(Claim {
                prescription_number: loaded.number(),
                state: to,
                claim_secret: secret,
                consent_expires_at: None,
            })
        }
        PrescriptionState::Routed => Err(PharmacyError::RoutedElsewhere),
        PrescriptionState::AwaitingConsent if loaded.row.holder_drugstore_party_id != mine => {
            Err(PharmacyError::HeldElsewhere)
        }
        PrescriptionState::Issued | PrescriptionState::AwaitingConsent => {
            let card_number = card_number.ok_or_else(|| {
                PharmacyError::invalid(
                    "give the medical card number the patient presented: the patient's phone \
                     is asked before a drugstore may open a prescription",
                )
            })?;
            let card = cards::find_by_number(txn, &card_number)
                .await?
                .filter(|card| card.holder.uuid() == loaded.row.patient_party_id)
                // Another patient's card: as if the prescription did not exist.
                .ok_or(CoreError::NotFound("prescription"))?;
            card.ensure_active()?;
            // Each request texts the patient: a drugstore cannot flood the phone.
            let since = now - chrono::Duration::minutes(CONSENT_WINDOW_MINUTES);
            let recent = prescription_events::Entity::find()
                .filter(prescription_events::Column::PrescriptionId.eq(loaded.row.id))
                .filter(prescription_events::Column::Kind.eq("consent_requested"))
                .filter(prescription_events::Column::At.gte(since))
                .count(txn)
                .await?;
            if recent >= MAX_CONSENT_REQUESTS {
                return Err(CoreError::TooManyAttempts.into());
            }
            if loaded.row.state == PrescriptionState::AwaitingConsent {
                // The same drugstore asks again (the text was lost): the old code goes void.
                if let Some(old) = loaded.row.consent_challenge_id {
                    challenge::void_in_txn(txn, &core.clock, ChallengeId::from_uuid(old)).await?;
                }
            }
            let to = match loaded.row.state {
                PrescriptionState::AwaitingConsent => PrescriptionState::AwaitingConsent,
                state => state.request_open()?,
            };
            let asked = challenge::issue_challenge_in_txn(
                txn,
                &core.clock,
                &core.keys,
                &core.policy,
                NewChallenge {
                    purpose: ChallengePurpose::PrescriptionOpen,
                    party: card.holder,
                    phone: card.phone.clone(),
                    subject: Some(loaded.row.id),
                    binding: consent_binding(&loaded.number(), &drugstore.name),
                    note: Some("only this drugstore will see it; deny if you are not there".into()),
                },
            )
            .await?;
            timers::cancel_in_txn(txn, CONSENT_TIMER, loaded.row.id).await?;
            timers::schedule_in_txn(
                txn,
                &core.clock,
                CONSENT_TIMER,
                loaded.row.id,
                asked.expires_at,
            )
            .await?;
            let (secret, hash) = new_secret();
            loaded.row.holder_drugstore_party_id = mine;
            loaded.row.claim_secret_hash = Some(hash);
            loaded.row.consent_challenge_id = Some(asked.id.uuid());
            loaded.row.consent_expires_at = Some(asked.expires_at);
            transition_in_txn(
                txn,
                core,
                &mut loaded,
                to,
                "consent_requested",
                Some(actor.party()),
                Some(format!("by {}", drugstore.name)),
            )
            .await?;
            Ok(Claim {
                prescription_number: loaded.number(),
                state: to,
                claim_secret: secret,
                consent_expires_at: Some(asked.expires_at),
            })
        }
        state if state.is_claimed() && loaded.row.holder_drugstore_party_id != mine => {
            Err(PharmacyError::HeldElsewhere)
        }
        state if state.is_claimed() && state.is_undispensed() => {
            reissue_secret_in_txn(txn, core, actor, drugstore, &mut loaded).await
        }
        // Dispensed or settled: the holder used its secret to get there, and needs no new one.
        state => Err(PharmacyError::refused(crate::state::TransitionError {
            state,
            action: "claim it",
        })),
    }
}

/// How many times the drugstore holding a prescription may have its claim secret re-issued
/// within [`SECRET_REISSUE_WINDOW_MINUTES`]. Each is a line in the prescription's history.
pub const MAX_SECRET_REISSUES: u64 = 5;
pub const SECRET_REISSUE_WINDOW_MINUTES: i64 = 60;

/// The drugstore already holding the prescription claims it again: it lost the claim's answer,
/// and with it the secret every later request needs (handing it back too). A fresh secret
/// replaces the stored hash, so the old one stops working wherever it was kept; nothing else
/// changes, and the patient's consent still covers this drugstore only.
async fn reissue_secret_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    actor: &Actor,
    drugstore: &Drugstore,
    loaded: &mut Loaded,
) -> PharmacyResult<Claim> {
    let now = core.clock.now();
    let since = now - chrono::Duration::minutes(SECRET_REISSUE_WINDOW_MINUTES);
    let recent = prescription_events::Entity::find()
        .filter(prescription_events::Column::PrescriptionId.eq(loaded.row.id))
        .filter(prescription_events::Column::Kind.eq(SECRET_REISSUED))
        .filter(prescription_events::Column::At.gte(since))
        .count(txn)
        .await?;
    if recent >= MAX_SECRET_REISSUES {
        return Err(CoreError::TooManyAttempts.into());
    }
    let (secret, hash) = new_secret();
    loaded.row.claim_secret_hash = Some(hash);
    let state = loaded.row.state;
    rx::save_in_txn(txn, core, &loaded.row, state).await?;
    record_event_at(
        txn,
        loaded.row.id,
        SECRET_REISSUED,
        None,
        None,
        Some(actor.party()),
        Some(format!("to {}", drugstore.name)),
        now,
    )
    .await?;
    Ok(Claim {
        prescription_number: loaded.number(),
        state,
        claim_secret: secret,
        consent_expires_at: None,
    })
}

/// The history's name for a re-issued claim secret.
const SECRET_REISSUED: &str = "claim_secret_reissued";

/// Withdraws a request to open: the patient denied it, or did not answer in time. The
/// prescription returns to the pool and the asking drugstore's secret is deleted.
pub(crate) async fn withdraw_consent_request_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    loaded: &mut Loaded,
    kind: &str,
) -> PharmacyResult<()> {
    let to = loaded.row.state.refuse_consent()?;
    if let Some(asked) = loaded.row.consent_challenge_id {
        challenge::close_in_txn(txn, &core.clock, ChallengeId::from_uuid(asked)).await?;
    }
    timers::cancel_in_txn(txn, CONSENT_TIMER, loaded.row.id).await?;
    let drugstore = loaded.row.holder_drugstore_party_id.map(PartyId::from_uuid);
    loaded.row.holder_drugstore_party_id = None;
    loaded.row.claim_secret_hash = None;
    loaded.row.consent_challenge_id = None;
    loaded.row.consent_expires_at = None;
    transition_in_txn(txn, core, loaded, to, kind, None, None).await?;
    if let Some(drugstore) = drugstore {
        rx::notify_in_txn(txn, core, drugstore, "prescription.open_refused", loaded).await?;
    }
    Ok(())
}

/// The patient's answer to a `prescription_open` confirmation. Lock order: the prescription,
/// then the challenge.
#[tracing::instrument(name = "pharmacy.answer_consent", skip_all, fields(challenge_id = %challenge_id, prescription_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn answer_consent_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    challenge_id: ChallengeId,
    code: &str,
    decision: Decision,
) -> PharmacyResult<VerticalAnswer> {
    challenge::parse_code(code)?;
    let unlocked = challenge::get_challenge(txn, challenge_id).await?;
    let subject = unlocked
        .subject
        .filter(|_| unlocked.purpose == ChallengePurpose::PrescriptionOpen)
        .ok_or(CoreError::NotFound("challenge"))?;
    // Not `lock_in_txn`: its catch-up would withdraw a lapsed request before the answer could
    // report the code as expired.
    let mut loaded = rx::lock_raw_in_txn(txn, subject).await?;
    let asked = challenge::lock_challenge_in_txn(txn, challenge_id).await?;
    let current = loaded.row.state == PrescriptionState::AwaitingConsent
        && loaded.row.consent_challenge_id == Some(challenge_id.uuid());
    if !current {
        // Superseded by a newer request, or the prescription moved on: the code is void.
        challenge::void_in_txn(txn, &core.clock, challenge_id).await?;
        return Ok(VerticalAnswer::Refused(CoreError::ChallengeClosed {
            status: "voided",
        }));
    }
    let drugstore_id = loaded
        .row
        .holder_drugstore_party_id
        .map(PartyId::from_uuid)
        .ok_or(CoreError::NotFound("drugstore"))?;
    let drugstore = parties::get_drugstore(txn, drugstore_id).await?;
    let now = core.clock.now();
    if now >= loaded.row.expires_at {
        challenge::void_in_txn(txn, &core.clock, challenge_id).await?;
        return Ok(VerticalAnswer::Refused(PharmacyError::Expired.into_core()));
    }
    let answer = challenge::answer_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &asked,
        code,
        decision,
        &consent_binding(&loaded.number(), &drugstore.name),
    )
    .await?;
    match answer {
        Answer::Approved(_) => {
            let to = loaded.row.state.consent()?;
            timers::cancel_in_txn(txn, CONSENT_TIMER, loaded.row.id).await?;
            loaded.row.claimed_at = Some(now);
            loaded.row.consent_challenge_id = None;
            loaded.row.consent_expires_at = None;
            let patient = PartyId::from_uuid(loaded.row.patient_party_id);
            transition_in_txn(
                txn,
                core,
                &mut loaded,
                to,
                "consent_given",
                Some(patient),
                Some(format!("{} may open it", drugstore.name)),
            )
            .await?;
            rx::notify_in_txn(txn, core, drugstore_id, "prescription.opened", &loaded).await?;
            Ok(VerticalAnswer::Applied(serde_json::json!({
                "prescription_number": loaded.number(),
                "state": to,
                "drugstore": drugstore.name,
            })))
        }
        Answer::Denied(_) => {
            withdraw_consent_request_in_txn(txn, core, &mut loaded, "consent_denied").await?;
            Ok(VerticalAnswer::Applied(serde_json::json!({
                "prescription_number": loaded.number(),
                "state": loaded.row.state,
                "drugstore": drugstore.name,
            })))
        }
        Answer::WrongCode { attempts_left } => Ok(VerticalAnswer::Refused(CoreError::WrongCode {
            attempts_left,
        })),
        refused => {
            // Expired, locked by wrong codes, or what it confirmed changed: the request ends.
            withdraw_consent_request_in_txn(txn, core, &mut loaded, "consent_lapsed").await?;
            Ok(VerticalAnswer::Refused(
                challenge::answer_error(&refused).unwrap_or(CoreError::ChallengeNotAnswerable),
            ))
        }
    }
}

/// The consent timer: a request to open nobody answered returns the prescription to the pool.
#[tracing::instrument(name = "pharmacy.consent_lapsed", skip_all, fields(prescription_id = %prescription, case_id = tracing::field::Empty))]
pub(crate) async fn lapse_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    prescription: Uuid,
) -> PharmacyResult<()> {
    // Locking catches up: a lapsed request is withdrawn there.
    rx::lock_in_txn(txn, core, prescription).await?;
    Ok(())
}

/// The holder gives the prescription back to the pool, before it is dispensed: its secret is
/// deleted, a price and any payment are dropped (a hold is voided), and the patient may take
/// it to any member drugstore — also one it had not chosen.
#[tracing::instrument(name = "pharmacy.hand_back", skip_all, fields(prescription_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn hand_back_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    actor: &Actor,
    number: &PrescriptionNumber,
    secret: Option<&str>,
) -> PharmacyResult<PrescriptionSummary> {
    let mut loaded = lock_by_number_in_txn(txn, core, number).await?;
    let drugstore = check_holder(&loaded, actor, secret)?.clone();
    let to = loaded.row.state.hand_back()?;
    if let Some(case) = loaded.case.as_mut()
        && matches!(
            case.state,
            CaseState::AwaitingOrderConfirmation | CaseState::Frozen
        )
    {
        escrow::withdraw_in_txn(
            txn,
            core,
            case,
            "the drugstore handed the prescription back".to_owned(),
        )
        .await?;
    }
    let row = &mut loaded.row;
    row.holder_drugstore_party_id = None;
    row.routed_drugstore_party_id = None;
    row.claim_secret_hash = None;
    row.claimed_at = None;
    row.price = None;
    row.commission = None;
    row.currency = None;
    row.payment_method = None;
    row.installment_months = None;
    row.case_id = None;
    loaded.case = None;
    transition_in_txn(
        txn,
        core,
        &mut loaded,
        to,
        "handed_back",
        Some(actor.party()),
        Some(format!("by {}", drugstore.name)),
    )
    .await?;
    text_patient_in_txn(
        txn,
        core,
        &loaded.row,
        format!(
            "Holdfast: {} handed prescription {} back; nothing is held for it. Show your medical \
             card at any member drugstore.",
            drugstore.name,
            loaded.number()
        ),
    )
    .await?;
    let summaries = PrescriptionSummary {
        prescription_number: loaded.number(),
        state: loaded.row.state,
        item_count: rx::item_count(txn, loaded.row.id).await?,
        valid_until: loaded.row.expires_at,
        held_by: None,
        price: None,
        created_at: loaded.row.created_at,
    };
    Ok(summaries)
}

/// Records a step that changes no state (a settlement request) in the history.
pub(crate) async fn note_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    loaded: &Loaded,
    kind: &str,
    actor: Option<PartyId>,
) -> PharmacyResult<()> {
    record_event_at(
        txn,
        loaded.row.id,
        kind,
        None,
        None,
        actor,
        None,
        core.clock.now(),
    )
    .await
}
