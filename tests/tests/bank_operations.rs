//! Money in and out of the banks through the server: bank runs hand payouts to the simulated
//! bank, whose statements come back and are imported; deposits arrive by bank transfer with
//! their RF reference; each day reconciles, and what does not is listed for an operator, who
//! resolves it with a reason. On SQLite, and on PostgreSQL with `TEST_DATABASE_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use holdfast_core::banking::destinations::{self, BankAccount};
use holdfast_core::banking::payouts::{self, PayoutAmount, PayoutRequest, PayoutStatus};
use holdfast_core::banking::runs;
use holdfast_core::ids::{AccountId, PartyId};
use holdfast_core::ledger::{self, Leg, NewTransfer, TransferKind};
use holdfast_core::{Currency, Money};
use holdfast_server::bank_gateways;
use holdfast_tests::world::{Desk, card_request, random_phone};
use holdfast_tests::{TestApp, on_postgres, test_epoch, usd};
use serde_json::{Value, json};
use std::str::FromStr;

const OWN_IBAN: &str = "DE89370400440532013000";
const PAYEE_IBAN: &str = "DE44500105175407324931";

/// An institution with its own account at the simulated bank, and a card holder who sells: a
/// prepaid account (with its deposit reference) and a withdrawal account.
struct Bank {
    app: TestApp,
    operator: String,
    desk: Desk,
    institution: PartyId,
    holder: PartyId,
    holder_token: String,
    prepaid: AccountId,
    withdrawal: AccountId,
    reference: String,
}

fn money(minor: i64) -> Money {
    Money::from_minor(minor, Currency::USD).unwrap()
}

impl Bank {
    async fn open() -> Bank {
        let app = TestApp::spawn().await;
        let operator = app.operator_token().await;
        let desk = app.institution(&operator, "0042", "bank", json!({})).await;
        let own = app
            .request(
                Method::PUT,
                "/v1/institution/bank-accounts/USD",
                Some(&desk.token),
                Some(json!({"iban": OWN_IBAN, "holder_name": "Bank 0042"})),
                &[],
            )
            .await;
        assert_eq!(own.status, StatusCode::OK, "{own:?}");
        let phone = random_phone();
        let issued = app
            .issue_card(
                &desk,
                card_request("prepaid", &phone, json!({"seller": true})),
            )
            .await;
        let card = issued["card"]["card_number"].as_str().unwrap().to_owned();
        let holder_token = app.card_login(&card, &phone).await;
        let id = |v: &Value| v.as_str().unwrap().to_owned();
        let prepaid = AccountId::from_str(&id(&issued["funding_account"]["id"])).unwrap();
        let withdrawal = AccountId::from_str(&id(&issued["withdrawal_account"]["id"])).unwrap();
        let reference = app
            .get(
                &format!("/v1/accounts/{prepaid}/deposit-reference"),
                Some(&holder_token),
            )
            .await;
        assert_eq!(reference.status, StatusCode::OK, "{reference:?}");
        assert_eq!(reference.body["pay_to"]["account"], OWN_IBAN);
        Bank {
            institution: PartyId::from_str(&desk.id).unwrap(),
            holder: PartyId::from_str(&id(&issued["card"]["holder_id"])).unwrap(),
            reference: id(&reference.body["reference"]),
            app,
            operator,
            desk,
            holder_token,
            prepaid,
            withdrawal,
        }
    }

    async fn simulate(&self, path: &str, body: Value) -> Value {
        let reply = self
            .app
            .post(
                &format!("/v1/simulator/bank/{path}"),
                Some(&self.operator),
                body,
            )
            .await;
        assert!(reply.status.is_success(), "{reply:?}");
        reply.body
    }

    /// A shopper's bank transfer arrives at the bank with `remittance`.
    async fn credit(&self, amount: &str, remittance: Option<&str>) {
        self.simulate(
            "credits",
            json!({"institution_id": self.institution, "amount": usd(amount),
                   "remittance": remittance}),
        )
        .await;
    }

    async fn close_day(&self) {
        self.simulate(
            "close-day",
            json!({"institution_id": self.institution, "day": test_epoch().date_naive()}),
        )
        .await;
    }

    async fn balance(&self, account: AccountId) -> i64 {
        ledger::get_account(&self.app.state.db, account)
            .await
            .unwrap()
            .balance
    }

