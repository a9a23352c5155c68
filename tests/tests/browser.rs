//! The console in real headless Chromium, pages only (no API calls): people sign in, the
//! phone page plays the phone, and every page visited passes axe-core (no serious or critical
//! violation). Skipped, saying so, when Chromium is not installed — unless
//! `HOLDFAST_REQUIRE_BROWSER=1` (CI), which fails instead. See `holdfast_tests::browser`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_server::demo::{CARRIER_USERNAME, OPERATOR_USERNAME, SUPPLIER_USERNAME};
use holdfast_tests::browser::{DESKTOP_WINDOW, PHONE_WINDOW, start_suite};

/// Sign-in by password and by card with the code from the phone page, the role's landing
/// page, a form posted without its CSRF token refused, and sign-out ending the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_sign_in_by_password_and_by_card_and_sign_out() {
    let Some((server, driver)) = start_suite().await else {
        return;
    };

    // A visitor is sent to the sign-in page; a wrong password is refused with the API's code.
    let operator = driver.browser(&server.base, DESKTOP_WINDOW).await.unwrap();
    operator.visit("/").await.unwrap();
    assert_eq!(operator.current_path().await.unwrap(), "/sign-in");
    operator
        .sign_in(OPERATOR_USERNAME, "not-the-password")
        .await
        .unwrap();
    let refused = operator.main_text().await.unwrap();
    assert!(refused.contains("bad_credentials"), "{refused}");
    operator
        .sign_in(OPERATOR_USERNAME, &server.demo.operator_password)
        .await
        .unwrap();
    // The operator lands on its desk (browser_insurance.rs takes its screenshot).
    let home = operator.page_text().await.unwrap();
    assert!(home.contains("Signed in as operator"), "{home}");
    assert_eq!(operator.current_path().await.unwrap(), "/operator");

    // The shopper signs in with the card; the code arrives on the phone page.
    let (phone, shopper) = server
        .shopper_with_phone(&driver, DESKTOP_WINDOW)
        .await
        .unwrap();
    let landed = shopper.page_text().await.unwrap();
    assert!(landed.contains("Signed in as shopper"), "{landed}");

    // A form whose CSRF token was taken out is refused with a 403 page.
    shopper
        .client
        .execute(
            "document.querySelector('form.sign-out input[name=csrf]').remove(); \
             document.querySelector('form.sign-out').submit();",
            vec![],
        )
        .await
        .unwrap();
    let refused = shopper.wait_for_text("csrf_failed").await.unwrap();
    assert!(refused.contains("did not come from this site"), "{refused}");

    // Signing out ends the session: the landing page asks to sign in again.
    shopper.visit("/home").await.unwrap();
    shopper.press("Sign out").await.unwrap();
    assert_eq!(
        shopper.current_path().await.unwrap(),
        "/sign-in",
        "{}",
        shopper.page_text().await.unwrap()
    );
    shopper.visit("/home").await.unwrap();
    assert_eq!(shopper.current_path().await.unwrap(), "/sign-in");

    // The supplier and the carrier land on their pages.
    for (username, password) in [
        (SUPPLIER_USERNAME, &server.demo.supplier_password),
        (CARRIER_USERNAME, &server.demo.carrier_password),
    ] {
        let browser = driver.browser(&server.base, DESKTOP_WINDOW).await.unwrap();
        browser.sign_in(username, password).await.unwrap();
        let text = browser.page_text().await.unwrap();
        assert!(text.contains("Signed in as"), "{text}");
        browser.close().await.unwrap();
    }
    for browser in [operator, phone, shopper] {
        browser.close().await.unwrap();
    }
}

