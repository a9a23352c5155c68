//! Every list is paged by an opaque keyset cursor (`limit`, `cursor`, the next page's cursor in
//! the `Next-Cursor` header) and filtered by state and creation date: paging through more than
//! one page while new rows arrive shows each row once, in order; an edited cursor, or one of
//! another list, is refused with `invalid_cursor`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use chrono::Duration;
use holdfast_tests::console::Console;
use holdfast_tests::world::{Desk, card_request, random_phone};
use holdfast_tests::{Reply, STAFF_PASSWORD, TestApp, usd};
use serde_json::{Value, json};

/// The rows of a page and the cursor of the next.
fn page(reply: &Reply) -> (Vec<Value>, Option<String>) {
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let rows = reply.body.as_array().expect("a JSON array").clone();
    let next = reply
        .headers
        .get("next-cursor")
        .map(|v| v.to_str().unwrap().to_owned());
    (rows, next)
}

/// Reads `path` (which has a query) page by page with `limit`, calling `between` after each
/// page but the last; returns `field` of every row shown, in order, and how many pages.
async fn page_through(
    app: &TestApp,
    token: &str,
    path: &str,
    limit: u32,
    field: &str,
    mut between: impl AsyncFnMut(),
) -> (Vec<String>, usize) {
    let mut shown = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&limit={limit}&cursor={c}"),
            None => format!("{path}&limit={limit}"),
        };
        let (rows, next) = page(&app.get(&url, Some(token)).await);
        pages += 1;
        assert!(rows.len() <= limit as usize);
        shown.extend(rows.iter().map(|r| r[field].as_str().unwrap().to_owned()));
        match next {
            Some(next) => {
                assert_eq!(
                    rows.len(),
                    limit as usize,
                    "only a full page has a next one"
                );
                cursor = Some(next);
                between().await;
            }
            None => break,
        }
    }
    (shown, pages)
}

struct Bank {
    app: TestApp,
    desk: Desk,
    /// The shopper's phone, which approves what the shopper buys.
    phone: String,
    shopper: String,
    supplier: String,
    commodity: String,
}

/// A bank that issued a prepaid card (100 USD) to a shopper who logged in with it, and a
/// supplier with a 1 USD commodity.
async fn bank() -> Bank {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let desk = app.institution(&operator, "1501", "bank", json!({})).await;
    let phone = random_phone();
    let card = app
        .issue_card(
            &desk,
            card_request("prepaid", &phone, json!({"initial_deposit": usd("100.00")})),
        )
        .await;
    let number = card["card"]["card_number"].as_str().unwrap().to_owned();
    let shopper = app.card_login(&number, &phone).await;
    let (_, supplier) = app.supplier(&operator, "Acme").await;
    let commodity = app.commodity(&supplier, "1.00", "0.05").await;
    Bank {
        app,
        desk,
        phone,
        shopper,
        supplier,
        commodity,
    }
}

impl Bank {
    /// The rows of one page of a list the bank's staff read.
    async fn desk_rows(&self, path: &str) -> Vec<Value> {
        page(&self.app.get(path, Some(&self.desk.token)).await).0
    }

    /// Issues a prepaid card to someone new, a minute after the last.
    async fn issue_card(&self) {
        self.app.clock.advance(Duration::minutes(1));
        self.app
            .issue_card(
                &self.desk,
                card_request("prepaid", &random_phone(), json!({})),
            )
            .await;
    }

    /// Places an order a minute after the last; returns its number.
    async fn order(&self) -> String {
        self.app.clock.advance(Duration::minutes(1));
        self.order_now().await
    }

    /// Places an order at the clock's current time (as the last, if it did not move).
    async fn order_now(&self) -> String {
        self.app
            .placed_order(&self.shopper, &self.commodity, 1)
            .await
            .0
    }

