//! Journey (a) of issue 14 in real headless Chromium, pages only (no API calls): a prescriber
//! enters a prescription, a drugstore asks to open it, the patient approves on the phone page,
//! the drugstore reads and prices it, the patient pays and confirms the exact amount on the
//! phone page, the drugstore dispenses and is paid, and the patient sees each read in the
//! access log. Every page visited passes axe-core. See `holdfast_tests::browser`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_server::demo::{
    DEMO_DRUGSTORE_NAME, DRUGSTORE_USERNAME, PRESCRIBER_USERNAME, SHOPPER_PHONE,
};
use holdfast_tests::browser::{Browser, ConsoleServer, DESKTOP_WINDOW, Driver, find_browser};

/// The value printed after `label` on a page (a `<dt>`/`<dd>` pair reads as two lines).
fn value_after(shown: &str, label: &str) -> String {
    let mut lines = shown.lines();
    lines
        .find(|line| line.trim() == label)
        .and_then(|_| lines.next())
        .map(|value| value.trim().to_owned())
        .unwrap_or_else(|| panic!("the page shows no {label:?}:\n{shown}"))
}

/// The prescription number in the page's heading "Prescription XXXXXX-XXXXXX-XXXXXX".
async fn heading_number(browser: &Browser) -> String {
    let shown = browser.main_text().await.unwrap();
    value_after(&shown, "Prescription")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prescription_goes_from_hospital_to_drugstore_with_the_patients_phone_deciding() {
    let Some((chromium, chromedriver)) = find_browser() else {
        return;
    };
    let server = ConsoleServer::start().await.unwrap();
    let driver = Driver::start(chromium, &chromedriver).await.unwrap();
    let card = server.demo.shopper_card.to_string();
    let cast = &server.demo.pharmacy;
    let printed = holdfast_server::demo::instructions(&server.demo, &server.base, None);
    for line in [PRESCRIBER_USERNAME, DRUGSTORE_USERNAME, "patient   card"] {
        assert!(printed.contains(line), "{printed}");
    }
    let phone = server.phone(&driver, SHOPPER_PHONE).await.unwrap();

    // The prescriber enters a prescription for the patient's medical card.
    let prescriber = driver.browser(&server.base, DESKTOP_WINDOW).await.unwrap();
    prescriber
        .sign_in(PRESCRIBER_USERNAME, &cast.prescriber_password)
        .await
        .unwrap();
    assert_eq!(prescriber.current_path().await.unwrap(), "/prescriber");
    prescriber.follow("New prescription").await.unwrap();
    fill_prescription(
        &prescriber,
        &card,
        &[
            ("Drug name", "Ibuprofen"),
            ("Drug code", "0093-5058"),
            ("Strength", "400 mg tablets"),
            ("Dosage", "1 tablet when needed"),
            ("Quantity", "20"),
            ("Unit", "tablet"),
            ("Days", "10"),
        ],
    )
    .await;
    prescriber.press("Issue the prescription").await.unwrap();
    let number = heading_number(&prescriber).await;
    let issued = prescriber.main_text().await.unwrap();
    assert!(issued.contains("issued"), "{issued}");
    assert!(
        !issued.contains("Ibuprofen"),
        "no content on the receipt:\n{issued}"
    );

    // The drugstore looks up the card the patient presents: only that it exists.
    let drugstore = driver.browser(&server.base, DESKTOP_WINDOW).await.unwrap();
    drugstore
        .sign_in(DRUGSTORE_USERNAME, &cast.drugstore_password)
        .await
        .unwrap();
    assert_eq!(drugstore.current_path().await.unwrap(), "/drugstore");
    drugstore.fill("Medical card number", &card).await.unwrap();
    drugstore.press("Look up prescriptions").await.unwrap();
    let found = drugstore.main_text().await.unwrap();
    assert!(found.contains(&number), "{found}");
    assert!(!found.contains("Ibuprofen"), "{found}");
    drugstore
        .press_in(Some(&format!("rx-{number}")), "Ask the patient to open it")
        .await
        .unwrap();
    let waiting = drugstore.main_text().await.unwrap();
    assert!(
        waiting.contains("Waiting for the patient's phone"),
        "{waiting}"
    );
    assert!(!waiting.contains("Read the prescription"), "{waiting}");

    // The patient allows it on the phone; the drugstore's page notices by itself.
    phone.answer_text(&number, "Approve").await.unwrap();
    let claimed = drugstore
        .wait_for_text("held by a drugstore")
        .await
        .unwrap();
    assert!(claimed.contains(DEMO_DRUGSTORE_NAME), "{claimed}");
    drugstore.check_accessibility().await.unwrap();

    // The drugstore reads it (logged) and prices it.
    drugstore.follow("Read the prescription").await.unwrap();
    let content = drugstore.main_text().await.unwrap();
    assert!(
        content.contains("Ibuprofen") && content.contains("1 tablet when needed"),
        "{content}"
    );
    drugstore.follow("Back").await.unwrap();
    drugstore.fill("Amount", "18.50").await.unwrap();
    drugstore.press("Set the price").await.unwrap();
    let priced = drugstore.main_text().await.unwrap();
    assert!(
        priced.contains("18.50 USD") && priced.contains("priced"),
        "{priced}"
    );

    // The patient signs in with the card, sees the prescription and pays by card.
    let patient = driver.browser(&server.base, DESKTOP_WINDOW).await.unwrap();
    server.card_sign_in(&patient, &phone, &card).await.unwrap();
    patient.visit("/patient").await.unwrap();
    let list = patient.main_text().await.unwrap();
    assert!(list.contains(&number) && list.contains("priced"), "{list}");
    patient.follow(&number).await.unwrap();
    let own = patient.main_text().await.unwrap();
    assert!(
        own.contains("Ibuprofen") && own.contains("Pay 18.50 USD"),
        "{own}"
    );
    patient.press("Pay").await.unwrap();
    let asked = patient.main_text().await.unwrap();
    assert!(
        asked.contains("Your phone is asked to confirm the payment of 18.50 USD"),
        "{asked}"
    );
    let order = value_after(&asked, "Order number");

    // The phone shows the exact amount and the drugstore; the patient confirms.
    phone.wait_for_text(&order).await.unwrap();
    let texts = phone.main_text().await.unwrap();
    let pay_text = texts
        .lines()
        .find(|line| line.contains(&order) && line.contains("Pay"))
        .unwrap_or_else(|| panic!("no payment text for {order}:\n{texts}"));
    assert!(
        pay_text.contains("18.50 USD") && pay_text.contains(DEMO_DRUGSTORE_NAME),
        "{pay_text}"
    );
    phone.answer_text(&order, "Approve").await.unwrap();
    patient.wait_for_text("paid").await.unwrap();

    // The drugstore sees the payment confirmed, dispenses with the order number the patient
    // hands over, and asks to be paid; the phone releases the money.
    drugstore
        .wait_for_text("Record the dispensing")
        .await
        .unwrap();
    drugstore
        .fill("Order number the patient handed over", &order)
        .await
        .unwrap();
    drugstore.press("Record the dispensing").await.unwrap();
    let dispensed = drugstore.main_text().await.unwrap();
    assert!(dispensed.contains("dispensed"), "{dispensed}");
    drugstore.press("Ask to be paid").await.unwrap();
    phone.answer_text(&order, "Approve").await.unwrap();
    let paid = drugstore.wait_for_text("Paid: 18.50 USD").await.unwrap();
    assert!(paid.contains("settled"), "{paid}");
    drugstore.check_accessibility().await.unwrap();
    drugstore.visit("/drugstore").await.unwrap();
    let home = drugstore.main_text().await.unwrap();
    assert!(home.contains("18.50 USD"), "{home}");
    drugstore.screenshot("drugstore").await.unwrap();

    // The patient's access log: the drugstore's look-up and its one read, by name.
    patient.visit("/patient/access-log").await.unwrap();
    let log = patient.main_text().await.unwrap();
    let drugstore_lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(&number) && line.contains(DEMO_DRUGSTORE_NAME))
        .collect();
    assert_eq!(drugstore_lines.len(), 2, "{log}");
    assert!(
        drugstore_lines
            .iter()
            .any(|line| line.contains("saw that it exists")),
        "{log}"
    );
    assert!(
        drugstore_lines
            .iter()
            .any(|line| line.contains("read what was prescribed")),
        "{log}"
    );
    patient.visit("/patient/payments").await.unwrap();
    let payments = patient.main_text().await.unwrap();
    assert!(
        payments.contains(&order) && payments.contains("18.50 USD"),
        "{payments}"
    );
    patient.visit("/patient").await.unwrap();
    patient.screenshot("patient").await.unwrap();

    // The prescriber sees it settled, and no longer cancellable.
    prescriber.visit("/prescriber").await.unwrap();
    let listed = prescriber.main_text().await.unwrap();
    assert!(
        listed.contains(&number) && listed.contains("settled"),
        "{listed}"
    );
    prescriber.screenshot("prescriber").await.unwrap();
    prescriber.follow(&number).await.unwrap();
    let settled = prescriber.main_text().await.unwrap();
    assert!(!settled.contains("Cancel the prescription"), "{settled}");

    for browser in [prescriber, drugstore, patient, phone] {
        browser.close().await.unwrap();
    }
}