/// Journey (b), pages only: the shopper buys two bags of beans and approves on the phone page,
/// the carrier tracks the parcel to the door and delivers it with the order number, the
/// supplier checks the order number and asks to be paid, the shopper approves the payment on
/// the phone, and the supplier sees its payout: 48.00 USD less the 5 % commission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_buys_the_carrier_delivers_and_the_supplier_is_paid() {
    let Some((server, driver)) = start_suite().await else {
        return;
    };
    let (phone, shopper) = server
        .shopper_with_phone(&driver, DESKTOP_WINDOW)
        .await
        .unwrap();

    // The catalogue of the card's class (an adult personal card: no business-only machine).
    assert_eq!(shopper.current_path().await.unwrap(), "/shop");
    let catalogue = shopper.main_text().await.unwrap();
    assert!(catalogue.contains("Espresso beans, 1 kg"), "{catalogue}");
    assert!(catalogue.contains("24.00 USD"), "{catalogue}");
    assert!(
        !catalogue.contains("Office espresso machine"),
        "{catalogue}"
    );
    shopper.screenshot("shopper").await.unwrap();
    shopper
        .fill("Quantity of Espresso beans, 1 kg", "2")
        .await
        .unwrap();
    shopper.press("Review cart").await.unwrap();
    let cart = shopper.main_text().await.unwrap();
    assert!(
        cart.contains("Acme Supplies") && cart.contains("24.00 USD"),
        "{cart}"
    );
    shopper.press("Place order").await.unwrap();
    let placed = shopper.main_text().await.unwrap();
    assert!(placed.contains("awaiting order confirmation"), "{placed}");
    assert!(placed.contains("Approve on your phone"), "{placed}");
    assert!(placed.contains("48.00 USD"), "{placed}");
    let path = shopper.current_path().await.unwrap();
    let number = path.trim_start_matches("/shop/orders/").to_owned();

    // The phone shows the exact amount, payee and order number; approving freezes the money,
    // and the order's page says so by itself.
    let text = phone.wait_for_text(&number).await.unwrap();
    assert!(
        text.contains(&format!(
            "Approve order {number}, 48.00 USD to Acme Supplies"
        )),
        "{text}"
    );
    phone.answer_text(&number, "Approve").await.unwrap();
    shopper.wait_for_text("frozen").await.unwrap();

    // The carrier's parcel: picked up, through a depot, delivered with the order number.
    let carrier = driver.browser(&server.base, DESKTOP_WINDOW).await.unwrap();
    carrier
        .sign_in(CARRIER_USERNAME, &server.demo.carrier_password)
        .await
        .unwrap();
    let parcels = carrier.main_text().await.unwrap();
    assert!(
        parcels.contains(&number) && parcels.contains("awaiting pickup"),
        "{parcels}"
    );
    assert!(parcels.contains("Sejong-daero"), "{parcels}");
    carrier.screenshot("carrier").await.unwrap();
    let card = format!("parcel-{number}");
    for (what, place, handed_over) in [
        ("picked up", "Incheon hub", ""),
        ("arrived at a distribution point", "Seoul depot", ""),
        ("delivered", "Jung-gu", number.as_str()),
    ] {
        carrier
            .choose_in(Some(&card), "What happened", what)
            .await
            .unwrap();
        carrier.fill_in(Some(&card), "Where", place).await.unwrap();
        if !handed_over.is_empty() {
            carrier
                .fill_in(
                    Some(&card),
                    "Order number the buyer handed over (on delivery)",
                    handed_over,
                )
                .await
                .unwrap();
        }
        carrier.press_in(Some(&card), "Record").await.unwrap();
    }
    // A delivered parcel leaves the carrier's list of open parcels.
    let delivered = carrier.main_text().await.unwrap();
    assert!(!delivered.contains(&number), "{delivered}");
    let tracked = shopper.wait_for_text("Jung-gu").await.unwrap();
    assert!(
        tracked.contains("Incheon hub") && tracked.contains("Seoul depot"),
        "{tracked}"
    );
    phone.wait_for_text("Seoul depot").await.unwrap();

    // The supplier checks the order number and asks to be paid for all of it.
    let supplier = driver.browser(&server.base, DESKTOP_WINDOW).await.unwrap();
    supplier
        .sign_in(SUPPLIER_USERNAME, &server.demo.supplier_password)
        .await
        .unwrap();
    supplier.follow("Order-number check").await.unwrap();
    supplier.fill("Order number", &number).await.unwrap();
    supplier.press("Check").await.unwrap();
    let order = supplier.main_text().await.unwrap();
    assert!(
        order.contains("48.00 USD") && order.contains("delivered"),
        "{order}"
    );
    assert!(
        !order.contains("Sejong-daero"),
        "a supplier never sees the address: {order}"
    );
    supplier.press("Request settlement").await.unwrap();
    supplier
        .wait_for_text("settlement requested")
        .await
        .unwrap();

    // The shopper approves the payment on the phone; the order settles.
    phone
        .answer_text("Release payment", "Approve")
        .await
        .unwrap();
    phone.screenshot("phone").await.unwrap();
    shopper.wait_for_text("settled").await.unwrap();
    supplier.wait_for_text("settled").await.unwrap();

    // The payout: 48.00 less 5 % commission.
    supplier.follow("Settlement status").await.unwrap();
    let status = supplier.main_text().await.unwrap();
    assert!(
        status.contains("withdrawal") && status.contains("45.60 USD"),
        "{status}"
    );
    supplier.screenshot("supplier").await.unwrap();
    for browser in [phone, shopper, carrier, supplier] {
        browser.close().await.unwrap();
    }
}

