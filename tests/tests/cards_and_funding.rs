//! Cards and their funding sources through the API: every card mapping from order to
//! settlement or denial, credit-line class limits, a race on one credit limit, the catalogue
//! by card class, blocking and replacing cards, a shared freezing account, the supplier's
//! second password, and login throttling.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::{Method, StatusCode};
use holdfast_tests::world::{self, Desk, balance_and_available, merged};
use holdfast_tests::{Reply, TestApp, usd};
use serde_json::{Value, json};
use std::sync::Arc;

/// The body of a card issue request; `terms` adds credit limits or a first deposit.
fn card_request(mapping: &str, age: &str, purchase: &str, phone: &str, terms: Value) -> Value {
    world::card_request(
        mapping,
        phone,
        merged(json!({"age_class": age, "purchase_type": purchase}), terms),
    )
}

async fn issue(app: &TestApp, desk: &Desk, body: Value) -> Reply {
    app.post_idempotent("/v1/institution/cards", Some(&desk.token), body)
        .await
}

fn card_number(issued: &Value) -> String {
    issued["card"]["card_number"].as_str().unwrap().to_owned()
}

fn funding_id(issued: &Value) -> String {
    issued["funding_account"]["id"].as_str().unwrap().to_owned()
}

/// (balance, available) of one of the caller's accounts, as the caller sees it.
async fn account(app: &TestApp, token: &str, id: &str) -> (String, String) {
    let found = app.account_where(token, "id", id).await;
    assert_eq!(found["available"]["currency"], "USD");
    balance_and_available(&found)
}

