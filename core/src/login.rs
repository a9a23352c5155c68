//! Logging in on the phone: a shopper types an EC card number, the phone mapped to that card
//! gets a `login` challenge, and the code proves the shopper holds that phone. The session that
//! results is tied to the card: its class decides the catalogue, its mapping pays.

use crate::Core;
use crate::cards::{self, Card, CardId, CardNumber};
use crate::challenge::{self, Answer, ChallengeBinding, ChallengePurpose, NewChallenge};
use crate::error::{CoreError, CoreResult};
use crate::ids::ChallengeId;
use crate::login_throttle::{AttemptOutcome, ClientKey, LoginThrottle};
use crate::parties::{self, Party};
use sea_orm::DatabaseTransaction;

/// Sends a login code to the phone mapped to `number`. A number that cannot log in — unknown,
/// blocked or replaced — gets a decoy challenge instead, answered alike and sending nothing, so
/// that the answer does not tell which card numbers exist or are blocked.
pub async fn start_card_login_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    number: &CardNumber,
) -> CoreResult<challenge::Challenge> {
    let card = match cards::find_by_number(txn, number).await? {
        Some(card) if card.ensure_active().is_ok() => card,
        _ => {
            let subject = core.keys.decoy_subject(&number.to_string());
            return challenge::issue_decoy_login_in_txn(txn, &core.clock, &core.policy, subject)
                .await;
        }
    };
    challenge::issue_challenge_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &core.policy,
        NewChallenge {
            purpose: ChallengePurpose::Login,
            party: card.holder,
            phone: card.phone,
            subject: Some(card.id.uuid()),
            binding: ChallengeBinding::default(),
            note: None,
        },
    )
    .await
}

/// What a login answer did. A refusal changed the challenge and must be committed.
#[derive(Debug)]
pub enum LoginEffect {
    LoggedIn(Party, Card),
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
            let card_id = approved
                .subject
                .map(CardId::from_uuid)
                .ok_or(CoreError::NotFound("card"))?;
            let card = cards::get_card(txn, card_id).await?;
            card.ensure_active()?;
            LoginEffect::LoggedIn(parties::get_party(txn, approved.party).await?, card)
        }
        refused => LoginEffect::Refused(
            challenge::answer_error(&refused).unwrap_or(CoreError::ChallengeNotAnswerable),
        ),
    })
}

/// A password login from `client`: refused at once while that client must wait (too many
/// wrong passwords for this username from there, or for any username), otherwise checked, and
/// the outcome counted. Unknown usernames count like wrong passwords.
pub async fn password_login(
    db: &sea_orm::DatabaseConnection,
    core: &Core,
    throttle: &LoginThrottle,
    client: ClientKey,
    username: &str,
    password: &str,
) -> CoreResult<Party> {
    // Counted before the hash, so guesses sent side by side cannot outrun the limit.
    throttle.begin_attempt(username, client)?;
    // Far longer than any password: refused without hashing it.
    let verified = if password.len() > parties::MAX_PASSWORD_CHARS * 4 {
        Err(CoreError::BadCredentials)
    } else {
        parties::verify_password(db, &core.passwords, username, password).await
    };
    let outcome = match &verified {
        Ok(_) => AttemptOutcome::RightPassword,
        Err(CoreError::BadCredentials) => AttemptOutcome::WrongPassword,
        Err(_) => AttemptOutcome::NotChecked,
    };
    throttle.settle_attempt(username, client, outcome);
    verified
}