/// The shopper's other pages: an order cancelled before dispatch returns the held money (the
/// balance shows it to the cent), and a card reported lost is blocked at once and can no
/// longer sign in (no code reaches the phone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_cancels_an_order_and_reports_the_card_lost() {
    let Some((server, driver)) = start_suite().await else {
        return;
    };
    let (phone, shopper) = server
        .shopper_with_phone(&driver, PHONE_WINDOW)
        .await
        .unwrap();
    let card = server.demo.shopper_card.to_string();

    shopper
        .fill("Quantity of Gooseneck kettle", "1")
        .await
        .unwrap();
    shopper.press("Review cart").await.unwrap();
    shopper.press("Place order").await.unwrap();
    shopper.wait_for_text("79.90 USD").await.unwrap();
    shopper.follow("Balances and cards").await.unwrap();
    let held = shopper.main_text().await.unwrap();
    assert!(held.contains("420.10 USD"), "the kettle is held: {held}");
    shopper.follow("Orders").await.unwrap();
    let orders = shopper.main_text().await.unwrap();
    assert!(orders.contains("awaiting order confirmation"), "{orders}");
    shopper
        .client
        .find(fantoccini::Locator::XPath("//main//table//a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    shopper.wait_for_text("Cancel order").await.unwrap();
    shopper.press("Cancel order").await.unwrap();
    shopper.wait_for_text("cancelled").await.unwrap();
    shopper.follow("Balances and cards").await.unwrap();
    let returned = shopper.main_text().await.unwrap();
    assert!(
        returned.contains("500.00 USD"),
        "the money returned: {returned}"
    );
    assert!(!returned.contains("420.10 USD"), "{returned}");

    // Report the card lost: blocked at once; signing in with it sends no code.
    shopper.press("Report lost").await.unwrap();
    let blocked = shopper.main_text().await.unwrap();
    assert!(blocked.contains("blocked"), "{blocked}");
    // The cancelled order's confirmation was voided; count the texts the phone has now.
    phone.wait_for_text("voided").await.unwrap();
    let texts_before = phone
        .main_text()
        .await
        .unwrap()
        .matches("Holdfast:")
        .count();
    shopper.press("Sign out").await.unwrap();
    shopper.visit("/sign-in").await.unwrap();
    shopper.fill("EC card number", &card).await.unwrap();
    shopper.press("Send me a code").await.unwrap();
    shopper
        .wait_for_text("A code was sent to the phone")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let texts_after = phone
        .main_text()
        .await
        .unwrap()
        .matches("Holdfast:")
        .count();
    assert_eq!(texts_before, texts_after, "a blocked card gets no code");
    for browser in [phone, shopper] {
        browser.close().await.unwrap();
    }
}

/// The supplier's other windows and the shopper's approvals page: each renders, passes axe,
/// and does what it says (a new commodity appears in the shop; a wrong second password is
/// refused with the API's code).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supplier_windows_work_by_their_labels() {
    let Some((server, driver)) = start_suite().await else {
        return;
    };
    let supplier = driver.browser(&server.base, PHONE_WINDOW).await.unwrap();
    supplier
        .sign_in(SUPPLIER_USERNAME, &server.demo.supplier_password)
        .await
        .unwrap();
    supplier.visit("/supplier/goods").await.unwrap();
    supplier.fill("Name", "Milk frothing jug").await.unwrap();
    supplier.fill("Manufacturer", "Acme").await.unwrap();
    supplier.fill("Price", "18.75").await.unwrap();
    supplier.press("Add the commodity").await.unwrap();
    let goods = supplier.main_text().await.unwrap();
    assert!(
        goods.contains("Milk frothing jug") && goods.contains("18.75 USD"),
        "{goods}"
    );

    supplier.visit("/supplier/profile").await.unwrap();
    supplier
        .fill("Second password", "not-the-second-password")
        .await
        .unwrap();
    supplier.press("Change").await.unwrap();
    let refused = supplier.main_text().await.unwrap();
    assert!(refused.contains("Error code:"), "{refused}");
    supplier.visit("/supplier/webhooks").await.unwrap();
    supplier.visit("/supplier/check").await.unwrap();
    supplier.fill("Order number", "1234").await.unwrap();
    supplier.press("Check").await.unwrap();
    let bad = supplier.main_text().await.unwrap();
    assert!(bad.contains("invalid_order_number"), "{bad}");

    let (phone, shopper) = server
        .shopper_with_phone(&driver, DESKTOP_WINDOW)
        .await
        .unwrap();
    let shop = shopper.main_text().await.unwrap();
    assert!(
        shop.contains("Milk frothing jug") && shop.contains("18.75 USD"),
        "{shop}"
    );
    shopper.follow("Card-present approvals").await.unwrap();
    shopper.follow("Orders").await.unwrap();
    let none = shopper.main_text().await.unwrap();
    assert!(none.contains("No orders yet"), "{none}");
    for browser in [supplier, phone, shopper] {
        browser.close().await.unwrap();
    }
}

