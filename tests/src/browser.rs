//! The browser suite's harness: the server on a real TCP port (with its workers, so texts
//! arrive by themselves), `chromedriver` on a free loopback port, and one headless Chromium
//! per person (each its own profile, so its own cookies). Pages are driven as a person would:
//! fields found by their label, buttons by their text, and assertions on the text the page
//! shows. axe-core runs on every page visited; a violation of impact "serious" or "critical"
//! fails the test.
//!
//! Without `chromium` and `chromedriver` on the PATH the suite prints that it was SKIPPED and
//! passes, unless `HOLDFAST_REQUIRE_BROWSER=1` (CI sets it), which makes it fail instead.

use crate::TestApp;
use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use holdfast_server::demo::{self, Demo};
use holdfast_server::workers::{self, WorkerIntervals};
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// axe-core, vendored from npm (see tests/assets/README.md).
const AXE: &str = include_str!("../assets/axe-4.14.1.min.js");

/// What keeps a page from working by keyboard alone, as a list of findings (see
/// [`Browser::check_keyboard_and_phone_width`]). It moves the focus, and puts it and the
/// scroll position back.
const KEYBOARD: &str = r#"
const describe = el => {
  const text = (el.getAttribute('aria-label') || el.textContent || el.name || el.id || '').trim().slice(0, 40);
  return `<${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${el.name ? ' name=' + el.name : ''}> "${text}"`;
};
const found = [];
const before = document.activeElement;
const scroll = [window.scrollX, window.scrollY];
for (const el of document.querySelectorAll('[tabindex]')) {
  if (el.tabIndex > 0) found.push(`positive tabindex ${el.tabIndex} on ${describe(el)}`);
}
const controls = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]';
for (const el of document.querySelectorAll(controls)) {
  if (el.disabled || el.tabIndex < 0) continue;
  // Not rendered (display: none, a closed <details>): not in the tab order either.
  if (el.getClientRects().length === 0) continue;
  if (el.closest('[aria-hidden="true"]')) found.push(`focusable inside aria-hidden: ${describe(el)}`);
  el.focus({ preventScroll: false });
  if (document.activeElement !== el) { found.push(`cannot take the focus: ${describe(el)}`); continue; }
  const box = el.getBoundingClientRect();
  const style = getComputedStyle(el);
  if (box.width < 1 || box.height < 1 || style.visibility === 'hidden' || style.opacity === '0'
      || box.right <= 0 || box.left >= window.innerWidth) {
    found.push(`focused but not visible: ${describe(el)}`);
  }
}
for (const el of document.querySelectorAll('input:not([type=hidden]):not([type=submit]):not([type=button]), select, textarea')) {
  if (el.labels.length === 0 && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')) {
    found.push(`no label: ${describe(el)}`);
  }
}
if (before && before.focus) before.focus({ preventScroll: true }); else document.activeElement.blur();
window.scrollTo(scroll[0], scroll[1]);
return found;
"#;

/// In the phone window: is the page wider than the screen? The findings name the widest
/// elements that stick out.
const PHONE_OVERFLOW: &str = r#"
const width = window.innerWidth;
const page = document.documentElement.scrollWidth;
if (page <= width) return [];
const out = [];
for (const el of document.querySelectorAll('body *')) {
  const box = el.getBoundingClientRect();
  if (box.right > width + 1 && !(el.parentElement && el.parentElement.getBoundingClientRect().right > width + 1)) {
    out.push(`<${el.tagName.toLowerCase()}${el.className ? '.' + el.className : ''}> reaches ${Math.round(box.right)}px`);
  }
}
return [`the page is ${page}px wide in a ${width}px phone window`].concat(out.slice(0, 8));
"#;

/// How long a page may take to show what a test waits for (texts arrive through the outbox
/// worker; htmx polls every 2 s).
pub const WAIT: Duration = Duration::from_secs(30);

/// One browser test at a time: each starts several Chromiums, and on a small machine two
/// suites side by side would only make both slow.
static ONE_AT_A_TIME: std::sync::LazyLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(Default::default);

