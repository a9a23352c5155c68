//! The insurance, institution and operator pages in real headless Chromium, pages only (no API
//! calls): a policy bought, confirmed on the phone, issued, its certificate delivered and its
//! premium paid to the insurer; an institution's desk; every page checked by axe-core, by
//! keyboard and at phone width, and every desk role's pages visited for those checks. Skipped,
//! saying so, when Chromium is not installed — unless `HOLDFAST_REQUIRE_BROWSER=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_core::parties::Role;
use holdfast_server::console::nav_for;
use holdfast_server::demo::{
    CARRIER_USERNAME, DEMO_PRODUCT, INSTITUTION_USERNAME, INSURER_USERNAME, OPERATOR_USERNAME,
    SERVICE_COMPANY_USERNAME, SHOPPER_PHONE, SUPPLIER_USERNAME,
};
use holdfast_tests::browser::{Browser, ConsoleServer, DESKTOP_WINDOW, Driver, find_browser};

/// The policy number a page shows after "policy " (digits and dashes).
fn policy_number(shown: &str) -> String {
    shown
        .split("· policy ")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_digit() || *c == '-')
                .collect::<String>()
        })
        .find(|number| number.len() >= 12)
        .unwrap_or_else(|| panic!("no policy number on the page:\n{shown}"))
}

async fn signed_in(
    driver: &Driver,
    server: &ConsoleServer,
    username: &str,
    password: &str,
) -> Browser {
    let browser = driver.browser(&server.base, DESKTOP_WINDOW).await.unwrap();
    browser.sign_in(username, password).await.unwrap();
    browser
}

