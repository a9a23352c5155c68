//! The bank side's pages in real headless Chromium: an institution imports a statement through
//! its "Statements & reconciliation" page and sees it reconciled, an operator resolves the
//! credit nobody's account matched (a blank reason is refused on the page, saying why), and a
//! payee registers a bank account, confirms it with its second password and asks for a payout.
//! The setup (the institution's own account, a payee with a second password) is made through
//! the API; everything after, through the pages, each checked with axe-core, by keyboard and at
//! phone width. See `holdfast_tests::browser`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_server::demo::{INSTITUTION_USERNAME, OPERATOR_USERNAME};
use holdfast_tests::browser::{DESKTOP_WINDOW, start_suite};
use serde_json::json;

const OWN_IBAN: &str = "DE89370400440532013000";

/// One credit of 12.34 USD whose payer's text names no account: it waits for an operator.
fn stray_credit(message_id: &str) -> String {
    format!(
        r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"><BkToCstmrDbtCdtNtfctn><GrpHdr><MsgId>{message_id}</MsgId></GrpHdr><Ntfctn><Id>{message_id}-1</Id><Acct><Id><IBAN>{OWN_IBAN}</IBAN></Id><Ccy>USD</Ccy></Acct><Ntry><Amt Ccy="USD">12.34</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2026-03-11</Dt></BookgDt><AcctSvcrRef>{message_id}-E1</AcctSvcrRef><NtryDtls><TxDtls><RmtInf><Ustrd>for my card</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry></Ntfctn></BkToCstmrDbtCdtNtfctn></Document>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_is_imported_on_its_page_and_an_operator_resolves_its_stray_credit() {
    let Some((server, driver)) = start_suite().await else {
        return;
    };
    let password = &server.demo.insurance.institution_password;
    let token = server
        .app
        .password_login(INSTITUTION_USERNAME, password)
        .await;
    let own = server
        .app
        .request(
            axum::http::Method::PUT,
            "/v1/institution/bank-accounts/USD",
            Some(&token),
            Some(json!({"iban": OWN_IBAN, "holder_name": "Demo Bank"})),
            &[],
        )
        .await;
    assert_eq!(own.status, axum::http::StatusCode::OK, "{own:?}");

    let bank = driver.browser(&server.base, DESKTOP_WINDOW).await.unwrap();
    bank.sign_in(INSTITUTION_USERNAME, password).await.unwrap();
    bank.visit("/institution/bank").await.unwrap();
    // Something that is not a statement: the error above the form, the text kept.
    bank.fill("camt.053 or camt.054 (XML)", "<not-a-statement/>")
        .await
        .unwrap();
    bank.press("Import").await.unwrap();
    let refused = bank.main_text().await.unwrap();
    assert!(refused.contains("invalid_request"), "{refused}");
    bank.fill("camt.053 or camt.054 (XML)", &stray_credit("BROWSER-1"))
        .await
        .unwrap();
    bank.press("Import").await.unwrap();
    let imported = bank.main_text().await.unwrap();
    assert!(imported.contains("Imported 1 entries"), "{imported}");
    assert!(imported.contains("BROWSER-1"), "{imported}");
    bank.visit("/institution/bank?day=2026-03-11&currency=USD")
        .await
        .unwrap();
    let day = bank.main_text().await.unwrap();
    assert!(day.contains("12.34"), "{day}");

    let operator = driver.browser(&server.base, DESKTOP_WINDOW).await.unwrap();
    operator
        .sign_in(OPERATOR_USERNAME, &server.demo.operator_password)
        .await
        .unwrap();
    operator.visit("/operator/reconciliation").await.unwrap();
    let open = operator.main_text().await.unwrap();
    assert!(open.contains("12.34 USD"), "{open}");
    // Spaces pass the browser's `required` but are no reason: refused on the page.
    operator.fill("Reason for resolving", "   ").await.unwrap();
    operator.press("Resolve").await.unwrap();
    let refused = operator.main_text().await.unwrap();
    assert!(
        refused.contains("needs a reason of 1 to 500 characters"),
        "{refused}"
    );
    operator
        .fill("Reason for resolving", "bank fee refund, booked elsewhere")
        .await
        .unwrap();
    operator.press("Resolve").await.unwrap();
    let resolved = operator.main_text().await.unwrap();
    assert!(resolved.contains("was resolved"), "{resolved}");
    assert!(resolved.contains("No open item."), "{resolved}");
    for browser in [bank, operator] {
        browser.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payee_registers_a_bank_account_confirms_it_and_asks_for_a_payout() {
    let Some((server, driver)) = start_suite().await else {
        return;
    };
    let operator = server.app.operator_token().await;
    let username = format!("sup-{}", uuid::Uuid::new_v4().simple());
    let created = server
        .app
        .post(
            "/v1/operator/suppliers",
            Some(&operator),
            json!({"display_name": "Acme", "username": username,
                   "password": "supplier-password", "second_password": "second-password-42"}),
        )
        .await;
    assert_eq!(
        created.status,
        axum::http::StatusCode::CREATED,
        "{created:?}"
    );

    let payee = driver.browser(&server.base, DESKTOP_WINDOW).await.unwrap();
    payee.sign_in(&username, "supplier-password").await.unwrap();
    payee.visit("/payee/payouts").await.unwrap();
    payee
        .fill("Account holder's name", "Acme Supplies Ltd")
        .await
        .unwrap();
    payee
        .fill("IBAN", "DE44 5001 0517 5407 3249 31")
        .await
        .unwrap();
    payee.press("Register").await.unwrap();
    let pending = payee.main_text().await.unwrap();
    assert!(
        pending.contains("Waiting for your confirmation"),
        "{pending}"
    );
    payee
        .fill("Second password", "second-password-42")
        .await
        .unwrap();
    payee.press("Confirm this account").await.unwrap();
    let confirmed = payee.main_text().await.unwrap();
    assert!(confirmed.contains("Payouts go to"), "{confirmed}");
    // Nothing earned yet: the payout is refused, with the reason's code.
    payee.fill("Amount", "10.00").await.unwrap();
    payee.press("Pay out").await.unwrap();
    let refused = payee.main_text().await.unwrap();
    assert!(
        refused.contains("Error code") || refused.contains("insufficient"),
        "{refused}"
    );
    payee.close().await.unwrap();
}