/// The institution's USD freezing accounts as it lists them: (id, balance).
async fn freezing_accounts(app: &TestApp, desk: &Desk) -> Vec<(String, String)> {
    let accounts = app.get("/v1/institution/accounts", Some(&desk.token)).await;
    assert_eq!(accounts.status, StatusCode::OK, "{accounts:?}");
    accounts
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "freezing" && a["currency"] == "USD")
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_owned(),
                a["balance"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// What the institution's freezing accounts hold together ("0.00" before one is opened): a
/// pool spreads its holds over a few shard accounts.
async fn frozen(app: &TestApp, desk: &Desk) -> String {
    let total: rust_decimal::Decimal = freezing_accounts(app, desk)
        .await
        .iter()
        .map(|(_, balance)| balance.parse::<rust_decimal::Decimal>().unwrap())
        .sum();
    format!("{total:.2}")
}

async fn holds(app: &TestApp, desk: &Desk) -> Vec<Value> {
    let reply = app
        .get("/v1/institution/holds?limit=100", Some(&desk.token))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body.as_array().unwrap().clone()
}

/// A commodity for `audience` (its commission is the supplier's default).
async fn commodity_for(app: &TestApp, supplier: &str, price: &str, audience: &str) -> String {
    let body = json!({"name": format!("Goods for {audience}"), "price": usd(price),
                      "audience": audience});
    let reply = app
        .post("/v1/retail/commodities", Some(supplier), body)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert_eq!(reply.body["audience"], audience);
    reply.body["id"].as_str().unwrap().to_owned()
}

/// One card mapping, from issue to settlement and to denial.
struct Mapping {
    mapping: &'static str,
    institution_kind: &'static str,
    code: &'static str,
    caps: Value,
    terms: Value,
    account_kind: &'static str,
    /// Bank and prepaid money moves into the freezing account when the order is placed;
    /// card credit is only reserved until settlement.
    moves_at_once: bool,
    /// The funding account's balance when issued.
    opening_balance: &'static str,
    phone: &'static str,
}

/// Order 30.00 (10 % commission) → approve → settlement request → approve; then another
/// 30.00 → deny. The funding source starts with 100.00 available.
async fn settle_and_deny(mapping: Mapping) {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let desk = app
        .institution(
            &operator,
            mapping.code,
            mapping.institution_kind,
            json!({"credit_class_caps": mapping.caps.clone()}),
        )
        .await;
    let card = app
        .issue_card(
            &desk,
            card_request(
                mapping.mapping,
                "adult",
                "personal",
                mapping.phone,
                mapping.terms.clone(),
            ),
        )
        .await;
    assert_eq!(card["card"]["mapping_kind"], mapping.mapping);
    assert_eq!(card["card"]["status"], "active");
    assert_eq!(card["card"]["institution_id"], desk.id.as_str());
    assert!(card_number(&card).starts_with(mapping.code), "{card}");
    assert_eq!(card["funding_account"]["kind"], mapping.account_kind);
    let funding = funding_id(&card);
    let shopper = app.card_login(&card_number(&card), mapping.phone).await;
    let (_, supplier) = app.supplier(&operator, "Acme Supplies").await;
    let commodity = app.commodity(&supplier, "30.00", "0.10").await;

    let opening = mapping.opening_balance;
    assert_eq!(
        account(&app, &shopper, &funding).await,
        (opening.to_owned(), "100.00".to_owned())
    );
    assert_eq!(frozen(&app, &desk).await, "0.00");

    // The first order: held at once, frozen on approval.
    let (number, challenge) = app.placed_order(&shopper, &commodity, 1).await;
    let after_hold = if mapping.moves_at_once {
        sub(opening, "30.00")
    } else {
        opening.to_owned()
    };
    assert_eq!(
        account(&app, &shopper, &funding).await,
        (after_hold.clone(), "70.00".to_owned()),
        "{}",
        mapping.mapping
    );
    let frozen_now = if mapping.moves_at_once {
        "30.00"
    } else {
        "0.00"
    };
    assert_eq!(frozen(&app, &desk).await, frozen_now, "{}", mapping.mapping);
    let approved = app.answer_on(mapping.phone, &challenge, "approve").await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    assert_eq!(approved.body["outcome"], "order_approved");
    assert_eq!(app.order_state(&shopper, &number).await, "frozen");
    assert_eq!(
        account(&app, &shopper, &funding).await,
        (after_hold.clone(), "70.00".to_owned())
    );
    assert_eq!(frozen(&app, &desk).await, frozen_now);
    assert_eq!(app.balance(&supplier, "withdrawal").await, "0.00");

    // The supplier asks to be paid; the shopper's phone releases the money.
    let requested = app
        .post(
            &format!("/v1/retail/orders/{number}/settlement-request"),
            Some(&supplier),
            json!({}),
        )
        .await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    let settlement = app.pending_confirmation(&shopper, &number).await;
    let settled = app.answer_on(mapping.phone, &settlement, "approve").await;
    assert_eq!(settled.status, StatusCode::OK, "{settled:?}");
    assert_eq!(settled.body["outcome"], "settled");
    assert_eq!(app.order_state(&shopper, &number).await, "settled");
    assert_eq!(app.balance(&supplier, "withdrawal").await, "27.00");
    assert_eq!(app.platform_commission(&operator).await, "3.00");
    let drawn = sub(opening, "30.00");
    assert_eq!(
        account(&app, &shopper, &funding).await,
        (drawn.clone(), "70.00".to_owned()),
        "{}",
        mapping.mapping
    );
    assert_eq!(frozen(&app, &desk).await, "0.00", "{}", mapping.mapping);

    // The second order is denied: everything it held returns.
    let (denied_number, challenge) = app.placed_order(&shopper, &commodity, 1).await;
    let after_second_hold = if mapping.moves_at_once {
        sub(&drawn, "30.00")
    } else {
        drawn.clone()
    };
    assert_eq!(
        account(&app, &shopper, &funding).await,
        (after_second_hold, "40.00".to_owned())
    );
    assert_eq!(frozen(&app, &desk).await, frozen_now);
    let denied = app.answer_on(mapping.phone, &challenge, "deny").await;
    assert_eq!(denied.status, StatusCode::OK, "{denied:?}");
    assert_eq!(denied.body["outcome"], "order_denied");
    assert_eq!(app.order_state(&shopper, &denied_number).await, "denied");
    assert_eq!(
        account(&app, &shopper, &funding).await,
        (drawn, "70.00".to_owned()),
        "{}",
        mapping.mapping
    );
    assert_eq!(frozen(&app, &desk).await, "0.00");
    assert_eq!(app.balance(&supplier, "withdrawal").await, "27.00");
    assert_eq!(app.platform_commission(&operator).await, "3.00");

    // The institution sees both holds, each resolved once, in the card's mode.
    let mode = if mapping.moves_at_once {
        "move"
    } else {
        "reserve"
    };
    let list = holds(&app, &desk).await;
    assert_eq!(list.len(), 2, "{list:?}");
    for hold in &list {
        assert_eq!(hold["mode"], mode);
        assert_eq!(hold["amount"], usd("30.00"));
        assert_eq!(hold["funding_account_id"], funding.as_str());
        assert_eq!(hold["institution_id"], desk.id.as_str());
    }
    let mut statuses: Vec<_> = list
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_owned())
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["posted", "voided"]);
    let posted = list.iter().find(|h| h["status"] == "posted").unwrap();
    assert_eq!(posted["posted_amount"], usd("30.00"));

    // A card with an EC line spends the EC line only: its normal limit is untouched.
    if let Some(linked) = card["linked_account"]["id"].as_str() {
        assert_eq!(
            account(&app, &shopper, linked).await,
            ("0.00".to_owned(), "300.00".to_owned())
        );
    }
    app.assert_ledger_clean().await;
}

/// `a - b` for two non-negative-scale-2 decimal strings (the result may be negative).
fn sub(a: &str, b: &str) -> String {
    let cents = |s: &str| -> i64 {
        let negative = s.starts_with('-');
        let (units, fraction) = s.trim_start_matches('-').split_once('.').unwrap();
        let value = units.parse::<i64>().unwrap() * 100 + fraction.parse::<i64>().unwrap();
        if negative { -value } else { value }
    };
    let value = cents(a) - cents(b);
    let sign = if value < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", value.abs() / 100, value.abs() % 100)
}