    async fn write<T>(
        &self,
        step: impl AsyncFnOnce(
            &sea_orm::DatabaseTransaction,
            &holdfast_core::Core,
        ) -> holdfast_core::CoreResult<T>,
    ) -> T {
        self.app.state.in_write_txn(step).await.unwrap()
    }

    /// The holder's sale, settled: `minor` from its prepaid to its withdrawal account (what a
    /// settled order does, without the order).
    async fn earn(&self, minor: i64, key: &str) {
        let (from, to) = (self.prepaid, self.withdrawal);
        let key = key.to_owned();
        self.write(async move |txn, core| {
            ledger::post_transfer_in_txn(
                txn,
                &core.clock,
                NewTransfer {
                    key,
                    kind: TransferKind::Settle,
                    currency: Currency::USD,
                    legs: vec![
                        Leg::debit(from, money(minor)),
                        Leg::credit(to, money(minor)),
                    ],
                    hold: None,
                    case: None,
                },
            )
            .await
        })
        .await;
    }

    /// The holder's confirmed payout destination (as the payee API would make it).
    async fn destination(&self) {
        let holder = self.holder;
        let pending = self
            .write(async move |txn, core| {
                destinations::register_in_txn(
                    txn,
                    &core.clock,
                    holder,
                    BankAccount::iban(PAYEE_IBAN)?,
                    "Holder",
                )
                .await
            })
            .await;
        self.write(async move |txn, core| {
            destinations::confirm_in_txn(txn, &core.clock, holder, pending.id).await
        })
        .await;
    }

    async fn pay_out(&self, minor: i64, key: &str) -> payouts::Payout {
        let request = PayoutRequest {
            party: self.holder,
            amount: PayoutAmount::Exactly(money(minor)),
            key: key.into(),
            institution: self.institution,
        };
        self.write(async move |txn, core| payouts::request_in_txn(txn, &core.clock, request).await)
            .await
            .into_inner()
    }

    async fn payout(&self, e2e: &str) -> payouts::Payout {
        payouts::by_end_to_end_id(&self.app.state.db, e2e)
            .await
            .unwrap()
    }

    async fn bank_run(&self) -> Value {
        let run = self
            .app
            .post("/v1/operator/bank-runs", Some(&self.operator), json!({}))
            .await;
        assert_eq!(run.status, StatusCode::OK, "{run:?}");
        run.body
    }

    async fn reconcile(&self) -> Value {
        let run = self
            .app
            .post(
                "/v1/institution/reconciliations",
                Some(&self.desk.token),
                json!({"day": test_epoch().date_naive(), "currency": "USD"}),
            )
            .await;
        assert_eq!(run.status, StatusCode::OK, "{run:?}");
        run.body
    }

    async fn upload(&self, xml: &str) -> Value {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/v1/institution/statements")
            .header("authorization", format!("Bearer {}", self.desk.token))
            .header("content-type", "application/xml")
            .body(Body::from(xml.to_owned()))
            .unwrap();
        let reply = self.app.send(request).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.body
    }

    async fn discrepancies(&self) -> i64 {
        self.app
            .count_rows("party_events WHERE kind = 'reconciliation.discrepancy'")
            .await
    }
}