    async fn orders(&self, query: &str) -> Vec<String> {
        let reply = self
            .app
            .get(
                &format!("/v1/retail/orders?limit=100&{query}"),
                Some(&self.shopper),
            )
            .await;
        page(&reply)
            .0
            .iter()
            .map(|o| o["order_number"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn orders_page_through_more_than_one_page_while_new_orders_arrive() {
    let bank = bank().await;
    let mut placed = Vec::new();
    for _ in 0..7 {
        placed.push(bank.order().await);
    }
    placed.reverse();

    let mut arrived = Vec::new();
    let (shown, pages) = page_through(
        &bank.app,
        &bank.shopper,
        "/v1/retail/orders?",
        3,
        "order_number",
        async || arrived.push(bank.order().await),
    )
    .await;
    // Newest first, each once; the orders placed while paging are newer than the cursor, so
    // they appear on no later page and push nothing onto it.
    assert_eq!(shown, placed);
    assert_eq!(pages, 3);
    assert_eq!(arrived.len(), 2);

    // A fresh first page starts with them.
    let fresh = bank.orders("").await;
    assert_eq!(fresh.len(), 9);
    assert_eq!(fresh[..2], [arrived[1].as_str(), arrived[0].as_str()]);

    // The supplier's list pages the same orders (it is their payee).
    let (seen, _) = page_through(
        &bank.app,
        &bank.supplier,
        "/v1/retail/orders?",
        4,
        "order_number",
        async || {},
    )
    .await;
    assert_eq!(seen, fresh);
}

#[tokio::test]
async fn holds_and_cards_page_through_while_new_ones_arrive() {
    let bank = bank().await;
    for _ in 0..5 {
        bank.order().await;
    }
    let all_holds = bank.desk_rows("/v1/institution/holds?limit=100").await;
    assert_eq!(all_holds.len(), 5);
    let ids = |rows: &[Value]| -> Vec<String> {
        rows.iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (shown, pages) = page_through(
        &bank.app,
        &bank.desk.token,
        "/v1/institution/holds?",
        2,
        "id",
        async || {
            bank.order().await;
        },
    )
    .await;
    assert_eq!(shown, ids(&all_holds));
    assert_eq!(pages, 3);

    // Cards: the shopper's and four more, paged by two while a fifth is issued.
    for _ in 0..4 {
        bank.issue_card().await;
    }
    let all_cards = bank.desk_rows("/v1/institution/cards?limit=100").await;
    assert_eq!(all_cards.len(), 5);
    let numbers: Vec<String> = all_cards
        .iter()
        .map(|c| c["card_number"].as_str().unwrap().to_owned())
        .collect();
    let (shown, _) = page_through(
        &bank.app,
        &bank.desk.token,
        "/v1/institution/cards?",
        2,
        "card_number",
        async || bank.issue_card().await,
    )
    .await;
    assert_eq!(shown, numbers);
}

#[tokio::test]
async fn lists_filter_by_state_and_creation_date() {
    let bank = bank().await;
    let first = bank.order().await;
    let second = bank.order().await;
    // The next two a day later (the test clock starts on 2026-03-11).
    bank.app.clock.advance(Duration::days(1));
    let third = bank.order().await;
    let fourth = bank.order().await;
    let cancelled = bank
        .app
        .post(
            &format!("/v1/retail/orders/{second}/cancel"),
            Some(&bank.shopper),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");

    assert_eq!(bank.orders("state=cancelled").await, [second.as_str()]);
    assert_eq!(
        bank.orders("state=awaiting_order_confirmation").await,
        [fourth.as_str(), third.as_str(), first.as_str()]
    );
    assert_eq!(
        bank.orders("from=2026-03-12").await,
        [fourth.as_str(), third.as_str()]
    );
    assert_eq!(
        bank.orders("to=2026-03-11").await,
        [second.as_str(), first.as_str()]
    );
    assert_eq!(
        bank.orders("from=2026-03-11&to=2026-03-11&state=cancelled")
            .await,
        [second.as_str()]
    );
    assert!(bank.orders("from=2026-03-13").await.is_empty());

    // The institution's holds: the cancelled order's hold was voided.
    let voided = bank.desk_rows("/v1/institution/holds?state=voided").await;
    assert_eq!(voided.len(), 1);
    let pending = bank
        .desk_rows("/v1/institution/holds?status=pending&from=2026-03-12")
        .await;
    assert_eq!(pending.len(), 2);

    // A state a list does not have is a malformed request.
    let wrong = bank
        .app
        .get("/v1/retail/orders?state=lost", Some(&bank.shopper))
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{wrong:?}");
}

#[tokio::test]
async fn an_edited_cursor_or_one_of_another_list_is_refused() {
    let bank = bank().await;
    for _ in 0..3 {
        bank.order().await;
    }
    let (_, next) = page(
        &bank
            .app
            .get("/v1/retail/orders?limit=1", Some(&bank.shopper))
            .await,
    );
    let cursor = next.expect("a second page");

    // One character changed (the last, so the length stays).
    let mut edited = cursor.clone();
    let last = edited.pop().unwrap();
    edited.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [edited.as_str(), "not-a-cursor", &cursor[..cursor.len() - 2]] {
        let refused = bank
            .app
            .get(
                &format!("/v1/retail/orders?cursor={bad}"),
                Some(&bank.shopper),
            )
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
        assert_eq!(refused.code(), "invalid_cursor");
    }

    // An orders cursor on the holds list.
    let foreign = bank
        .app
        .get(
            &format!("/v1/institution/holds?cursor={cursor}"),
            Some(&bank.desk.token),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::BAD_REQUEST, "{foreign:?}");
    assert_eq!(foreign.code(), "invalid_cursor");

    // The real one still works, and the last page carries no cursor.
    let (rows, next) = page(
        &bank
            .app
            .get(
                &format!("/v1/retail/orders?limit=2&cursor={cursor}"),
                Some(&bank.shopper),
            )
            .await,
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(next, None);
}

/// Orders created at the same instant are told apart by their id: still each once, and the
/// ones arriving at that instant while paging (newer ids) stay off the later pages.
#[tokio::test]
async fn orders_created_at_the_same_instant_page_by_their_id() {
    let bank = bank().await;
    for _ in 0..5 {
        bank.order_now().await;
    }
    let all = bank.orders("").await;
    assert_eq!(all.len(), 5);
    let (shown, pages) = page_through(
        &bank.app,
        &bank.shopper,
        "/v1/retail/orders?",
        2,
        "order_number",
        async || {
            bank.order_now().await;
        },
    )
    .await;
    assert_eq!(shown, all);
    assert_eq!(pages, 3);
    assert_eq!(bank.orders("").await.len(), 7);
}

/// An insurer selling a 1.00 USD lump-sum product whose certificates a service company
/// delivers, on the bank of [`bank`].
struct Insurance {
    bank: Bank,
    insurer: String,
    service: String,
    product: String,
}

async fn insurance() -> Insurance {
    let bank = bank().await;
    let operator = bank.app.operator_token().await;
    let (_, insurer) = bank
        .app
        .onboard_staff(
            &operator,
            "/v1/insurance/insurers",
            "ins",
            json!({"display_name": "Hanil Life", "commission_rate": "0.05"}),
        )
        .await;
    let (service_id, service) = bank.app.distributor(&operator, "Policy Couriers").await;
    let product = bank
        .app
        .post(
            "/v1/insurance/products",
            Some(&insurer),
            json!({"name": "Travel", "coverage": "Lost luggage", "coverage_amount": usd("500.00"),
                "premium": usd("1.00"), "term_months": 1, "payment_plan": "lump_sum",
                "service_company_id": service_id}),
        )
        .await;
    assert_eq!(product.status, StatusCode::CREATED, "{product:?}");
    Insurance {
        insurer,
        service,
        product: product.body["id"].as_str().unwrap().to_owned(),
        bank,
    }
}

impl Insurance {
    /// The shopper buys the product a minute after the last purchase, approves it on the
    /// phone, and the insurer issues it; returns the policy number.
    async fn issued_policy(&self) -> String {
        let app = &self.bank.app;
        app.clock.advance(Duration::minutes(1));
        let bought = app
            .post_idempotent(
                "/v1/insurance/policies",
                Some(&self.bank.shopper),
                json!({"product_id": self.product}),
            )
            .await;
        assert_eq!(bought.status, StatusCode::CREATED, "{bought:?}");
        let challenge = bought.body["pending_confirmation"]["challenge_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let code = app.code_for(&self.bank.phone, &challenge).await;
        let answered = app.answer(&challenge, &code, "approve").await;
        assert_eq!(answered.status, StatusCode::OK, "{answered:?}");
        let policy = bought.body["policy_id"].as_str().unwrap();
        let issued = app
            .post(
                &format!("/v1/insurance/policies/{policy}/recheck"),
                Some(&self.insurer),
                json!({"decision": "issue"}),
            )
            .await;
        assert_eq!(issued.status, StatusCode::OK, "{issued:?}");
        issued.body["policy_number"].as_str().unwrap().to_owned()
    }

    async fn certificates(&self, query: &str) -> Vec<String> {
        let reply = self
            .bank
            .app
            .get(
                &format!("/v1/insurance/certificates?limit=100&{query}"),
                Some(&self.service),
            )
            .await;
        page(&reply)
            .0
            .iter()
            .map(|c| c["policy_number"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn certificates_page_through_while_new_policies_are_issued_and_filter_by_status() {
    let ins = insurance().await;
    let mut issued = Vec::new();
    for _ in 0..5 {
        issued.push(ins.issued_policy().await);
    }
    issued.reverse();

    let mut arrived = Vec::new();
    let (shown, pages) = page_through(
        &ins.bank.app,
        &ins.service,
        "/v1/insurance/certificates?",
        2,
        "policy_number",
        async || arrived.push(ins.issued_policy().await),
    )
    .await;
    // Newest first, each once; the certificates issued while paging are newer than the
    // cursor, so no later page shows them.
    assert_eq!(shown, issued);
    assert_eq!(pages, 3);
    let fresh = ins.certificates("").await;
    assert_eq!(fresh.len(), 7);
    assert_eq!(fresh[..2], [arrived[1].as_str(), arrived[0].as_str()]);

    // Marked received, one moves from awaiting_pickup to with_service_company.
    let received = ins
        .bank
        .app
        .post(
            &format!("/v1/insurance/certificates/{}/received", fresh[3]),
            Some(&ins.service),
            json!({}),
        )
        .await;
    assert_eq!(received.status, StatusCode::OK, "{received:?}");
    assert_eq!(
        ins.certificates("state=with_service_company").await,
        [fresh[3].as_str()]
    );
    let awaiting = ins.certificates("state=awaiting_pickup").await;
    assert_eq!(awaiting.len(), 6);
    assert!(!awaiting.contains(&fresh[3]));
    assert!(ins.certificates("state=delivered").await.is_empty());
    // With no status named, both still to do are listed.
    assert_eq!(ins.certificates("").await, fresh);

    // By creation day: all were bought today, none tomorrow.
    let today = ins.bank.app.clock.now().date_naive();
    let tomorrow = today.succ_opt().unwrap();
    assert_eq!(
        ins.certificates(&format!("from={today}&to={today}")).await,
        fresh
    );
    assert!(
        ins.certificates(&format!("from={tomorrow}"))
            .await
            .is_empty()
    );

    // A cursor of another list is refused.
    ins.bank.order().await;
    ins.bank.order().await;
    let (_, other) = page(
        &ins.bank
            .app
            .get("/v1/retail/orders?limit=1", Some(&ins.bank.shopper))
            .await,
    );
    let other = other.expect("two orders are more than one page");
    let refused = ins
        .bank
        .app
        .get(
            &format!("/v1/insurance/certificates?cursor={other}"),
            Some(&ins.service),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
    assert_eq!(refused.code(), "invalid_cursor");
}

/// Queues one webhook delivery to `endpoint`, a minute after the last.
async fn queue_delivery(app: &TestApp, endpoint: &str) {
    app.clock.advance(Duration::minutes(1));
    let txn = holdfast_core::db::begin_write(&app.state.db).await.unwrap();
    holdfast_core::outbox::enqueue_in_txn(
        &txn,
        &app.clock,
        holdfast_core::outbox::Channel::Webhook,
        endpoint.to_owned(),
        json!({"kind": "test"}).to_string(),
        Some(uuid::Uuid::now_v7()),
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
}

#[tokio::test]
async fn webhook_deliveries_page_through_while_new_ones_are_queued_in_the_api_and_console() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (created, supplier) = app
        .onboard_staff(
            &operator,
            "/v1/operator/suppliers",
            "sup",
            json!({"display_name": "Acme"}),
        )
        .await;
    let registered = app
        .post(
            "/v1/webhooks",
            Some(&supplier),
            json!({"url": "https://supplier.example/hook"}),
        )
        .await;
    assert_eq!(registered.status, StatusCode::CREATED, "{registered:?}");
    let endpoint = registered.body["endpoint"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..5 {
        queue_delivery(&app, &endpoint).await;
    }
    let path = format!("/v1/webhooks/{endpoint}/deliveries?");
    let all = page(&app.get(&format!("{path}limit=100"), Some(&supplier)).await).0;
    let ids: Vec<String> = all
        .iter()
        .map(|d| d["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 5);

    let (shown, pages) = page_through(&app, &supplier, &path, 2, "message_id", async || {
        queue_delivery(&app, &endpoint).await
    })
    .await;
    assert_eq!(shown, ids);
    assert_eq!(pages, 3);
    let pending = page(
        &app.get(&format!("{path}state=pending&limit=100"), Some(&supplier))
            .await,
    )
    .0;
    assert_eq!(pending.len(), 7);
    let delivered = page(
        &app.get(&format!("{path}state=delivered"), Some(&supplier))
            .await,
    )
    .0;
    assert!(delivered.is_empty());

    // The console pages the same log, with the filter form and a "Next page" link.
    let username = created["username"].as_str().unwrap();
    let console = Console::sign_in(&app, username, STAFF_PASSWORD).await;
    let first = console
        .get(&format!(
            "/supplier/webhooks/{endpoint}/deliveries?state=pending&limit=4"
        ))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.html);
    assert!(first.html.contains("Created from"), "{}", first.html);
    let next = first
        .html
        .split("<a href=\"")
        .filter_map(|rest| rest.split('"').next())
        .find(|href| href.contains("cursor="))
        .unwrap_or_else(|| panic!("no Next page link:\n{}", first.html))
        .replace("&#38;", "&");
    assert!(next.contains("state=pending"), "{next}");
    let second = console.get(&next).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.html);
    assert_eq!(
        second.html.matches("<td>pending</td>").count(),
        3,
        "{}",
        second.html
    );
    assert!(!second.html.contains("Next page"), "{}", second.html);
    // A cursor of another list is refused on the page too.
    let refused = console
        .get(&format!(
            "/supplier/webhooks/{endpoint}/deliveries?cursor=AAAA"
        ))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.html);
}

#[tokio::test]
async fn commodities_page_through_while_new_ones_are_listed_and_filter_by_listing() {
    let bank = bank().await;
    let mut listed = vec![bank.commodity.clone()];
    for _ in 0..4 {
        bank.app.clock.advance(Duration::minutes(1));
        listed.push(bank.app.commodity(&bank.supplier, "2.00", "0.05").await);
    }
    listed.reverse();
    let mut arrived = Vec::new();
    let (shown, pages) = page_through(
        &bank.app,
        &bank.shopper,
        "/v1/retail/commodities?",
        2,
        "id",
        async || {
            bank.app.clock.advance(Duration::minutes(1));
            arrived.push(bank.app.commodity(&bank.supplier, "3.00", "0.05").await);
        },
    )
    .await;
    assert_eq!(shown, listed);
    assert_eq!(pages, 3);
    let fresh = page(
        &bank
            .app
            .get("/v1/retail/commodities?limit=100", Some(&bank.shopper))
            .await,
    )
    .0;
    assert_eq!(fresh.len(), 7);
    assert_eq!(fresh[0]["id"], arrived[1].as_str());
    // Only what is on sale is in the catalogue; by creation day, none tomorrow.
    let withdrawn = page(
        &bank
            .app
            .get(
                "/v1/retail/commodities?state=withdrawn",
                Some(&bank.shopper),
            )
            .await,
    )
    .0;
    assert!(withdrawn.is_empty());
    let tomorrow = bank.app.clock.now().date_naive().succ_opt().unwrap();
    let later = page(
        &bank
            .app
            .get(
                &format!("/v1/retail/commodities?from={tomorrow}"),
                Some(&bank.shopper),
            )
            .await,
    )
    .0;
    assert!(later.is_empty());
}