#[tokio::test]
async fn a_prepaid_card_moves_the_money_and_settles_or_returns_it() {
    settle_and_deny(Mapping {
        mapping: "prepaid",
        institution_kind: "bank",
        code: "1101",
        caps: json!([]),
        terms: json!({"initial_deposit": usd("100.00")}),
        account_kind: "prepaid",
        moves_at_once: true,
        opening_balance: "100.00",
        phone: "+821051010001",
    })
    .await;
}

#[tokio::test]
async fn a_bank_account_card_moves_the_money_and_settles_or_returns_it() {
    settle_and_deny(Mapping {
        mapping: "bank_account",
        institution_kind: "bank",
        code: "1102",
        caps: json!([]),
        terms: json!({"initial_deposit": usd("100.00")}),
        account_kind: "bank_account",
        moves_at_once: true,
        opening_balance: "100.00",
        phone: "+821051010002",
    })
    .await;
}

#[tokio::test]
async fn an_ec_bank_credit_line_moves_the_money_and_settles_or_returns_it() {
    settle_and_deny(Mapping {
        mapping: "ec_bank_credit_line",
        institution_kind: "bank",
        code: "1103",
        caps: json!([{"class": "general", "max_limit": usd("500.00")}]),
        terms: json!({"credit_limit": usd("100.00")}),
        account_kind: "bank_credit_line",
        moves_at_once: true,
        opening_balance: "0.00",
        phone: "+821051010003",
    })
    .await;
}

#[tokio::test]
async fn a_credit_card_reserves_credit_and_settles_or_releases_it() {
    settle_and_deny(Mapping {
        mapping: "credit_card",
        institution_kind: "card_company",
        code: "1104",
        caps: json!([]),
        terms: json!({"credit_limit": usd("100.00")}),
        account_kind: "card_credit",
        moves_at_once: false,
        opening_balance: "0.00",
        phone: "+821051010004",
    })
    .await;
}

#[tokio::test]
async fn a_credit_card_with_an_ec_line_reserves_the_ec_line_only() {
    settle_and_deny(Mapping {
        mapping: "credit_card_with_ec_line",
        institution_kind: "card_company",
        code: "1105",
        caps: json!([]),
        terms: json!({"credit_limit": usd("100.00"), "normal_card_limit": usd("300.00")}),
        account_kind: "card_ec_line",
        moves_at_once: false,
        opening_balance: "0.00",
        phone: "+821051010005",
    })
    .await;
}

#[tokio::test]
async fn an_ec_credit_line_card_reserves_credit_and_settles_or_releases_it() {
    settle_and_deny(Mapping {
        mapping: "ec_credit_line_card",
        institution_kind: "card_company",
        code: "1106",
        caps: json!([]),
        terms: json!({"credit_limit": usd("100.00")}),
        account_kind: "card_ec_line",
        moves_at_once: false,
        opening_balance: "0.00",
        phone: "+821051010006",
    })
    .await;
}

#[tokio::test]
async fn a_credit_line_code_reserves_credit_and_settles_or_releases_it() {
    settle_and_deny(Mapping {
        mapping: "credit_line_code",
        institution_kind: "card_company",
        code: "1107",
        caps: json!([]),
        terms: json!({"credit_limit": usd("100.00")}),
        account_kind: "credit_line_code",
        moves_at_once: false,
        opening_balance: "0.00",
        phone: "+821051010007",
    })
    .await;
}

#[tokio::test]
async fn a_store_card_reserves_credit_and_settles_or_releases_it() {
    settle_and_deny(Mapping {
        mapping: "store_card",
        institution_kind: "department_store",
        code: "1108",
        caps: json!([]),
        terms: json!({"credit_limit": usd("100.00")}),
        account_kind: "store_card",
        moves_at_once: false,
        opening_balance: "0.00",
        phone: "+821051010008",
    })
    .await;
}