/// Journey (c): the card holder buys the demo product and approves it on the phone page; the
/// insurer rechecks and issues it; the service company collects and delivers the certificate
/// with the signed application; the insurer asks to be paid by the policy number; the holder
/// approves on the phone; the insurer sees the premium paid, to the cent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_is_bought_issued_delivered_and_its_premium_paid_to_the_insurer() {
    let Some((chromium, chromedriver)) = find_browser() else {
        return;
    };
    let server = ConsoleServer::start().await.unwrap();
    let driver = Driver::start(chromium, &chromedriver).await.unwrap();
    let cast = &server.demo.insurance;

    // The holder signs in with the card and buys the product; the phone is asked.
    let phone = server.phone(&driver, SHOPPER_PHONE).await.unwrap();
    let holder = driver.browser(&server.base, DESKTOP_WINDOW).await.unwrap();
    server
        .card_sign_in(&holder, &phone, &server.demo.shopper_card.to_string())
        .await
        .unwrap();
    holder.follow("Insurance").await.unwrap();
    holder.press(&format!("Buy {DEMO_PRODUCT}")).await.unwrap();
    let bought = holder.main_text().await.unwrap();
    assert!(bought.contains("Confirm on your phone"), "{bought}");
    assert!(bought.contains("awaiting_confirmation"), "{bought}");
    assert!(bought.contains("12.50 USD"), "{bought}");
    phone.answer_text("Buy policy", "Approve").await.unwrap();
    holder.reload_until("awaiting_recheck").await.unwrap();

    // The insurer lands on its applications and issues the policy.
    let insurer = signed_in(&driver, &server, INSURER_USERNAME, &cast.insurer_password).await;
    assert_eq!(
        insurer.current_path().await.unwrap(),
        "/insurer/applications"
    );
    let applications = insurer.reload_until(DEMO_PRODUCT).await.unwrap();
    assert!(applications.contains("12.50 USD"), "{applications}");
    insurer.screenshot("insurer").await.unwrap();
    insurer.press("Issue the policy").await.unwrap();
    let after = insurer.main_text().await.unwrap();
    assert!(after.contains("No application is waiting"), "{after}");

    // The holder sees the policy in force, with its number.
    let in_force = holder.reload_until("in_force").await.unwrap();
    let number = policy_number(&in_force);

    // The service company fetches the certificate, then delivers it.
    let service = signed_in(
        &driver,
        &server,
        SERVICE_COMPANY_USERNAME,
        &cast.service_company_password,
    )
    .await;
    service.follow("Certificates").await.unwrap();
    let tasks = service.reload_until(&number).await.unwrap();
    assert!(tasks.contains("awaiting_pickup"), "{tasks}");
    service.screenshot("service_company").await.unwrap();
    service
        .press("Mark received from the insurer")
        .await
        .unwrap();
    let with_us = service.main_text().await.unwrap();
    assert!(with_us.contains("with_service_company"), "{with_us}");
    service
        .fill("Policy number the holder handed over", &number)
        .await
        .unwrap();
    service
        .fill("Signed application reference", "scan-0001")
        .await
        .unwrap();
    service.press("Record the delivery").await.unwrap();
    let done = service.main_text().await.unwrap();
    assert!(done.contains("No certificate to collect"), "{done}");

    // The insurer asks to be paid by quoting the policy number.
    insurer.follow("Premiums").await.unwrap();
    insurer.fill("Policy number", &number).await.unwrap();
    insurer.press("Request settlement").await.unwrap();
    let requested = insurer.main_text().await.unwrap();
    assert!(requested.contains("settlement_requested"), "{requested}");
    assert!(requested.contains("delivered"), "{requested}");

    // The holder releases it on the phone; the insurer sees it paid, to the cent.
    phone
        .answer_text("Release payment for order", "Approve")
        .await
        .unwrap();
    let paid = insurer.reload_until("settled").await.unwrap();
    assert!(paid.contains(&format!("policy {number}")), "{paid}");
    assert!(paid.contains("12.50 USD"), "{paid}");
    let holder_view = holder.reload_until("settled").await.unwrap();
    assert!(holder_view.contains("1 of 12"), "{holder_view}");

    // The insurer lists a second product, naming the service company by the id its page
    // shows; the holder buys it, and the insurer declines it with a reason.
    service.visit("/certificates").await.unwrap();
    let service_page = service.main_text().await.unwrap();
    let service_id = service_page
        .split("their products): ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no party id on the page:\n{service_page}"))
        .to_owned();
    insurer.follow("Products").await.unwrap();
    insurer.fill("Product name", "Home contents").await.unwrap();
    insurer
        .fill("What is covered", "Theft and water damage at home.")
        .await
        .unwrap();
    insurer.choose("Currency", "USD").await.unwrap();
    insurer.fill("Sum insured", "5000.00").await.unwrap();
    insurer.fill("Premium", "30.00").await.unwrap();
    insurer.choose("Payment plan", "lump_sum").await.unwrap();
    insurer.fill("Term in months", "12").await.unwrap();
    insurer
        .fill("Service company id", &service_id)
        .await
        .unwrap();
    insurer.press("List the product").await.unwrap();
    let listed = insurer.main_text().await.unwrap();
    assert!(
        listed.contains("Home contents") && listed.contains("30.00 USD"),
        "{listed}"
    );
    holder.follow("Insurance").await.unwrap();
    holder.press("Buy Home contents").await.unwrap();
    phone.answer_text("Buy policy", "Approve").await.unwrap();
    insurer.follow("Applications").await.unwrap();
    insurer.reload_until("Home contents").await.unwrap();
    insurer
        .fill("Reason to decline", "the address is outside our area")
        .await
        .unwrap();
    insurer.press("Decline").await.unwrap();
    // Not "declined" alone: the policy list's state filter offers that word too.
    let declined = holder.reload_until("30.00 USD cancelled").await.unwrap();
    assert!(declined.contains("30.00 USD cancelled"), "{declined}");

    // Taken off sale, the product is no longer offered to the holder.
    insurer.follow("Products").await.unwrap();
    insurer.press("Take Home contents off sale").await.unwrap();
    let off = insurer.main_text().await.unwrap();
    assert!(off.contains("Put Home contents on sale"), "{off}");
    holder.visit("/policies").await.unwrap();
    let offered = holder.main_text().await.unwrap();
    assert!(!offered.contains("Buy Home contents"), "{offered}");

    for browser in [holder, phone, insurer, service] {
        browser.close().await.unwrap();
    }
}

