//! The transaction runner (`server/src/txn.rs`): what a use case wrote is committed with the
//! answer, or not at all; an `Idempotency-Key` replays the first answer without running the
//! use case again; a refusal that must be kept is committed, remembered and still refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use axum::response::Response;
use holdfast_core::ids::PartyId;
use holdfast_core::parties::{self, NewParty, Party, Role};
use holdfast_core::{CoreError, CoreResult};
use holdfast_server::error::{ApiError, ApiResult};
use holdfast_server::idempotency::{IdempotencyKey, Idempotent, Outcome};
use holdfast_tests::TestApp;
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicUsize, Ordering};

fn distributor(name: &str) -> NewParty {
    NewParty {
        role: Role::Distributor,
        display_name: name.to_owned(),
    }
}

async fn exists(app: &TestApp, party: PartyId) -> bool {
    parties::find_party(&app.state.db, party)
        .await
        .unwrap()
        .is_some()
}

async fn body_of(response: Response) -> serde_json::Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn request(key: &str, body: &str) -> Idempotent {
    Idempotent::new(
        "test:runner".to_owned(),
        IdempotencyKey(Some(key.to_owned())),
        "runner_test",
        &body,
    )
}

#[tokio::test]
async fn a_use_case_that_fails_leaves_nothing_written_and_one_that_succeeds_commits() {
    let app = TestApp::spawn().await;
    let mut written = None;
    let failed: CoreResult<()> = app
        .state
        .in_write_txn(async |txn, core| {
            written = Some(
                parties::create_party_in_txn(txn, &core.clock, distributor("Rolled Back"))
                    .await?
                    .id,
            );
            Err(CoreError::Conflict)
        })
        .await;
    assert!(matches!(failed, Err(CoreError::Conflict)));
    assert!(!exists(&app, written.unwrap()).await);

    let kept: Party = app
        .state
        .in_write_txn(async |txn, core| {
            parties::create_party_in_txn(txn, &core.clock, distributor("Committed")).await
        })
        .await
        .unwrap();
    assert!(exists(&app, kept.id).await);
}

#[tokio::test]
async fn a_key_replays_the_first_answer_without_running_the_use_case_again() {
    let app = TestApp::spawn().await;
    let runs = AtomicUsize::new(0);
    let write = async |body: &str| -> ApiResult<Response> {
        app.state
            .write(
                request("key-1", body),
                StatusCode::CREATED,
                async |txn, core| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok(parties::create_party_in_txn(txn, &core.clock, distributor("Once")).await?)
                },
            )
            .await
    };
    let first = write("same").await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = body_of(first).await;

    let again = write("same").await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(body_of(again).await, first);

    let other = write("another body").await.unwrap_err();
    assert_eq!(other.status, StatusCode::CONFLICT);
    assert_eq!(other.body().error.code, "idempotency_key_reused");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failed_use_case_does_not_keep_its_key_so_a_retry_runs_it() {
    let app = TestApp::spawn().await;
    let failed = app
        .state
        .write(
            request("key-2", "body"),
            StatusCode::OK,
            async |_, _| -> ApiResult<()> { Err(ApiError::invalid("not yet")) },
        )
        .await
        .unwrap_err();
    assert_eq!(failed.status, StatusCode::BAD_REQUEST);

    let retried = app
        .state
        .write(request("key-2", "body"), StatusCode::OK, async |_, _| {
            Ok("done")
        })
        .await
        .unwrap();
    assert_eq!(retried.status(), StatusCode::OK);
    assert!(retried.headers().get("idempotent-replayed").is_none());
    assert_eq!(body_of(retried).await, "done");
}

#[tokio::test]
async fn a_refusal_is_committed_remembered_and_still_refused() {
    let app = TestApp::spawn().await;
    let mut written = None;
    let refused = app
        .state
        .write_outcome(
            request("key-3", "body"),
            StatusCode::OK,
            async |txn, core| -> ApiResult<Outcome<()>> {
                let party =
                    parties::create_party_in_txn(txn, &core.clock, distributor("Counted")).await?;
                written = Some(party.id);
                Ok(Outcome::Refused(ApiError::invalid("wrong code")))
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(exists(&app, written.unwrap()).await);

    let replayed = app
        .state
        .write_outcome(
            request("key-3", "body"),
            StatusCode::OK,
            async |_, _| -> ApiResult<Outcome<()>> { panic!("a replay does not run the use case") },
        )
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    assert_eq!(body_of(replayed).await["error"]["code"], "invalid_request");
}