#[tokio::test]
async fn an_institution_issues_only_the_mappings_of_its_kind() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let store = app
        .institution(&operator, "1110", "department_store", json!({}))
        .await;
    let cards = app
        .institution(&operator, "1111", "card_company", json!({}))
        .await;
    let limit = json!({"credit_limit": usd("100.00")});
    for (desk, mapping) in [(&store, "credit_card"), (&cards, "store_card")] {
        let refused = issue(
            &app,
            desk,
            card_request(mapping, "adult", "personal", "+821051010010", limit.clone()),
        )
        .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
    }
    // A credit card needs a limit.
    let no_limit = issue(
        &app,
        &cards,
        card_request(
            "credit_card",
            "adult",
            "personal",
            "+821051010010",
            json!({}),
        ),
    )
    .await;
    assert_eq!(no_limit.status, StatusCode::BAD_REQUEST, "{no_limit:?}");
    // Only institutions issue cards, and only with an idempotency key.
    let by_operator = app
        .post_idempotent(
            "/v1/institution/cards",
            Some(&operator),
            card_request(
                "credit_card",
                "adult",
                "personal",
                "+821051010010",
                limit.clone(),
            ),
        )
        .await;
    assert_eq!(by_operator.status, StatusCode::FORBIDDEN, "{by_operator:?}");
    let keyless = app
        .post(
            "/v1/institution/cards",
            Some(&cards.token),
            card_request("credit_card", "adult", "personal", "+821051010010", limit),
        )
        .await;
    assert_eq!(keyless.status, StatusCode::BAD_REQUEST, "{keyless:?}");
    assert_eq!(keyless.code(), "idempotency_key_required");
    let listed = app.get("/v1/institution/cards", Some(&cards.token)).await;
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    assert_eq!(listed.body.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_bank_credit_line_is_capped_per_class_and_an_order_above_it_holds_nothing() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let bank = app
        .institution(
            &operator,
            "1201",
            "bank",
            json!({"credit_class_caps": [{"class": "adolescent", "max_limit": usd("50.00")},
                                         {"class": "general", "max_limit": usd("500.00")}]}),
        )
        .await;
    let phone = "+821051020001";
    let line = |age: &str, purchase: &str, limit: &str| {
        card_request(
            "ec_bank_credit_line",
            age,
            purchase,
            phone,
            json!({"credit_limit": usd(limit)}),
        )
    };

    let above = issue(&app, &bank, line("adolescent", "personal", "50.01")).await;
    assert_eq!(above.status, StatusCode::BAD_REQUEST, "{above:?}");
    // The adolescent class applies to an adolescent's business card too.
    let above_business = issue(&app, &bank, line("adolescent", "business", "50.01")).await;
    assert_eq!(
        above_business.status,
        StatusCode::BAD_REQUEST,
        "{above_business:?}"
    );
    // The bank offers no company-purchase line at all.
    let no_class = issue(&app, &bank, line("adult", "business", "10.00")).await;
    assert_eq!(no_class.status, StatusCode::BAD_REQUEST, "{no_class:?}");
    let general_above = issue(&app, &bank, line("adult", "personal", "500.01")).await;
    assert_eq!(
        general_above.status,
        StatusCode::BAD_REQUEST,
        "{general_above:?}"
    );
    let general = issue(&app, &bank, line("adult", "personal", "500.00")).await;
    assert_eq!(general.status, StatusCode::CREATED, "{general:?}");

    let card = app
        .issue_card(&bank, line("adolescent", "personal", "50.00"))
        .await;
    assert_eq!(card["funding_account"]["kind"], "bank_credit_line");
    assert_eq!(card["card"]["age_class"], "adolescent");
    let funding = funding_id(&card);
    let shopper = app.card_login(&card_number(&card), phone).await;
    assert_eq!(
        account(&app, &shopper, &funding).await,
        ("0.00".to_owned(), "50.00".to_owned())
    );

    let (_, supplier) = app.supplier(&operator, "Acme").await;
    let commodity = app.commodity(&supplier, "30.00", "0.10").await;
    let refused = app.place_order(&shopper, &commodity, 2).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{refused:?}"
    );
    assert_eq!(refused.code(), "insufficient_funds");
    assert_eq!(
        account(&app, &shopper, &funding).await,
        ("0.00".to_owned(), "50.00".to_owned())
    );
    assert!(holds(&app, &bank).await.is_empty());
    assert_eq!(frozen(&app, &bank).await, "0.00");
    let orders = app.get("/v1/retail/orders", Some(&shopper)).await;
    assert_eq!(orders.body.as_array().unwrap().len(), 0, "{orders:?}");

    // Within the line an order is held; the next one no longer fits.
    app.placed_order(&shopper, &commodity, 1).await;
    assert_eq!(
        account(&app, &shopper, &funding).await,
        ("-30.00".to_owned(), "20.00".to_owned())
    );
    assert_eq!(frozen(&app, &bank).await, "30.00");
    let second = app.place_order(&shopper, &commodity, 1).await;
    assert_eq!(second.code(), "insufficient_funds", "{second:?}");
    assert_eq!(holds(&app, &bank).await.len(), 1);
    assert_eq!(
        account(&app, &shopper, &funding).await,
        ("-30.00".to_owned(), "20.00".to_owned())
    );
    app.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_orders_against_a_credit_limit_for_ten_reserve_exactly_ten() {
    let app = Arc::new(TestApp::spawn().await);
    let operator = app.operator_token().await;
    let issuer = app
        .institution(&operator, "1301", "card_company", json!({}))
        .await;
    let phone = "+821051030001";
    let card = app
        .issue_card(
            &issuer,
            card_request(
                "credit_card",
                "adult",
                "personal",
                phone,
                json!({"credit_limit": usd("100.00")}),
            ),
        )
        .await;
    let funding = funding_id(&card);
    let shopper = app.card_login(&card_number(&card), phone).await;
    let (_, supplier) = app.supplier(&operator, "Acme").await;
    let commodity = app.commodity(&supplier, "10.00", "0.05").await;

    let mut tasks = Vec::new();
    for _ in 0..30 {
        let app = app.clone();
        let (shopper, commodity) = (shopper.clone(), commodity.clone());
        tasks.push(tokio::spawn(async move {
            app.place_order(&shopper, &commodity, 1).await
        }));
    }
    let (mut placed, mut refused) = (0, 0);
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            StatusCode::CREATED => placed += 1,
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert_eq!(reply.code(), "insufficient_funds", "{reply:?}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {reply:?}"),
        }
    }
    assert_eq!(placed, 10, "exactly ten orders fit the limit");
    assert_eq!(refused, 20);
    assert_eq!(
        account(&app, &shopper, &funding).await,
        ("0.00".to_owned(), "0.00".to_owned())
    );
    let pending: Vec<_> = holds(&app, &issuer)
        .await
        .into_iter()
        .filter(|h| h["status"] == "pending")
        .collect();
    assert_eq!(pending.len(), 10);
    assert!(pending.iter().all(|h| h["amount"] == usd("10.00")));

    // The stored row, not only the clamped view: exactly the limit is reserved, never more.
    use sea_orm::EntityTrait;
    let row = holdfast_core::entities::accounts::Entity::find_by_id(
        funding.parse::<uuid::Uuid>().unwrap(),
    )
    .one(&app.state.db)
    .await
    .unwrap()
    .unwrap();
    assert_eq!(row.reserved.0, 10_000);
    assert_eq!(row.balance.0, 0);
    assert_eq!(row.credit_limit.0, 10_000);
    let orders = app.get("/v1/retail/orders?limit=100", Some(&shopper)).await;
    assert_eq!(orders.body.as_array().unwrap().len(), 10);
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn the_card_class_decides_what_the_catalogue_shows_and_sells() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let bank = app.institution(&operator, "1401", "bank", json!({})).await;
    let (_, supplier) = app.supplier(&operator, "Acme").await;
    let for_all = commodity_for(&app, &supplier, "5.00", "all").await;
    let adult = commodity_for(&app, &supplier, "6.00", "adult_only").await;
    let business = commodity_for(&app, &supplier, "7.00", "business_only").await;

    let mut shoppers = Vec::new();
    for (age, purchase, phone) in [
        ("adolescent", "personal", "+821051040001"),
        ("adult", "personal", "+821051040002"),
        ("adult", "business", "+821051040003"),
    ] {
        let card = app
            .issue_card(
                &bank,
                card_request(
                    "prepaid",
                    age,
                    purchase,
                    phone,
                    json!({"initial_deposit": usd("100.00")}),
                ),
            )
            .await;
        let token = app.card_login(&card_number(&card), phone).await;
        shoppers.push((token, funding_id(&card)));
    }
    let visible = |reply: &Reply| -> Vec<String> {
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let mut ids: Vec<String> = reply
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };

    // Staff see everything.
    let all = app
        .get("/v1/retail/commodities?limit=100", Some(&supplier))
        .await;
    assert_eq!(
        visible(&all),
        sorted(vec![for_all.clone(), adult.clone(), business.clone()])
    );

    let (adolescent, adolescent_funding) = &shoppers[0];
    let seen = app
        .get("/v1/retail/commodities?limit=100", Some(adolescent))
        .await;
    assert_eq!(visible(&seen), vec![for_all.clone()]);
    for hidden in [&adult, &business] {
        let refused = app.place_order(adolescent, hidden, 1).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
        assert_eq!(refused.code(), "commodity_not_for_card");
    }
    // A refused line holds nothing, even beside an allowed one.
    let mixed = app
        .post_idempotent(
            "/v1/retail/orders",
            Some(adolescent),
            json!({"lines": [{"commodity_id": for_all, "quantity": 1},
                             {"commodity_id": adult, "quantity": 1}]}),
        )
        .await;
    assert_eq!(mixed.code(), "commodity_not_for_card", "{mixed:?}");
    assert_eq!(
        account(&app, adolescent, adolescent_funding).await,
        ("100.00".to_owned(), "100.00".to_owned())
    );
    app.placed_order(adolescent, &for_all, 1).await;

    let (personal, _) = &shoppers[1];
    let seen = app
        .get("/v1/retail/commodities?limit=100", Some(personal))
        .await;
    assert_eq!(visible(&seen), sorted(vec![for_all.clone(), adult.clone()]));
    let refused = app.place_order(personal, &business, 1).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    assert_eq!(refused.code(), "commodity_not_for_card");
    app.placed_order(personal, &adult, 1).await;

    let (company, company_funding) = &shoppers[2];
    let seen = app
        .get("/v1/retail/commodities?limit=100", Some(company))
        .await;
    // A business card held by an adult may buy adult goods too.
    assert_eq!(
        visible(&seen),
        sorted(vec![for_all.clone(), adult.clone(), business.clone()])
    );
    app.placed_order(company, &business, 1).await;
    assert_eq!(
        account(&app, company, company_funding).await,
        ("93.00".to_owned(), "93.00".to_owned())
    );
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_blocked_card_cannot_log_in_order_or_confirm_and_a_replaced_number_is_dead() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let bank = app.institution(&operator, "1501", "bank", json!({})).await;
    let other_bank = app.institution(&operator, "1502", "bank", json!({})).await;
    let phone = "+821051050001";
    let card = app
        .issue_card(
            &bank,
            card_request(
                "prepaid",
                "adult",
                "personal",
                phone,
                json!({"initial_deposit": usd("100.00")}),
            ),
        )
        .await;
    let number = card_number(&card);
    let funding = funding_id(&card);
    let shopper = app.card_login(&number, phone).await;
    let (_, supplier) = app.supplier(&operator, "Acme").await;
    let commodity = app.commodity(&supplier, "10.00", "0.10").await;
    let (pending_order, pending_challenge) = app.placed_order(&shopper, &commodity, 1).await;
    let login = |number: String| {
        let app = &app;
        async move {
            app.post("/v1/auth/card-login", None, json!({"card_number": number}))
                .await
        }
    };

    // The holder reports it lost.
    let blocked = app
        .post(
            &format!("/v1/me/cards/{number}/block"),
            Some(&shopper),
            json!({}),
        )
        .await;
    assert_eq!(blocked.status, StatusCode::OK, "{blocked:?}");
    assert_eq!(blocked.body["status"], "blocked");
    // A blocked card's login is answered like any other, but no code is sent.
    let refused = login(number.clone()).await;
    assert_eq!(refused.status, StatusCode::ACCEPTED, "{refused:?}");
    assert_no_code_sent(&app, phone, &refused).await;
    let refused = app.place_order(&shopper, &commodity, 1).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    assert_eq!(refused.code(), "card_not_active");
    let refused = app.answer_on(phone, &pending_challenge, "approve").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    assert_eq!(refused.code(), "card_not_active");
    assert_eq!(
        app.order_state(&shopper, &pending_order).await,
        "awaiting_order_confirmation"
    );
    // Nobody else may lift or impose a block.
    let stranger = app
        .post(
            &format!("/v1/institution/cards/{number}/unblock"),
            Some(&other_bank.token),
            json!({}),
        )
        .await;
    assert_eq!(stranger.status, StatusCode::NOT_FOUND, "{stranger:?}");

    // The institution lifts the block: the waiting confirmation can be answered again.
    let unblocked = app
        .post(
            &format!("/v1/institution/cards/{number}/unblock"),
            Some(&bank.token),
            json!({}),
        )
        .await;
    assert_eq!(unblocked.status, StatusCode::OK, "{unblocked:?}");
    assert_eq!(unblocked.body["status"], "active");
    let approved = app.answer_on(phone, &pending_challenge, "approve").await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    assert_eq!(approved.body["outcome"], "order_approved");
    let again = app.card_login(&number, phone).await;
    assert!(!again.is_empty());

    // The institution blocks it itself.
    let (_, second_challenge) = app.placed_order(&shopper, &commodity, 1).await;
    let blocked = app
        .post(
            &format!("/v1/institution/cards/{number}/block"),
            Some(&bank.token),
            json!({}),
        )
        .await;
    assert_eq!(blocked.status, StatusCode::OK, "{blocked:?}");
    assert_eq!(blocked.body["status"], "blocked");
    assert_no_code_sent(&app, phone, &login(number.clone()).await).await;
    assert_eq!(
        app.place_order(&shopper, &commodity, 1).await.code(),
        "card_not_active"
    );
    let refused = app.answer_on(phone, &second_challenge, "approve").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    assert_eq!(refused.code(), "card_not_active");

    // A replacement: a new number on the same mapping; the old one is dead for good.
    let replaced = app
        .post(
            &format!("/v1/institution/cards/{number}/replace"),
            Some(&bank.token),
            json!({}),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::CREATED, "{replaced:?}");
    let new_number = replaced.body["card_number"].as_str().unwrap().to_owned();
    assert_ne!(new_number, number);
    assert_eq!(replaced.body["status"], "active");
    assert_eq!(replaced.body["funding_account_id"], funding.as_str());
    let new_shopper = app.card_login(&new_number, phone).await;
    assert_eq!(
        account(&app, &new_shopper, &funding).await,
        ("80.00".to_owned(), "80.00".to_owned())
    );
    app.placed_order(&new_shopper, &commodity, 1).await;

    let dead = login(number.clone()).await;
    assert_eq!(dead.status, StatusCode::ACCEPTED, "{dead:?}");
    assert_no_code_sent(&app, phone, &dead).await;
    for action in ["unblock", "block", "replace"] {
        let refused = app
            .post(
                &format!("/v1/institution/cards/{number}/{action}"),
                Some(&bank.token),
                json!({}),
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{action}: {refused:?}"
        );
        assert_eq!(refused.code(), "card_not_active");
    }
    let refused = app.place_order(&shopper, &commodity, 1).await;
    assert_eq!(refused.code(), "card_not_active", "{refused:?}");
    assert_no_code_sent(&app, phone, &login(number).await).await;
    let cards = app.get("/v1/me/cards", Some(&new_shopper)).await;
    let mut statuses: Vec<_> = cards
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap().to_owned())
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["active", "replaced"]);
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn two_institutions_sharing_a_freezing_account_each_see_only_their_holds() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let first = app.institution(&operator, "1601", "bank", json!({})).await;
    let second = app
        .institution(
            &operator,
            "1602",
            "bank",
            json!({"shares_freezing_with": "1601"}),
        )
        .await;
    let (_, supplier) = app.supplier(&operator, "Acme").await;
    let cheap = app.commodity(&supplier, "20.00", "0.10").await;
    let dear = app.commodity(&supplier, "30.00", "0.10").await;

    let mut shoppers = Vec::new();
    for (desk, phone) in [(&first, "+821051060001"), (&second, "+821051060002")] {
        let card = app
            .issue_card(
                desk,
                card_request(
                    "bank_account",
                    "adult",
                    "personal",
                    phone,
                    json!({"initial_deposit": usd("100.00")}),
                ),
            )
            .await;
        shoppers.push((app.card_login(&card_number(&card), phone).await, phone));
    }
    let (first_order, _) = app.placed_order(&shoppers[0].0, &cheap, 1).await;
    let (second_order, second_challenge) = app.placed_order(&shoppers[1].0, &dear, 1).await;

    // The pool's freezing accounts hold both, owned by the pool's first institution; the
    // second institution has none of its own.
    let pool = freezing_accounts(&app, &first).await;
    assert!(!pool.is_empty() && pool.len() <= 2, "{pool:?}");
    let pool_ids: Vec<String> = pool.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(frozen(&app, &first).await, "50.00");
    for (id, _) in freezing_accounts(&app, &second).await {
        assert!(
            pool_ids.contains(&id),
            "the second institution has no freezing account of its own"
        );
    }

    for (desk, amount) in [(&first, "20.00"), (&second, "30.00")] {
        let list = holds(&app, desk).await;
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["institution_id"], desk.id.as_str());
        assert!(
            pool_ids
                .iter()
                .any(|id| list[0]["freezing_account_id"] == id.as_str())
        );
        assert_eq!(list[0]["amount"], usd(amount));
        assert_eq!(list[0]["status"], "pending");
        assert_eq!(list[0]["mode"], "move");
    }

    // Denying the second institution's order takes only its money out of the pool.
    let denied = app
        .answer_on(shoppers[1].1, &second_challenge, "deny")
        .await;
    assert_eq!(denied.status, StatusCode::OK, "{denied:?}");
    assert_eq!(frozen(&app, &first).await, "20.00");
    assert_eq!(holds(&app, &second).await[0]["status"], "voided");
    assert_eq!(holds(&app, &first).await[0]["status"], "pending");
    assert_eq!(
        app.order_state(&shoppers[0].0, &first_order).await,
        "awaiting_order_confirmation"
    );
    assert_eq!(
        app.order_state(&shoppers[1].0, &second_order).await,
        "denied"
    );
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_supplier_changes_its_information_only_with_its_second_password() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let username = format!("sup-{}", uuid::Uuid::new_v4().simple());
    let created = app
        .post(
            "/v1/operator/suppliers",
            Some(&operator),
            json!({"display_name": "Acme", "username": username,
                   "password": "supplier-password", "second_password": "second-password-42"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let supplier = app.password_login(&username, "supplier-password").await;
    let change = |second: &str| json!({"display_name": "Acme Renamed", "second_password": second});
    let patch = |body: Value| {
        let app = &app;
        let supplier = supplier.clone();
        async move {
            app.request(
                Method::PATCH,
                "/v1/supplier/profile",
                Some(&supplier),
                Some(body),
                &[],
            )
            .await
        }
    };

    for wrong in ["wrong-password-00", "supplier-password"] {
        let refused = patch(change(wrong)).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused:?}");
        assert_eq!(refused.code(), "bad_credentials");
    }
    // Nothing changed: buyers still confirm payments to "Acme".
    let phone = "+821051070001";
    let (_, shopper) = app.shopper(&operator, phone, "100.00").await;
    let commodity = app.commodity(&supplier, "10.00", "0.10").await;
    let before = app.place_order(&shopper, &commodity, 1).await;
    assert_eq!(before.body["supplier_name"], "Acme", "{before:?}");

    let changed = patch(change("second-password-42")).await;
    assert_eq!(changed.status, StatusCode::OK, "{changed:?}");
    assert_eq!(changed.body["display_name"], "Acme Renamed");
    let after = app.place_order(&shopper, &commodity, 1).await;
    assert_eq!(after.body["supplier_name"], "Acme Renamed", "{after:?}");

    // Only a supplier changes a supplier's profile, and one without a second password cannot.
    let (_, plain) = app.supplier(&operator, "Plain Co").await;
    let refused = app
        .request(
            Method::PATCH,
            "/v1/supplier/profile",
            Some(&plain),
            Some(change("anything-at-all")),
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused:?}");
    let by_shopper = app
        .request(
            Method::PATCH,
            "/v1/supplier/profile",
            Some(&shopper),
            Some(change("second-password-42")),
            &[],
        )
        .await;
    assert_eq!(by_shopper.status, StatusCode::FORBIDDEN, "{by_shopper:?}");
}

/// A login was started (202) and no text for it reached the phone.
async fn assert_no_code_sent(app: &TestApp, phone: &str, started: &Reply) {
    assert_eq!(started.status, StatusCode::ACCEPTED, "{started:?}");
    let challenge = started.body["challenge_id"].as_str().unwrap();
    app.deliver().await;
    let inbox = app.inbox(phone, &format!("challenge_id={challenge}")).await;
    assert_eq!(inbox.body, json!([]), "{inbox:?}");
}

fn wrong_code(right: &str) -> &'static str {
    if right == "000000" {
        "111111"
    } else {
        "000000"
    }
}