/// The institution issues a card with its funding source, blocks, unblocks and replaces it,
/// and reads its holds and freezing account; a refused form shows the API's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_institution_issues_blocks_and_replaces_a_card() {
    let Some((chromium, chromedriver)) = find_browser() else {
        return;
    };
    let server = ConsoleServer::start().await.unwrap();
    let driver = Driver::start(chromium, &chromedriver).await.unwrap();
    let cast = &server.demo.insurance;
    let bank = signed_in(
        &driver,
        &server,
        INSTITUTION_USERNAME,
        &cast.institution_password,
    )
    .await;
    assert_eq!(bank.current_path().await.unwrap(), "/institution/cards");
    bank.fill("Holder's name", "Min-ji Park").await.unwrap();
    bank.fill("Phone (E.164)", "+821055550101").await.unwrap();
    bank.choose("Funding source", "bank_account").await.unwrap();
    bank.choose("Currency", "USD").await.unwrap();
    bank.fill("Initial deposit (prepaid or bank account)", "250.00")
        .await
        .unwrap();
    bank.press("Issue the card").await.unwrap();
    let issued = bank.main_text().await.unwrap();
    assert!(issued.contains("7001"), "{issued}");
    assert!(issued.contains("active"), "{issued}");
    bank.screenshot("institution").await.unwrap();
    bank.press("Block").await.unwrap();
    assert!(bank.main_text().await.unwrap().contains("blocked"));
    bank.press("Unblock").await.unwrap();
    bank.press("Replace").await.unwrap();
    let replaced = bank.main_text().await.unwrap();
    assert!(replaced.contains("replaced"), "{replaced}");

    // A deposit of a fraction of a cent is refused with the money code.
    bank.fill("Holder's name", "Jae Kim").await.unwrap();
    bank.fill("Phone (E.164)", "+821055550102").await.unwrap();
    bank.choose("Funding source", "bank_account").await.unwrap();
    bank.fill("Initial deposit (prepaid or bank account)", "1.001")
        .await
        .unwrap();
    bank.press("Issue the card").await.unwrap();
    let refused = bank.main_text().await.unwrap();
    assert!(refused.contains("amount_scale"), "{refused}");

    bank.visit("/institution/holds").await.unwrap();
    bank.choose("State", "pending").await.unwrap();
    bank.press("Show").await.unwrap();
    bank.follow("Freezing account").await.unwrap();
    let accounts = bank.main_text().await.unwrap();
    assert!(accounts.contains("freezing"), "{accounts}");

    // The operator onboards an insurer and a carrier on its page.
    let operator = signed_in(
        &driver,
        &server,
        OPERATOR_USERNAME,
        &server.demo.operator_password,
    )
    .await;
    operator.follow("Onboarding").await.unwrap();
    operator
        .fill_in(Some("form-insurer"), "Name", "Coastline Mutual")
        .await
        .unwrap();
    operator
        .fill_in(Some("form-insurer"), "Username", "coastline")
        .await
        .unwrap();
    operator
        .fill_in(Some("form-insurer"), "Password", "a long enough password")
        .await
        .unwrap();
    operator.press("Onboard the insurer").await.unwrap();
    let created = operator.main_text().await.unwrap();
    assert!(created.contains("Coastline Mutual"), "{created}");
    let insurer = signed_in(&driver, &server, "coastline", "a long enough password").await;
    assert_eq!(
        insurer.current_path().await.unwrap(),
        "/insurer/applications"
    );
    for browser in [bank, operator, insurer] {
        browser.close().await.unwrap();
    }
}

