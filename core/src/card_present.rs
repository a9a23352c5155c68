//! Card-present authorisation: a shop terminal asks to authorise a card for an amount, and the
//! card holder's phone must confirm before the card company approves.

use crate::Core;
use crate::challenge::Decision;
use crate::error::{CoreError, CoreResult};
use crate::ids::ChallengeId;
use sea_orm::DatabaseTransaction;

/// What answering a `card_present` challenge did: a JSON summary for the response, or a
/// refusal that changed the challenge (committed, then reported).
#[derive(Debug)]
pub enum Answered {
    Applied(serde_json::Value),
    Refused(CoreError),
}

/// Answers a `card_present` challenge, as the holder's phone does.
pub async fn answer_in_txn(
    _txn: &DatabaseTransaction,
    _core: &Core,
    _challenge: ChallengeId,
    _code: &str,
    _decision: Decision,
) -> CoreResult<Answered> {
    Ok(Answered::Refused(CoreError::ChallengeNotAnswerable))
}
