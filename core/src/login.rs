//! Logging in on the phone: a shopper names who they are, the phone mapped to them gets a
//! `login` challenge, and the code proves they hold that phone.

use crate::Core;
use crate::challenge::{self, Answer, ChallengeBinding, ChallengePurpose, NewChallenge};
use crate::error::{CoreError, CoreResult};
use crate::ids::{ChallengeId, PartyId};
use crate::parties::{self, Party, Role};
use sea_orm::DatabaseTransaction;

/// Sends a login code to the shopper's phone.
pub async fn start_phone_login_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    party: PartyId,
) -> CoreResult<challenge::Challenge> {
    let party = parties::find_party(txn, party)
        .await?
        .filter(|p| p.role == Role::Shopper)
        .ok_or(CoreError::NotFound("shopper"))?;
    let phone = party
        .phone
        .ok_or_else(|| CoreError::invalid("this shopper has no phone to log in with"))?;
    challenge::issue_challenge_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &core.policy,
        NewChallenge {
            purpose: ChallengePurpose::Login,
            party: party.id,
            phone,
            subject: None,
            binding: ChallengeBinding::default(),
        },
    )
    .await
}

/// What a login answer did. A refusal changed the challenge and must be committed.
#[derive(Debug)]
pub enum LoginEffect {
    LoggedIn(Party),
    Refused(CoreError),
}

pub async fn answer_login_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    challenge_id: ChallengeId,
    code: &str,
) -> CoreResult<LoginEffect> {
    let challenge = challenge::lock_challenge_in_txn(txn, challenge_id).await?;
    if challenge.purpose != ChallengePurpose::Login {
        return Err(CoreError::NotFound("challenge"));
    }
    let answer = challenge::answer_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &challenge,
        code,
        challenge::Decision::Approve,
        &ChallengeBinding::default(),
    )
    .await?;
    Ok(match answer {
        Answer::Approved(approved) => {
            LoginEffect::LoggedIn(parties::get_party(txn, approved.party).await?)
        }
        refused => LoginEffect::Refused(
            challenge::answer_error(&refused).unwrap_or(CoreError::ChallengeNotAnswerable),
        ),
    })
}

/// [`start_phone_login_in_txn`] in a transaction of its own.
pub async fn start_phone_login(
    db: &sea_orm::DatabaseConnection,
    core: &Core,
    party: PartyId,
) -> CoreResult<challenge::Challenge> {
    let txn = crate::db::begin_write(db).await?;
    let challenge = start_phone_login_in_txn(&txn, core, party).await?;
    txn.commit().await?;
    core.wake_outbox();
    Ok(challenge)
}

/// [`answer_login_in_txn`] in a transaction of its own: the logged-in party, or the refusal
/// (committed first, so that a wrong code counts).
pub async fn answer_login(
    db: &sea_orm::DatabaseConnection,
    core: &Core,
    challenge_id: ChallengeId,
    code: &str,
) -> CoreResult<Party> {
    let txn = crate::db::begin_write(db).await?;
    let effect = answer_login_in_txn(&txn, core, challenge_id, code).await?;
    txn.commit().await?;
    match effect {
        LoginEffect::LoggedIn(party) => Ok(party),
        LoginEffect::Refused(error) => Err(error),
    }
}
