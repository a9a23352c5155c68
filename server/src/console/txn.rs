//! Runs a page's use case (its `_in_txn` form) in the server's one transaction runner, keyed by
//! the nonce of the form that asked ([`super::page::FormClaim`]), as the API keys a request by
//! its `Idempotency-Key` ([`AppState::write_recorded`]).
//!
//! The use case's value is what the page needs to land (an order's number, the facts a page
//! shows): it is recorded with the claim, so the same rendered form sent again (a double
//! click, back and send again, a browser's retry) does not run the use case again and lands
//! where the first send landed. The same nonce with other fields is refused with the runner's
//! 409 (`idempotency_key_reused`); a form that sent no nonce is refused
//! (`form_nonce_required`). A refusal that changed something (a wrong code counted) is
//! committed, then shown, the second time as the first.

use super::page::{FormClaim, Notice, PageError};
use crate::error::ApiResult;
use crate::idempotency::Outcome;
use crate::state::AppState;
use crate::txn::Recorded;
use axum::http::StatusCode;
use holdfast_core::Core;
use sea_orm::DatabaseTransaction;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A page's write: `use_case` runs once per rendered form; its value (recorded) is handed
/// back, the second time as recorded the first.
pub async fn write<T, F>(state: &AppState, claim: FormClaim, use_case: F) -> Result<T, PageError>
where
    T: Serialize + DeserializeOwned,
    F: AsyncFnOnce(&DatabaseTransaction, &Core) -> ApiResult<T>,
{
    write_outcome(state, claim, async move |txn, core| {
        use_case(txn, core).await.map(Outcome::Done)
    })
    .await
}

/// [`write`] for a use case that may refuse after changing something that must be kept.
pub async fn write_outcome<T, F>(
    state: &AppState,
    claim: FormClaim,
    use_case: F,
) -> Result<T, PageError>
where
    T: Serialize + DeserializeOwned,
    F: AsyncFnOnce(&DatabaseTransaction, &Core) -> ApiResult<Outcome<T>>,
{
    let request = claim.required()?;
    match state.write_recorded(request, use_case).await {
        Ok(Recorded::Value(value)) => Ok(value),
        Ok(Recorded::Refused { status, body }) => Err(recorded_refusal(status, &body)),
        Err(error) if error.code == "idempotency_key_reused" => {
            Err(PageError::Api(crate::error::ApiError::new(
                StatusCode::CONFLICT,
                error.code,
                "this form was already sent with other values: reload the page to send it again",
            )))
        }
        Err(error) => Err(PageError::Api(error)),
    }
}

/// The refusal the first send recorded (the API's error body), to show again.
fn recorded_refusal(status: StatusCode, body: &[u8]) -> PageError {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Detail,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        code: String,
        message: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(Body { error }) => PageError::Recorded(
            status,
            Notice {
                code: error.code,
                message: error.message,
            },
        ),
        Err(e) => PageError::Api(crate::error::ApiError::internal(&e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_recorded_refusal_is_shown_again_with_its_status_code_and_message() {
        let body = br#"{"error":{"code":"wrong_code","message":"the code is wrong: 2 tries left","request_id":"r1"}}"#;
        match recorded_refusal(StatusCode::UNPROCESSABLE_ENTITY, body) {
            PageError::Recorded(status, notice) => {
                assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
                assert_eq!(notice.code, "wrong_code");
                assert_eq!(notice.message, "the code is wrong: 2 tries left");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            recorded_refusal(StatusCode::CONFLICT, b"not json"),
            PageError::Api(error) if error.status == StatusCode::INTERNAL_SERVER_ERROR
        ));
    }
}
