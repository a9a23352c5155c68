//! The console over HTTP without a browser: a session's cookie, its pages' forms (their CSRF
//! token and nonce read off the page) and posts, for tests that must be exact about what a
//! form does (sent twice, sent without its nonce) rather than about how a page looks.

use crate::TestApp;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use holdfast_core::cards::CardNumber;
use holdfast_core::parties::Role;
use holdfast_server::auth::Principal;
use holdfast_server::console::session::{self, NewSession};
use http_body_util::BodyExt;
use tower::ServiceExt;

const HOST: &str = "127.0.0.1";

/// A page's answer: its status, where it redirects (if it does) and its HTML.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub html: String,
    set_cookie: Option<String>,
}

/// One person's console session.
pub struct Console<'a> {
    app: &'a TestApp,
    cookie: String,
}

impl<'a> Console<'a> {
    /// Signs in on the sign-in page with a username and password, as a browser does.
    pub async fn sign_in(app: &'a TestApp, username: &str, password: &str) -> Console<'a> {
        let page = send(app, Method::GET, "/sign-in", None, None).await;
        let visitor = Console {
            app,
            cookie: cookie_of(&page),
        };
        let csrf = hidden(&page.html, "csrf").expect("the sign-in page carries a CSRF token");
        let signed_in = visitor
            .post(
                "/sign-in/password",
                &[
                    ("csrf", csrf.as_str()),
                    ("username", username),
                    ("password", password),
                ],
            )
            .await;
        assert_eq!(
            signed_in.status,
            StatusCode::SEE_OTHER,
            "{}",
            signed_in.html
        );
        Console {
            app,
            cookie: cookie_of(&signed_in),
        }
    }

    /// A shopper's session with `card`, as signing in with the card and its phone code gives.
    pub async fn shopper(app: &'a TestApp, card: &CardNumber) -> Console<'a> {
        let card = holdfast_core::cards::find_by_number(&app.state.db, card)
            .await
            .unwrap()
            .expect("the card exists");
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(header::HOST, HOST.parse().unwrap());
        let principal = Principal {
            party: card.holder,
            role: Role::Shopper,
            card: Some(card.id),
        };
        let (_, set_cookie) = session::create(
            &app.state,
            &headers,
            None,
            NewSession {
                principal: Some(principal),
                ..NewSession::default()
            },
        )
        .await
        .expect("a session");
        let set_cookie = set_cookie.expect("a cookie");
        Console {
            app,
            cookie: first_pair(set_cookie.to_str().unwrap()),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        send(self.app, Method::GET, path, Some(&self.cookie), None).await
    }

    /// The hidden fields (CSRF token, nonce, and any other) of the form on `page` that posts to
    /// `action`, as the page rendered them. A list's filter form may share the action, with
    /// `method="get"`: only the posting form counts.
    pub async fn form(&self, page: &str, action: &str) -> Vec<(String, String)> {
        let shown = self.get(page).await;
        assert_eq!(shown.status, StatusCode::OK, "{page}: {}", shown.html);
        let marker = format!("method=\"post\" action=\"{action}\"");
        let start = shown
            .html
            .find(&marker)
            .unwrap_or_else(|| panic!("{page} has no form posting to {action}"));
        let form = &shown.html[start..];
        let form = &form[..form.find("</form>").unwrap_or(form.len())];
        form.split("<input type=\"hidden\" ")
            .skip(1)
            .filter_map(|input| Some((attribute(input, "name")?, attribute(input, "value")?)))
            .collect()
    }

    /// Posts `fields` (urlencoded) to `action`.
    pub async fn post<N: AsRef<str>, V: AsRef<str>>(
        &self,
        action: &str,
        fields: &[(N, V)],
    ) -> Answer {
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(n, v)| (n.as_ref(), v.as_ref()))
            .collect();
        let body = serde_urlencoded::to_string(&pairs).unwrap();
        send(
            self.app,
            Method::POST,
            action,
            Some(&self.cookie),
            Some(body),
        )
        .await
    }
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    form: Option<String>,
) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    if form.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let request = request.body(Body::from(form.unwrap_or_default())).unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .map(|l| l.to_str().unwrap().to_owned());
    let set_cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|c| first_pair(c.to_str().unwrap()));
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        location,
        html: String::from_utf8_lossy(&bytes).into_owned(),
        set_cookie,
    }
}

fn cookie_of(answer: &Answer) -> String {
    answer
        .set_cookie
        .clone()
        .expect("the page set a session cookie")
}

/// `name=value` of a `Set-Cookie` header.
fn first_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_owned()
}

/// The value of the first hidden input named `name` in `html`.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    Some(html[start..].split('"').next()?.to_owned())
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let marker = format!("{name}=\"");
    let start = tag.find(&marker)? + marker.len();
    Some(tag[start..].split('"').next()?.to_owned())
}

/// The first form field name in `html` that starts with `prefix` (a catalogue's `q_<id>`).
pub fn field_named(html: &str, prefix: &str) -> Option<String> {
    let marker = format!("name=\"{prefix}");
    let start = html.find(&marker)? + "name=\"".len();
    Some(html[start..].split('"').next()?.to_owned())
}