/// The shopper's orders are paged: with one order a page, "Next page" (a link carrying the
/// list's cursor) shows the older order, and the state filter keeps only orders in that state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shoppers_orders_page_by_next_page_and_filter_by_state() {
    let Some((server, driver)) = start_suite().await else {
        return;
    };
    let (_phone, shopper) = server
        .shopper_with_phone(&driver, DESKTOP_WINDOW)
        .await
        .unwrap();
    for _ in 0..2 {
        shopper.visit("/shop").await.unwrap();
        shopper
            .fill("Quantity of Gooseneck kettle", "1")
            .await
            .unwrap();
        shopper.press("Review cart").await.unwrap();
        shopper.press("Place order").await.unwrap();
        shopper.wait_for_text("79.90 USD").await.unwrap();
    }
    let first_order = async || {
        shopper
            .client
            .find(fantoccini::Locator::XPath("//main//table//a"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    shopper.visit("/shop/orders?limit=1").await.unwrap();
    let newest = first_order().await;
    shopper.follow("Next page").await.unwrap();
    let page_two = shopper.main_text().await.unwrap();
    let older = first_order().await;
    assert_ne!(newest, older, "{page_two}");
    assert!(!page_two.contains(&newest), "{page_two}");
    shopper.visit("/shop/orders").await.unwrap();
    let all = shopper.main_text().await.unwrap();
    assert!(all.contains(&newest) && all.contains(&older), "{all}");
    assert!(!all.contains("Next page"), "{all}");

    shopper.choose("State", "cancelled").await.unwrap();
    shopper.press("Show").await.unwrap();
    let none = shopper.main_text().await.unwrap();
    assert!(none.contains("No orders that match"), "{none}");
    shopper
        .choose("State", "awaiting order confirmation")
        .await
        .unwrap();
    shopper.press("Show").await.unwrap();
    let waiting = shopper.main_text().await.unwrap();
    assert!(
        waiting.contains(&newest) && waiting.contains(&older),
        "{waiting}"
    );
}