/// Journey (d): a retail order set up through the pages (the shopper buys two drippers and
/// approves on the phone page, the supplier asks to be paid, the shopper disputes with a
/// reason), mediated by the operator on its page: 32.50 of the 65.00 to the seller with a
/// 2.00 penalty to the seller. The operator's page, the shopper's balance and the supplier's
/// payout show the outcome to the cent: 32.50 back to the shopper, 5 % commission (1.63) and
/// the penalty kept from the seller's half, 28.87 paid out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_mediates_a_disputed_order_with_a_split_and_a_penalty() {
    let Some((chromium, chromedriver)) = find_browser() else {
        return;
    };
    let server = ConsoleServer::start().await.unwrap();
    let driver = Driver::start(chromium, &chromedriver).await.unwrap();
    let phone = server.phone(&driver, SHOPPER_PHONE).await.unwrap();
    let shopper = driver.browser(&server.base, DESKTOP_WINDOW).await.unwrap();
    server
        .card_sign_in(&shopper, &phone, &server.demo.shopper_card.to_string())
        .await
        .unwrap();
    shopper
        .fill("Quantity of Ceramic pour-over dripper", "2")
        .await
        .unwrap();
    shopper.press("Review cart").await.unwrap();
    shopper.press("Place order").await.unwrap();
    let placed = shopper.main_text().await.unwrap();
    assert!(placed.contains("65.00 USD"), "{placed}");
    let path = shopper.current_path().await.unwrap();
    let number = path.trim_start_matches("/shop/orders/").to_owned();
    phone.answer_text(&number, "Approve").await.unwrap();
    shopper.wait_for_text("frozen").await.unwrap();

    // The supplier asks to be paid for all of it.
    let supplier = signed_in(
        &driver,
        &server,
        SUPPLIER_USERNAME,
        &server.demo.supplier_password,
    )
    .await;
    supplier.follow("Order-number check").await.unwrap();
    supplier.fill("Order number", &number).await.unwrap();
    supplier.press("Check").await.unwrap();
    supplier.press("Request settlement").await.unwrap();
    supplier
        .wait_for_text("settlement requested")
        .await
        .unwrap();

    // The shopper disputes it in the app, with a reason.
    shopper.visit(&path).await.unwrap();
    shopper.reload_until("settlement requested").await.unwrap();
    shopper
        .fill("What went wrong", "one of the two drippers arrived cracked")
        .await
        .unwrap();
    shopper.press("Dispute the payment").await.unwrap();
    shopper.wait_for_text("disputed").await.unwrap();

    // The operator's desk lists it; the operator splits it with a penalty to the seller.
    let operator = signed_in(
        &driver,
        &server,
        OPERATOR_USERNAME,
        &server.demo.operator_password,
    )
    .await;
    assert_eq!(operator.current_path().await.unwrap(), "/operator");
    let desk = operator.reload_until(&number).await.unwrap();
    assert!(
        desk.contains("retail") && desk.contains("65.00 USD"),
        "{desk}"
    );
    assert!(desk.contains("The ledger proves"), "{desk}");
    operator.screenshot("operator").await.unwrap();
    operator.follow(&format!("Mediate {number}")).await.unwrap();
    operator
        .choose(
            "Outcome",
            "split: the amount below to the seller, the rest back to the buyer",
        )
        .await
        .unwrap();
    operator
        .fill("To the seller, with a split (USD)", "32.50")
        .await
        .unwrap();
    operator
        .choose("Penalty charged to", "seller")
        .await
        .unwrap();
    operator.fill("Penalty (USD)", "2.00").await.unwrap();
    operator
        .fill("Note", "one dripper broke in the packing")
        .await
        .unwrap();
    operator.press("Mediate").await.unwrap();
    let mediated = operator.main_text().await.unwrap();
    for (what, amount) in [
        ("Released to the seller", "32.50 USD"),
        ("Seller's payout", "28.87 USD"),
        ("Commission", "1.63 USD"),
        ("Penalty", "2.00 USD"),
        ("Refunded to the buyer", "32.50 USD"),
    ] {
        assert!(
            mediated.contains(&format!("{what}\n{amount}"))
                || mediated.contains(&format!("{what} {amount}")),
            "{what} {amount}: {mediated}"
        );
    }
    operator.follow("Disputes").await.unwrap();
    let left = operator.main_text().await.unwrap();
    assert!(left.contains("No dispute is waiting"), "{left}");
    operator.follow("Ledger audit").await.unwrap();
    let audit = operator.main_text().await.unwrap();
    assert!(audit.contains("The ledger proves"), "{audit}");

    // The parties' pages: the shopper got 32.50 of its 65.00 back, the supplier 28.87.
    shopper.visit(&path).await.unwrap();
    let order = shopper.reload_until("mediated").await.unwrap();
    assert!(
        order.contains("32.50 USD to the seller, 32.50 USD refunded"),
        "{order}"
    );
    shopper.follow("Balances and cards").await.unwrap();
    let balances = shopper.main_text().await.unwrap();
    assert!(balances.contains("467.50 USD"), "{balances}");
    supplier.follow("Settlement status").await.unwrap();
    let status = supplier.main_text().await.unwrap();
    assert!(status.contains("28.87 USD"), "{status}");
    for browser in [phone, shopper, supplier, operator] {
        browser.close().await.unwrap();
    }
}

/// Every page in the navigation of the insurer, the service company, the institution, the
/// operator, the supplier and the carrier works by keyboard alone and at phone width (and
/// passes axe): `visit` checks each, and in the phone window nothing is wider than the screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_desk_page_works_by_keyboard_and_at_phone_width() {
    let Some((chromium, chromedriver)) = find_browser() else {
        return;
    };
    let server = ConsoleServer::start().await.unwrap();
    let driver = Driver::start(chromium, &chromedriver).await.unwrap();
    let cast = &server.demo.insurance;
    for (username, password, role) in [
        (INSURER_USERNAME, &cast.insurer_password, Role::Insurer),
        (
            SERVICE_COMPANY_USERNAME,
            &cast.service_company_password,
            Role::Distributor,
        ),
        (
            INSTITUTION_USERNAME,
            &cast.institution_password,
            Role::Institution,
        ),
        (
            OPERATOR_USERNAME,
            &server.demo.operator_password,
            Role::Operator,
        ),
        (
            SUPPLIER_USERNAME,
            &server.demo.supplier_password,
            Role::Supplier,
        ),
        (
            CARRIER_USERNAME,
            &server.demo.carrier_password,
            Role::Distributor,
        ),
    ] {
        let desk = signed_in(&driver, &server, username, password).await;
        for link in nav_for(role) {
            desk.visit(link.href)
                .await
                .unwrap_or_else(|e| panic!("{username} {}: {e:#}", link.href));
        }
        desk.close().await.unwrap();
    }
}