/// Fills the prescriber's form: the card and the first item.
async fn fill_prescription(prescriber: &Browser, card: &str, item: &[(&str, &str)]) {
    prescriber
        .fill("Patient's medical card number", card)
        .await
        .unwrap();
    for (label, value) in item {
        prescriber
            .fill_in(Some("item-1"), label, value)
            .await
            .unwrap();
    }
}

/// An item as the prescriber types it.
fn amoxicillin(drug: &str) -> [(&str, &str); 5] {
    [
        ("Drug name", drug),
        ("Drug code", "641400260"),
        ("Dosage", "1 capsule 3 times a day"),
        ("Quantity", "21"),
        ("Days", "7"),
    ]
}

/// Enters a prescription of one item on the prescriber's form; returns its number.
async fn prescribe(
    prescriber: &Browser,
    card: &str,
    drug: &str,
    drugstore: Option<&str>,
) -> String {
    prescriber.visit("/prescriber/new").await.unwrap();
    fill_prescription(prescriber, card, &amoxicillin(drug)).await;
    if let Some(name) = drugstore {
        prescriber
            .choose("Drugstore the patient chose", name)
            .await
            .unwrap();
    }
    prescriber.press("Issue the prescription").await.unwrap();
    heading_number(prescriber).await
}

/// The prescriber's form keeps what was typed and shows the API's code; cancelling, the
/// state filter and the pager; the drugstore (at phone width) claims what the patient sent
/// it, hands it back, asks to open it again, and sees the patient's refusal by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prescribers_cancel_and_filter_and_a_drugstore_hands_back_and_is_refused() {
    let Some((chromium, chromedriver)) = find_browser() else {
        return;
    };
    let server = ConsoleServer::start().await.unwrap();
    let driver = Driver::start(chromium, &chromedriver).await.unwrap();
    let card = server.demo.shopper_card.to_string();
    let cast = &server.demo.pharmacy;
    let phone = server.phone(&driver, SHOPPER_PHONE).await.unwrap();
    let prescriber = driver.browser(&server.base, DESKTOP_WINDOW).await.unwrap();
    prescriber
        .sign_in(PRESCRIBER_USERNAME, &cast.prescriber_password)
        .await
        .unwrap();

    // A mistyped card number: the form comes back as typed, with the refusal.
    prescriber.visit("/prescriber/new").await.unwrap();
    fill_prescription(&prescriber, "1234", &amoxicillin("Amoxicillin")).await;
    prescriber.press("Issue the prescription").await.unwrap();
    let refused = prescriber.main_text().await.unwrap();
    assert!(refused.contains("Error code"), "{refused}");
    let kept = prescriber
        .client
        .execute(
            "return document.getElementById('item1_name').value;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(kept, serde_json::json!("Amoxicillin"));
    assert_eq!(
        prescriber.current_path().await.unwrap(),
        "/prescriber/prescriptions"
    );

    let first = prescribe(&prescriber, &card, "Amoxicillin", None).await;
    let sent = prescribe(&prescriber, &card, "Ibuprofen", Some(DEMO_DRUGSTORE_NAME)).await;
    let routed = prescriber.main_text().await.unwrap();
    assert!(routed.contains("routed"), "{routed}");

    // The prescriber cancels the first; the filter and the pager find each.
    prescriber
        .visit(&format!("/prescriber/prescriptions/{first}"))
        .await
        .unwrap();
    prescriber.press("Cancel the prescription").await.unwrap();
    let cancelled = prescriber.main_text().await.unwrap();
    assert!(cancelled.contains("cancelled"), "{cancelled}");
    assert!(
        !cancelled.contains("Cancel the prescription"),
        "{cancelled}"
    );
    prescriber.visit("/prescriber").await.unwrap();
    prescriber.choose("State", "cancelled").await.unwrap();
    prescriber.press("Show").await.unwrap();
    let filtered = prescriber.main_text().await.unwrap();
    assert!(
        filtered.contains(&first) && !filtered.contains(&sent),
        "{filtered}"
    );
    prescriber.visit("/prescriber?limit=1").await.unwrap();
    let page_one = prescriber.main_text().await.unwrap();
    assert!(
        page_one.contains(&sent) && !page_one.contains(&first),
        "{page_one}"
    );
    prescriber.follow("Next page").await.unwrap();
    let page_two = prescriber.main_text().await.unwrap();
    assert!(
        page_two.contains(&first) && !page_two.contains(&sent),
        "{page_two}"
    );

    // The drugstore the patient chose claims it at once, then hands it back.
    let drugstore = driver
        .browser(&server.base, holdfast_tests::browser::PHONE_WINDOW)
        .await
        .unwrap();
    drugstore
        .sign_in(DRUGSTORE_USERNAME, &cast.drugstore_password)
        .await
        .unwrap();
    let home = drugstore.main_text().await.unwrap();
    assert!(home.contains(&sent) && !home.contains(&first), "{home}");
    drugstore.follow(&sent).await.unwrap();
    drugstore.press("Claim it").await.unwrap();
    let claimed = drugstore.main_text().await.unwrap();
    assert!(claimed.contains("held by a drugstore"), "{claimed}");
    drugstore.press("Hand it back").await.unwrap();
    assert_eq!(drugstore.current_path().await.unwrap(), "/drugstore");
    let after = drugstore.main_text().await.unwrap();
    assert!(!after.contains(&sent), "{after}");

    // Back in the pool: it asks the patient, who denies; the page says so by itself.
    drugstore.fill("Medical card number", &card).await.unwrap();
    drugstore.press("Look up prescriptions").await.unwrap();
    drugstore
        .press_in(Some(&format!("rx-{sent}")), "Ask the patient to open it")
        .await
        .unwrap();
    drugstore
        .wait_for_text("Waiting for the patient's phone")
        .await
        .unwrap();
    phone.answer_text(&sent, "Deny").await.unwrap();
    let denied = drugstore
        .wait_for_text("prescription_not_held")
        .await
        .unwrap();
    assert!(!denied.contains("Read the prescription"), "{denied}");
    drugstore.check_accessibility().await.unwrap();
    drugstore
        .visit(&format!("/drugstore/prescriptions/{sent}/content"))
        .await
        .unwrap();
    let refused = drugstore.main_text().await.unwrap();
    assert!(
        refused.contains("prescription_not_held") && !refused.contains("Ibuprofen"),
        "{refused}"
    );

    for browser in [prescriber, drugstore, phone] {
        browser.close().await.unwrap();
    }
}