async fn start_login(app: &TestApp, number: &str) -> Reply {
    app.post("/v1/auth/card-login", None, json!({"card_number": number}))
        .await
}

#[tokio::test]
async fn wrong_login_codes_across_challenges_throttle_the_card() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let phone = "+821051080001";
    let (_, number) = app.prepaid_card(&operator, phone, "10.00").await;

    // Ten wrong codes, spread over three login challenges, none of them locked.
    for wrong_tries in [4, 4, 2] {
        let started = start_login(&app, &number).await;
        assert_eq!(started.status, StatusCode::ACCEPTED, "{started:?}");
        let challenge = started.body["challenge_id"].as_str().unwrap().to_owned();
        let code = app.code_for(phone, &challenge).await;
        for _ in 0..wrong_tries {
            let reply = app.answer(&challenge, wrong_code(&code), "approve").await;
            assert_eq!(reply.code(), "challenge_wrong_code", "{reply:?}");
        }
    }
    let throttled = start_login(&app, &number).await;
    assert_eq!(
        throttled.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{throttled:?}"
    );
    assert_eq!(throttled.code(), "too_many_attempts");
    // Still refused a little later within the window.
    app.clock.advance(chrono::Duration::minutes(30));
    assert_eq!(start_login(&app, &number).await.code(), "too_many_attempts");
    // Once the window has passed, the card may log in again.
    app.clock.advance(chrono::Duration::minutes(
        holdfast_core::challenge::FAILURE_WINDOW_MINUTES,
    ));
    let token = app.card_login(&number, phone).await;
    assert!(!token.is_empty());
}