#[tokio::test]
async fn a_payout_goes_out_in_a_run_comes_back_paid_and_the_day_reconciles_clean() {
    let b = Bank::open().await;
    // The money came in by bank transfer with the holder's reference: a deposit.
    b.credit("100.00", Some(&b.reference)).await;
    assert_eq!(b.balance(b.prepaid).await, 10_000);
    b.earn(60_00, "sale-1").await;
    b.destination().await;
    let payout = b.pay_out(30_00, "p1").await;

    let run = b.bank_run().await;
    assert_eq!(run["files_prepared"], 1);
    assert_eq!(run["payouts_sent"], 1);
    assert_eq!(run["files_handed_over"], 1);
    // The bank's notification of the debit came back and settled the payout.
    assert_eq!(run["statements_imported"], 1);
    assert_eq!(
        b.payout(&payout.end_to_end_id).await.status,
        PayoutStatus::Paid
    );
    assert_eq!(b.balance(b.withdrawal).await, 30_00);
    // Nothing left to send: a second run prepares nothing.
    assert_eq!(b.bank_run().await["files_prepared"], 0);

    b.close_day().await;
    let day = b.reconcile().await;
    assert_eq!(day["bank_closing"], "70.00");
    assert_eq!(day["ledger_balance"], "70.00");
    assert_eq!(day["differences"], json!([]));
    assert_eq!(day["clean"], true, "{day}");
    assert_eq!(b.discrepancies().await, 0);
    // The stored run, as the institution and an operator list it: amounts as decimal text.
    let runs = b
        .app
        .get("/v1/institution/reconciliations", Some(&b.desk.token))
        .await;
    assert_eq!(runs.body["runs"][0]["bank_closing"], "70.00", "{runs:?}");
    assert_eq!(runs.body["runs"][0]["ledger_balance"], "70.00");
    assert_eq!(runs.body["runs"][0]["clean"], true);
    let seen_by_operator = b
        .app
        .get(
            &format!(
                "/v1/operator/reconciliations?institution_id={}&day={}&currency=USD",
                b.institution,
                day["day"].as_str().unwrap()
            ),
            Some(&b.operator),
        )
        .await;
    assert_eq!(
        seen_by_operator.body["reconciliation"], day,
        "{seen_by_operator:?}"
    );
    let not_for_institutions = b
        .app
        .get(
            &format!(
                "/v1/operator/reconciliations?institution_id={}",
                b.institution
            ),
            Some(&b.desk.token),
        )
        .await;
    assert_eq!(not_for_institutions.status, StatusCode::FORBIDDEN);

    let statements = b
        .app
        .get("/v1/institution/statements", Some(&b.desk.token))
        .await;
    let kinds: Vec<_> = statements
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["end_of_day", "notification", "notification"]);
    // Paged: one at a time, by the cursor the list gave out.
    let first = b
        .app
        .get("/v1/institution/statements?limit=2", Some(&b.desk.token))
        .await;
    assert_eq!(first.body.as_array().unwrap().len(), 2);
    let cursor = first.headers["next-cursor"].to_str().unwrap().to_owned();
    let rest = b
        .app
        .get(
            &format!("/v1/institution/statements?limit=2&cursor={cursor}"),
            Some(&b.desk.token),
        )
        .await;
    assert_eq!(rest.body.as_array().unwrap().len(), 1);
    assert!(rest.headers.get("next-cursor").is_none());
    b.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_returned_payout_is_back_on_the_withdrawal_account_with_the_banks_reason() {
    let b = Bank::open().await;
    b.credit("50.00", Some(&b.reference)).await;
    b.earn(50_00, "sale-1").await;
    b.destination().await;
    let payout = b.pay_out(20_00, "p1").await;
    b.bank_run().await;
    assert_eq!(b.balance(b.withdrawal).await, 30_00);

    b.simulate(
        "returns",
        json!({"end_to_end_id": payout.end_to_end_id, "reason": "AC04"}),
    )
    .await;
    let returned = b.payout(&payout.end_to_end_id).await;
    assert_eq!(returned.status, PayoutStatus::Returned);
    assert!(
        returned
            .return_reason
            .as_deref()
            .unwrap_or("")
            .contains("AC04"),
        "{returned:?}"
    );
    assert_eq!(b.balance(b.withdrawal).await, 50_00);
    // A payout is returned once.
    let again = b
        .app
        .post(
            "/v1/simulator/bank/returns",
            Some(&b.operator),
            json!({"end_to_end_id": payout.end_to_end_id, "reason": "AC04"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");

    b.close_day().await;
    let day = b.reconcile().await;
    assert_eq!(day["clean"], true, "{day}");
    b.app.assert_ledger_clean().await;
}

fn notification(message_id: &str, reference: &str, amount: &str, remittance: &str) -> String {
    format!(
        r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"><BkToCstmrDbtCdtNtfctn>
<GrpHdr><MsgId>{message_id}</MsgId></GrpHdr><Ntfctn><Id>{message_id}-1</Id>
<Acct><Id><IBAN>{OWN_IBAN}</IBAN></Id><Ccy>USD</Ccy></Acct>
<Ntry><Amt Ccy="USD">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
<BookgDt><Dt>2026-03-11</Dt></BookgDt><AcctSvcrRef>{reference}</AcctSvcrRef>
<NtryDtls><TxDtls><RmtInf><Ustrd>{remittance}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>"#
    )
}

#[tokio::test]
async fn the_same_statement_uploaded_twice_is_imported_once() {
    let b = Bank::open().await;
    let xml = notification("UPLOAD-1", "BANKREF-1", "25.00", &b.reference);
    let first = b.upload(&xml).await;
    assert_eq!(first["imported"], true);
    assert_eq!(first["deposits"], 1);
    let second = b.upload(&xml).await;
    assert_eq!(second["imported"], false);
    assert_eq!(b.balance(b.prepaid).await, 25_00);

    // Not a camt document, and a statement of someone else's account: 400 with a stable code.
    for bad in [
        "<not-xml".to_owned(),
        notification("UPLOAD-2", "R2", "1.00", "x").replace(OWN_IBAN, PAYEE_IBAN),
    ] {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/v1/institution/statements")
            .header("authorization", format!("Bearer {}", b.desk.token))
            .header("content-type", "application/xml")
            .body(Body::from(bad))
            .unwrap();
        let reply = b.app.send(request).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
        assert_eq!(reply.code(), "invalid_request");
    }
    b.app.assert_ledger_clean().await;
}

/// A notification of `count` deposits of 0.01 to `reference`, each with its own bank reference.
fn many_deposits(message_id: &str, reference: &str, count: usize) -> String {
    let entry = |n: usize| {
        format!(
            r#"<Ntry><Amt Ccy="USD">0.01</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
<BookgDt><Dt>2026-03-11</Dt></BookgDt><AcctSvcrRef>{message_id}-{n}</AcctSvcrRef>
<NtryDtls><TxDtls><RmtInf><Ustrd>{reference}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
"#
        )
    };
    let entries: String = (0..count).map(entry).collect();
    format!(
        r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"><BkToCstmrDbtCdtNtfctn>
<GrpHdr><MsgId>{message_id}</MsgId></GrpHdr><Ntfctn><Id>{message_id}-1</Id>
<Acct><Id><IBAN>{OWN_IBAN}</IBAN></Id><Ccy>USD</Ccy></Acct>
{entries}</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>"#
    )
}

#[tokio::test]
async fn a_statement_larger_than_other_bodies_imports_and_one_past_8_mib_gets_413() {
    let b = Bank::open().await;
    // Real end-of-day files run far past the 64 KiB other routes take.
    let xml = many_deposits("LARGE-1", &b.reference, 900);
    assert!(xml.len() > 200 * 1024, "{}", xml.len());
    let imported = b.upload(&xml).await;
    assert_eq!(imported["imported"], true, "{imported}");
    assert_eq!(imported["deposits"], 900, "{imported}");
    assert_eq!(b.balance(b.prepaid).await, 9_00);

    let oversized = "x".repeat(holdfast_core::banking::camt::MAX_STATEMENT_BYTES + 1);
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/institution/statements")
        .header("authorization", format!("Bearer {}", b.desk.token))
        .header("content-type", "application/xml")
        .body(Body::from(oversized))
        .unwrap();
    let reply = b.app.send(request).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{reply:?}");
    assert_eq!(reply.code(), "body_too_large");

    // Every other route keeps its 64 KiB.
    let request = Request::builder()
        .method(Method::PUT)
        .uri("/v1/institution/bank-accounts/USD")
        .header("authorization", format!("Bearer {}", b.desk.token))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"iban": OWN_IBAN, "holder_name": "x".repeat(100 * 1024)}).to_string(),
        ))
        .unwrap();
    let reply = b.app.send(request).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{reply:?}");
    b.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_credit_without_a_reference_waits_for_an_operator_and_a_mismatch_raises_a_discrepancy() {
    let b = Bank::open().await;
    b.credit("40.00", Some(&b.reference)).await;
    assert_eq!(b.balance(b.prepaid).await, 40_00);
    b.credit("7.00", Some("for my card")).await;
    b.credit("3.00", None).await;
    assert_eq!(b.balance(b.prepaid).await, 40_00);

    b.close_day().await;
    let day = b.reconcile().await;
    assert_eq!(day["clean"], false);
    assert_eq!(day["balance_difference"], "10.00");
    let kinds: Vec<_> = day["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["kind"].clone(), d["amount"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (json!("missing_on_our_side"), json!("7.00")),
            (json!("missing_on_our_side"), json!("3.00")),
        ]
    );
    assert_eq!(b.discrepancies().await, 1);

    let open = b
        .app
        .get("/v1/operator/reconciliation/open-items", Some(&b.operator))
        .await;
    assert_eq!(open.status, StatusCode::OK);
    let items = open.body.as_array().unwrap();
    assert_eq!(items.len(), 2);
    let stray = items.iter().find(|i| i["amount"] == "7.00").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let unknown = items.iter().find(|i| i["amount"] == "3.00").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A reason is required.
    let no_reason = b
        .app
        .post(
            &format!("/v1/operator/bank-entries/{stray}/assign"),
            Some(&b.operator),
            json!({"account_id": b.prepaid, "reason": " "}),
        )
        .await;
    assert_eq!(no_reason.status, StatusCode::BAD_REQUEST);
    let assigned = b
        .app
        .post(
            &format!("/v1/operator/bank-entries/{stray}/assign"),
            Some(&b.operator),
            json!({"account_id": b.prepaid, "reason": "the shopper phoned: their top-up"}),
        )
        .await;
    assert_eq!(assigned.status, StatusCode::OK, "{assigned:?}");
    assert_eq!(b.balance(b.prepaid).await, 47_00);
    let resolved = b
        .app
        .post(
            &format!("/v1/operator/bank-entries/{unknown}/resolve"),
            Some(&b.operator),
            json!({"reason": "bank fee refund, booked outside Holdfast"}),
        )
        .await;
    assert_eq!(resolved.status, StatusCode::OK, "{resolved:?}");
    assert_eq!(resolved.body["status"], "resolved");

    // The 3.00 stays a balance difference (nobody's money in the ledger), explained.
    let day = b.reconcile().await;
    assert_eq!(day["differences"], json!([]), "{day}");
    assert_eq!(day["balance_difference"], "3.00");
    let _ = &b.holder_token;
    b.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_file_handed_to_the_bank_twice_is_booked_once() {
    let b = Bank::open().await;
    b.credit("10.00", Some(&b.reference)).await;
    b.earn(10_00, "sale-1").await;
    b.destination().await;
    let payout = b.pay_out(10_00, "p1").await;
    b.bank_run().await;
    let file = {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        holdfast_core::entities::bank_files::Entity::find()
            .filter(
                holdfast_core::entities::bank_files::Column::InstitutionPartyId
                    .eq(b.institution.uuid()),
            )
            .one(&b.app.state.db)
            .await
            .unwrap()
            .unwrap()
    };
    let gateway = b.app.state.bank_gateway.clone().unwrap();
    gateway
        .hand_over(&runs::BankFile::from(file.clone()))
        .await
        .unwrap();
    let bank = b.app.state.simulated_bank.clone().unwrap();
    assert_eq!(bank.entries_naming(&payout.end_to_end_id).await.unwrap(), 1);
    assert_eq!(
        bank.take_file(b.institution, &file.content).await.unwrap(),
        bank_gateways::Taken::AlreadyTaken
    );
    b.close_day().await;
    assert_eq!(b.reconcile().await["clean"], true);
    b.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn concurrent_bank_runs_never_put_a_payout_in_two_files() {
    let b = Bank::open().await;
    b.credit("100.00", Some(&b.reference)).await;
    b.earn(10_000, "sale-1").await;
    b.destination().await;
    let mut sent = Vec::new();
    for n in 0..12 {
        sent.push(b.pay_out(1_00, &format!("p{n}")).await);
    }
    let rounds = if on_postgres() { 4 } else { 2 };
    let runs: Vec<_> = (0..rounds)
        .map(|_| {
            let state = b.app.state.clone();
            tokio::spawn(async move { bank_gateways::bank_round(&state).await })
        })
        .collect();
    let mut prepared = 0;
    for run in runs {
        // On SQLite a round may meet the other's write lock: it fails whole and changes nothing.
        if let Ok(round) = run.await.unwrap() {
            prepared += round.payouts_sent;
        }
    }
    // Whatever a failed round left, the next takes.
    prepared += bank_gateways::bank_round(&b.app.state)
        .await
        .unwrap()
        .payouts_sent;
    assert_eq!(prepared, 12);
    let bank = b.app.state.simulated_bank.clone().unwrap();
    for payout in &sent {
        assert_eq!(bank.entries_naming(&payout.end_to_end_id).await.unwrap(), 1);
        assert_eq!(
            b.payout(&payout.end_to_end_id).await.status,
            PayoutStatus::Paid
        );
    }
    b.close_day().await;
    assert_eq!(b.reconcile().await["clean"], true);
    b.app.assert_ledger_clean().await;
}