/// Phone-sized and desktop-sized windows.
pub const PHONE_WINDOW: (u32, u32) = (412, 915);
pub const DESKTOP_WINDOW: (u32, u32) = (1280, 960);

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// The browser and its driver, or `None` (with the suite's SKIPPED notice printed) when they
/// are not installed. Panics instead when `HOLDFAST_REQUIRE_BROWSER=1`.
pub fn find_browser() -> Option<(PathBuf, PathBuf)> {
    // Under Debian's faketime (.ci/faketime-suite) the browser would inherit the faked clock;
    // the suite runs on the test's manual clock, so dates cannot change what it checks.
    if std::env::var_os("FAKETIME").is_some() {
        eprintln!("\n*** browser suite SKIPPED under faketime: it runs on a manual clock ***\n");
        return None;
    }
    let chromium = on_path(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = on_path(&["chromedriver"]);
    match (chromium, driver) {
        (Some(chromium), Some(driver)) => Some((chromium, driver)),
        _ => {
            let required = std::env::var("HOLDFAST_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "HOLDFAST_REQUIRE_BROWSER=1 but chromium or chromedriver is not on the PATH \
                 (Debian: apt-get install chromium chromium-driver)"
            );
            eprintln!(
                "\n*** browser suite SKIPPED: chromium and chromedriver are not on the PATH \
                 (Debian: apt-get install chromium chromium-driver; set \
                 HOLDFAST_REQUIRE_BROWSER=1 to make their absence fail) ***\n"
            );
            None
        }
    }
}

/// A running `chromedriver`, stopped when dropped.
pub struct Driver {
    child: Child,
    _turn: tokio::sync::OwnedMutexGuard<()>,
    pub url: String,
    chromium: PathBuf,
}

impl Drop for Driver {
    /// Ends chromedriver and every Chromium it started: they share its process group, so a
    /// test that failed before closing its browsers leaves nothing running.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub async fn start(chromium: PathBuf, driver: &Path) -> anyhow::Result<Driver> {
        let turn = ONE_AT_A_TIME.clone().lock_owned().await;
        let port = crate::driver::free_port()?;
        let child = Command::new(driver)
            // Its own process group, which Chromium joins: see `Drop`.
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("could not start chromedriver")?;
        let driver = Driver {
            child,
            _turn: turn,
            url: format!("http://127.0.0.1:{port}"),
            chromium,
        };
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(reply) = http.get(format!("{}/status", driver.url)).send().await
                && reply.status().is_success()
            {
                return Ok(driver);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("chromedriver did not come up on port {port}")
    }

    /// A new headless Chromium (its own profile and cookies) on the console at `base`.
    pub async fn browser(&self, base: &str, window: (u32, u32)) -> anyhow::Result<Browser> {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": self.chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    format!("--window-size={},{}", window.0, window.1),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .context("could not open a Chromium session")?;
        client.set_window_size(window.0, window.1).await?;
        Ok(Browser {
            client,
            base: base.to_owned(),
            window,
        })
    }
}

/// One person's browser.
pub struct Browser {
    pub client: Client,
    pub base: String,
    /// The window it was opened with (the phone-width check returns to it).
    window: (u32, u32),
}

/// XPath string literal for `text` (which may hold quotes).
fn xpath_literal(text: &str) -> String {
    if !text.contains('\'') {
        format!("'{text}'")
    } else if !text.contains('"') {
        format!("\"{text}\"")
    } else {
        let parts: Vec<String> = text.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}

impl Browser {
    /// Opens `path` and checks the page with axe.
    pub async fn visit(&self, path: &str) -> anyhow::Result<()> {
        self.client.goto(&format!("{}{path}", self.base)).await?;
        self.check_accessibility().await
    }

    /// The text of the page's `<main>` (what a person reads).
    pub async fn main_text(&self) -> anyhow::Result<String> {
        Ok(self.client.find(Locator::Css("main")).await?.text().await?)
    }

    /// The text of the whole page.
    pub async fn page_text(&self) -> anyhow::Result<String> {
        Ok(self.client.find(Locator::Css("body")).await?.text().await?)
    }

    /// Waits until the page's `<main>` says `text` (the page updates itself).
    pub async fn wait_for_text(&self, text: &str) -> anyhow::Result<String> {
        self.until_text(text, false).await
    }

    /// Reloads until the page says `text` (for pages without live updates).
    pub async fn reload_until(&self, text: &str) -> anyhow::Result<String> {
        self.until_text(text, true).await
    }

    async fn until_text(&self, text: &str, reload: bool) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let shown = self.main_text().await.unwrap_or_default();
            if shown.contains(text) {
                return Ok(shown);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the page never said {text:?}; it says:\n{shown}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            if reload {
                self.client.refresh().await?;
            }
        }
    }

    /// Types `value` into the field labelled `label` (the first such field on the page, or
    /// the first inside the element with id `within`).
    pub async fn fill(&self, label: &str, value: &str) -> anyhow::Result<()> {
        self.fill_in(None, label, value).await
    }

    pub async fn fill_in(
        &self,
        within: Option<&str>,
        label: &str,
        value: &str,
    ) -> anyhow::Result<()> {
        let id = self.field_id(within, label).await?;
        let field = self.client.find(Locator::Id(&id)).await?;
        field.clear().await?;
        field.send_keys(value).await?;
        Ok(())
    }

    /// Chooses `option` in the select labelled `label`.
    pub async fn choose(&self, label: &str, option: &str) -> anyhow::Result<()> {
        self.choose_in(None, label, option).await
    }

    pub async fn choose_in(
        &self,
        within: Option<&str>,
        label: &str,
        option: &str,
    ) -> anyhow::Result<()> {
        let id = self.field_id(within, label).await?;
        let select = self.client.find(Locator::Id(&id)).await?;
        select.select_by_label(option).await?;
        Ok(())
    }

    /// The id of the field labelled `label` (inside the element with id `within`, if given).
    async fn field_id(&self, within: Option<&str>, label: &str) -> anyhow::Result<String> {
        let scope = within.map_or(String::new(), |id| {
            format!("//*[@id={}]", xpath_literal(id))
        });
        let label_el = self
            .client
            .find(Locator::XPath(&format!(
                "{scope}//label[normalize-space()={}]",
                xpath_literal(label)
            )))
            .await
            .with_context(|| format!("no field labelled {label:?}"))?;
        label_el
            .attr("for")
            .await?
            .with_context(|| format!("the label {label:?} names no field"))
    }

    /// Presses the button whose text is `text` (the first one, or the first inside the element
    /// with id `within`), waits for the next page, and checks it with axe.
    pub async fn press(&self, text: &str) -> anyhow::Result<()> {
        self.press_in(None, text).await
    }

    pub async fn press_in(&self, within: Option<&str>, text: &str) -> anyhow::Result<()> {
        let scope = within.map_or(String::new(), |id| {
            format!("//*[@id={}]", xpath_literal(id))
        });
        self.press_at(&format!(
            "{scope}//button[normalize-space()={}]",
            xpath_literal(text)
        ))
        .await
    }

    /// On the phone page: answers (`"Approve"` or `"Deny"`) the newest text that mentions
    /// `mention` (an order number, "Log in"…), with the code the text shows.
    pub async fn answer_text(&self, mention: &str, decision: &str) -> anyhow::Result<()> {
        self.wait_for_text(mention).await?;
        let deadline = tokio::time::Instant::now() + WAIT;
        let xpath = format!(
            "//li[contains(., {})]//button[normalize-space()={}]",
            xpath_literal(mention),
            xpath_literal(decision)
        );
        while self.client.find(Locator::XPath(&xpath)).await.is_err() {
            if tokio::time::Instant::now() > deadline {
                bail!("no text mentioning {mention:?} can be answered");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.press_at(&xpath).await
    }

    /// Presses the button at `xpath`, waits for the next page, and checks it with axe.
    pub async fn press_at(&self, xpath: &str) -> anyhow::Result<()> {
        let button = self
            .client
            .find(Locator::XPath(xpath))
            .await
            .with_context(|| format!("no button at {xpath}"))?;
        let old_body = self.client.find(Locator::Css("body")).await?;
        button.click().await?;
        // The old page's body goes stale once the next page has loaded.
        let deadline = tokio::time::Instant::now() + WAIT;
        while old_body.tag_name().await.is_ok() {
            if tokio::time::Instant::now() > deadline {
                bail!("pressing {xpath} did not lead to a new page");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.check_accessibility().await
    }

    /// Follows the link whose text is `text`.
    pub async fn follow(&self, text: &str) -> anyhow::Result<()> {
        let link = self
            .client
            .find(Locator::XPath(&format!(
                "//a[normalize-space()={}]",
                xpath_literal(text)
            )))
            .await
            .with_context(|| format!("no link {text:?}"))?;
        link.click().await?;
        self.client.wait().for_element(Locator::Css("main")).await?;
        self.check_accessibility().await
    }

    pub async fn current_path(&self) -> anyhow::Result<String> {
        Ok(self.client.current_url().await?.path().to_owned())
    }

    /// Checks the page as every page must be: axe-core's serious and critical rules, then by
    /// keyboard and at phone width ([`Browser::check_keyboard_and_phone_width`]).
    pub async fn check_accessibility(&self) -> anyhow::Result<()> {
        self.check_axe().await?;
        self.check_keyboard_and_phone_width().await
    }

    /// Every page works by keyboard alone and at phone width: no positive `tabindex`, every
    /// control that is shown can take the focus and is visible when it has it (a skip link
    /// appears), none inside `aria-hidden`, every form control has a label; and in the phone
    /// window ([`PHONE_WINDOW`]) nothing is wider than the screen
    /// (`document.documentElement.scrollWidth <= window.innerWidth`; a wide table scrolls
    /// inside its own region). The window goes back to its size afterwards.
    pub async fn check_keyboard_and_phone_width(&self) -> anyhow::Result<()> {
        let mut problems = self.keyboard_problems().await?;
        if self.window != PHONE_WINDOW {
            self.client
                .set_window_size(PHONE_WINDOW.0, PHONE_WINDOW.1)
                .await?;
        }
        let overflow = self.client.execute(PHONE_OVERFLOW, vec![]).await;
        let at_phone = self.keyboard_problems().await;
        if self.window != PHONE_WINDOW {
            self.client
                .set_window_size(self.window.0, self.window.1)
                .await?;
        }
        let overflow: Vec<String> = serde_json::from_value(overflow?).unwrap_or_default();
        problems.extend(overflow);
        problems.extend(
            at_phone?
                .into_iter()
                .map(|p| format!("at phone width: {p}")),
        );
        problems.dedup();
        if !problems.is_empty() {
            let path = self.current_path().await.unwrap_or_default();
            bail!(
                "{path} fails by keyboard or at phone width:\n{}",
                problems.join("\n")
            );
        }
        Ok(())
    }

    async fn keyboard_problems(&self) -> anyhow::Result<Vec<String>> {
        let found = self.client.execute(KEYBOARD, vec![]).await?;
        Ok(serde_json::from_value(found).unwrap_or_default())
    }

    /// Runs axe-core on the page; fails on any violation of impact serious or critical.
    pub async fn check_axe(&self) -> anyhow::Result<()> {
        let loaded = self
            .client
            .execute("return typeof window.axe !== 'undefined';", vec![])
            .await?;
        if loaded != Value::Bool(true) {
            self.client
                .execute(&format!("{AXE}\nreturn true;"), vec![])
                .await
                .context("could not inject axe-core")?;
        }
        let result = self
            .client
            .execute_async(
                r#"
                const done = arguments[arguments.length - 1];
                axe.run(document, { resultTypes: ['violations'] })
                  .then(r => done(r.violations
                    .filter(v => v.impact === 'serious' || v.impact === 'critical')
                    .map(v => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.map(n => n.target.join(' ')).join(', ')}`)))
                  .catch(e => done(['axe could not run: ' + e]));
                "#,
                vec![],
            )
            .await?;
        let violations: Vec<String> = serde_json::from_value(result).unwrap_or_default();
        if !violations.is_empty() {
            let path = self.current_path().await.unwrap_or_default();
            bail!("axe found on {path}:\n{}", violations.join("\n"));
        }
        Ok(())
    }

    /// Saves a screenshot of the page as `<name>.png` in `HOLDFAST_SCREENSHOT_DIR`, or in
    /// target/screenshots: a test run leaves the checked-in docs/screenshots alone unless asked
    /// (`HOLDFAST_SCREENSHOT_DIR=docs/screenshots` refreshes README's tour).
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<()> {
        let png = self.client.screenshot().await?;
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = match std::env::var_os("HOLDFAST_SCREENSHOT_DIR") {
            Some(dir) => workspace.join(dir),
            None => workspace.join("target/screenshots"),
        };
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{name}.png")), png)?;
        Ok(())
    }

    pub async fn close(self) -> anyhow::Result<()> {
        self.client.close().await?;
        Ok(())
    }

    /// Signs in with a username and password.
    pub async fn sign_in(&self, username: &str, password: &str) -> anyhow::Result<()> {
        self.visit("/sign-in").await?;
        self.fill("Username", username).await?;
        self.fill("Password", password).await?;
        self.press("Sign in").await
    }
}

/// The server and chromedriver for one browser test, or `None` when the suite is skipped
/// (see [`find_browser`]).
pub async fn start_suite() -> Option<(ConsoleServer, Driver)> {
    let (chromium, chromedriver) = find_browser()?;
    let server = ConsoleServer::start()
        .await
        .expect("the console server starts");
    let driver = Driver::start(chromium, &chromedriver)
        .await
        .expect("chromedriver starts");
    Some((server, driver))
}

/// The server on a real port with its workers, seeded with the demo's cast.
pub struct ConsoleServer {
    pub app: TestApp,
    pub base: String,
    pub demo: Demo,
    pub simulator_key: String,
    /// Dropped with the session: its tasks are aborted.
    _workers: workers::Workers,
}

impl ConsoleServer {
    pub async fn start() -> anyhow::Result<ConsoleServer> {
        let app = TestApp::spawn().await;
        let demo = demo::seed(&app.state).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let service = app
            .router
            .clone()
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, service).await;
        });
        let workers = workers::spawn(
            app.state.clone(),
            WorkerIntervals {
                outbox_poll: Duration::from_millis(100),
                timer_poll: Duration::from_millis(500),
                ..WorkerIntervals::default()
            },
        );
        let simulator_key = app
            .state
            .simulator_key
            .as_ref()
            .context("the test server runs the phone simulator")?
            .expose()
            .to_owned();
        Ok(ConsoleServer {
            app,
            base,
            demo,
            simulator_key,
            _workers: workers,
        })
    }

    /// A phone-shaped browser showing `phone`'s texts (it gives the simulator key once).
    pub async fn phone(&self, driver: &Driver, phone: &str) -> anyhow::Result<Browser> {
        let browser = driver.browser(&self.base, PHONE_WINDOW).await?;
        browser.visit("/phone").await?;
        browser.fill("Phone number", phone).await?;
        browser.fill("Simulator key", &self.simulator_key).await?;
        browser.press("Open the phone").await?;
        browser.wait_for_text("Texts").await?;
        Ok(browser)
    }

    /// The demo shopper's phone page and its browser, signed in with the demo card.
    pub async fn shopper_with_phone(
        &self,
        driver: &Driver,
        window: (u32, u32),
    ) -> anyhow::Result<(Browser, Browser)> {
        let phone = self.phone(driver, demo::SHOPPER_PHONE).await?;
        let shopper = driver.browser(&self.base, window).await?;
        self.card_sign_in(&shopper, &phone, &self.demo.shopper_card.to_string())
            .await?;
        Ok((phone, shopper))
    }

    /// Signs the shopper in with its card: the code is read off `phone` and typed in.
    pub async fn card_sign_in(
        &self,
        shopper: &Browser,
        phone: &Browser,
        card: &str,
    ) -> anyhow::Result<()> {
        let before = phone.main_text().await?;
        shopper.visit("/sign-in").await?;
        shopper.fill("EC card number", card).await?;
        shopper.press("Send me a code").await?;
        shopper
            .wait_for_text("A code was sent to the phone")
            .await?;
        let code = wait_for_new_code(phone, &before, "Log in").await?;
        shopper.fill("Code from your phone", &code).await?;
        shopper.press("Approve sign-in").await
    }
}

/// Waits for a text mentioning `what` that was not on the phone before, and returns its code.
pub async fn wait_for_new_code(
    phone: &Browser,
    before: &str,
    what: &str,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let shown = phone.main_text().await?;
        if shown != before
            && let Some(code) = newest_code(&shown, what)
        {
            return Ok(code);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no new {what} code reached the phone; it shows:\n{shown}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The code in the newest text (texts are listed newest first) that mentions `what`.
pub fn newest_code(shown: &str, what: &str) -> Option<String> {
    shown
        .lines()
        .filter(|line| line.to_lowercase().contains(&what.to_lowercase()))
        .find_map(|line| {
            let start = line.find("Code ")? + "Code ".len();
            let code: String = line[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            (code.len() >= 6).then_some(code)
        })
}