#[tokio::test]
async fn locked_login_challenges_count_towards_the_throttle() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let phone = "+821051080002";
    let (_, number) = app.prepaid_card(&operator, phone, "10.00").await;
    for _ in 0..2 {
        let started = start_login(&app, &number).await;
        assert_eq!(started.status, StatusCode::ACCEPTED, "{started:?}");
        let challenge = started.body["challenge_id"].as_str().unwrap().to_owned();
        let code = app.code_for(phone, &challenge).await;
        for _ in 0..4 {
            let reply = app.answer(&challenge, wrong_code(&code), "approve").await;
            assert_eq!(reply.code(), "challenge_wrong_code", "{reply:?}");
        }
        let locked = app.answer(&challenge, wrong_code(&code), "approve").await;
        assert_eq!(locked.code(), "challenge_locked", "{locked:?}");
        let right = app.answer(&challenge, &code, "approve").await;
        assert_eq!(right.code(), "challenge_locked", "{right:?}");
    }
    let throttled = start_login(&app, &number).await;
    assert_eq!(
        throttled.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{throttled:?}"
    );
    assert_eq!(throttled.code(), "too_many_attempts");
}

#[tokio::test]
async fn a_new_login_code_voids_the_one_before() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let phone = "+821051080003";
    let (_, number) = app.prepaid_card(&operator, phone, "10.00").await;
    let first = start_login(&app, &number).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
    let first = first.body["challenge_id"].as_str().unwrap().to_owned();
    let first_code = app.code_for(phone, &first).await;
    let second = start_login(&app, &number).await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{second:?}");
    let second = second.body["challenge_id"].as_str().unwrap().to_owned();
    assert_ne!(first, second);

    let stale = app.answer(&first, &first_code, "approve").await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{stale:?}");
    assert_eq!(stale.code(), "challenge_closed");
    assert!(stale.body["token"].is_null());

    let second_code = app.code_for(phone, &second).await;
    let logged_in = app.answer(&second, &second_code, "approve").await;
    assert_eq!(logged_in.status, StatusCode::OK, "{logged_in:?}");
    let token = logged_in.body["token"]["access_token"].as_str().unwrap();
    let accounts = app.get("/v1/accounts", Some(token)).await;
    assert_eq!(accounts.status, StatusCode::OK, "{accounts:?}");
    // A login code works once.
    let replay = app.answer(&second, &second_code, "approve").await;
    assert_eq!(replay.code(), "challenge_closed", "{replay:?}");
}
