//! The console in real headless Chromium, pages only (no API calls): people sign in, the
//! phone page plays the phone, and every page visited passes axe-core (no serious or critical
//! violation). Skipped, saying so, when Chromium is not installed — unless
//! `HOLDFAST_REQUIRE_BROWSER=1` (CI), which fails instead. See `holdfast_tests::browser`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_server::demo::{
    CARRIER_USERNAME, OPERATOR_USERNAME, SHOPPER_PHONE, SUPPLIER_USERNAME,
};
use holdfast_tests::browser::{ConsoleServer, DESKTOP_WINDOW, Driver, find_browser};

/// Sign-in by password and by card with the code from the phone page, the role's landing
/// page, a form posted without its CSRF token refused, and sign-out ending the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_sign_in_by_password_and_by_card_and_sign_out() {
    let Some((chromium, chromedriver)) = find_browser() else {
        return;
    };
    let server = ConsoleServer::start().await.unwrap();
    let driver = Driver::start(chromium, &chromedriver).await.unwrap();

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
    let home = operator.main_text().await.unwrap();
    assert!(home.contains("signed in as operator"), "{home}");
    operator.screenshot("operator").await.unwrap();

    // The shopper signs in with the card; the code arrives on the phone page.
    let phone = server.phone(&driver, SHOPPER_PHONE).await.unwrap();
    let shopper = driver.browser(&server.base, DESKTOP_WINDOW).await.unwrap();
    server
        .card_sign_in(&shopper, &phone, &server.demo.shopper_card.to_string())
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
