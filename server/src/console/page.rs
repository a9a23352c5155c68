//! What every page shares: the layout's context ([`Layout`]), rendering ([`render`]), the
//! error page ([`PageError`]), and the checked form extractor ([`Posted`]) with the claim of
//! the form's nonce ([`FormClaim`]).

use super::session::{self, Session};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::idempotency::{IdempotencyKey, Idempotent};
use crate::state::AppState;
use askama::Template;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use holdfast_core::parties::Role;
use serde::de::DeserializeOwned;

/// One link of the navigation.
#[derive(Debug, Clone)]
pub struct NavLink {
    pub href: &'static str,
    pub label: &'static str,
}

/// What the base layout needs: the page's title, the navigation of the signed-in role, and
/// the session's CSRF token for the sign-out form (and any form on the page).
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    pub nav: Vec<NavLink>,
    /// Empty when nobody is signed in.
    pub signed_in_as: String,
    pub csrf: String,
    /// The path of the page, to mark the current link.
    pub current: String,
}

impl Layout {
    /// The layout for `session` (signed in or not).
    pub fn new(title: impl Into<String>, session: Option<&Session>, current: &str) -> Layout {
        let principal = session.and_then(|s| s.principal);
        Layout {
            title: title.into(),
            nav: principal.map_or_else(Vec::new, |p| super::nav_for(p.role)),
            signed_in_as: principal.map_or_else(String::new, |p| role_label(p.role).to_owned()),
            csrf: session.map_or_else(String::new, |s| s.csrf.clone()),
            current: current.to_owned(),
        }
    }

    /// The layout of a signed-in page.
    pub fn signed_in(title: impl Into<String>, session: &Session, current: &str) -> Layout {
        Layout::new(title, Some(session), current)
    }

    /// A fresh nonce for one form of the page (`console/form_keys.html` asks once per form).
    pub fn nonce(&self) -> String {
        form_nonce()
    }
}

/// The form field that carries a form's nonce: 128 random bits (hex), new each time the form
/// is rendered. A form that writes claims it as the runner's idempotency key, so the same
/// rendered form sent twice (a double click, back and send again, a browser's retry) runs its
/// use case once.
pub const NONCE_FIELD: &str = "nonce";

/// A new form nonce: 16 random bytes, hex.
pub fn form_nonce() -> String {
    use rand::TryRngCore;
    let mut bytes = [0u8; 16];
    // As for session ids: the OS source, or ThreadRng (seeded from it) if it fails.
    if rand::rngs::OsRng.try_fill_bytes(&mut bytes).is_err() {
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    }
    hex::encode(bytes)
}

fn is_nonce(value: &str) -> bool {
    value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How a role is named on the page.
pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::Operator => "operator",
        Role::Shopper => "shopper",
        Role::Supplier => "supplier",
        Role::Distributor => "carrier",
        Role::Prescriber => "prescriber",
        Role::Drugstore => "drugstore",
        Role::Insurer => "insurer",
        Role::Institution => "institution",
        Role::Terminal => "terminal",
        Role::Platform => "platform",
    }
}

/// Renders a template to an HTML response.
pub fn render(template: &impl Template) -> Result<Response, PageError> {
    let html = template
        .render()
        .map_err(|e| PageError::Api(ApiError::internal(&e)))?;
    Ok(Html(html).into_response())
}

/// A page that could not be served: sent to the sign-in page, or shown the API's error (its
/// stable code and message) on an error page with the right status. Never a stack trace: a
/// 500 says only that something went wrong (the cause is logged by [`ApiError::internal`]).
#[derive(Debug)]
pub enum PageError {
    SignIn,
    Api(ApiError),
    /// The refusal the first send of this form got (a wrong code counted), shown again to the
    /// second: its status, code and message as they were recorded.
    Recorded(StatusCode, Notice),
}

impl PageError {
    pub fn forbidden(message: impl Into<String>) -> PageError {
        PageError::Api(ApiError::forbidden(message))
    }

    /// Refuses the page unless the principal has one of `roles` (the API's own check).
    pub fn require(principal: &Principal, roles: &[Role]) -> Result<(), PageError> {
        principal.require(roles).map_err(PageError::Api)
    }
}

macro_rules! page_error_from {
    ($($error:ty),* $(,)?) => {
        $(impl From<$error> for PageError {
            fn from(error: $error) -> Self {
                PageError::Api(ApiError::from(error))
            }
        })*
    };
}

page_error_from!(
    holdfast_core::CoreError,
    holdfast_retail::RetailError,
    holdfast_pharmacy::PharmacyError,
    holdfast_insurance::InsuranceError,
    crate::app::AppError,
    sea_orm::DbErr,
);

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        PageError::Api(error)
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    layout: Layout,
    code: String,
    message: String,
    request_id: String,
}

/// The error page for `error`.
pub fn error_page(error: &ApiError) -> Response {
    let body = error.body();
    let notice = Notice {
        code: body.error.code,
        message: body.error.message,
    };
    let mut response = notice_page(error.status, notice, body.error.request_id);
    crate::error::ensure_retry_after(&mut response, error.retry_after_secs);
    response
}

/// The error page showing `notice` with `status`.
fn notice_page(status: StatusCode, notice: Notice, request_id: String) -> Response {
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::UNAUTHORIZED => "Not signed in",
        status if status.is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    let page = ErrorPage {
        layout: Layout::new(title, None, ""),
        code: notice.code,
        message: notice.message,
        request_id,
    };
    let html = page
        .render()
        .unwrap_or_else(|_| format!("<!doctype html><title>{title}</title><p>{title}</p>"));
    (status, Html(html)).into_response()
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn => Redirect::to("/sign-in").into_response(),
            PageError::Api(error) => error_page(&error),
            PageError::Recorded(status, notice) => {
                notice_page(status, notice, crate::error::current_request_id())
            }
        }
    }
}

pub type PageResult = Result<Response, PageError>;

/// A 303 to `to`: every successful form post ends in one (post/redirect/get).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A form with nothing but its CSRF token (a button): `Posted<NoFields>`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct NoFields {}

/// The form field that carries the session's CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// A posted form, accepted only from a page of this site: the session must exist, the hidden
/// [`CSRF_FIELD`] must equal its token (compared in constant time), and an `Origin` header,
/// when the browser sends one, must name this host. Anything else gets a 403 page. `T` is
/// parsed from the same urlencoded body (its own fields; the token and nonce are ignored by
/// it). `claim` is what the form's [`NONCE_FIELD`] claims when its page writes.
#[derive(Debug)]
pub struct Posted<T> {
    pub session: Session,
    pub form: T,
    pub claim: FormClaim,
}

/// What a form's nonce claims in the runner ([`super::txn::write`]): the key `console:<nonce>`
/// among the signed-in principal's keys (a visitor's session's, for the phone simulator), for
/// this path and these fields (without the CSRF token and the nonce). `None` when the form sent
/// no nonce: a page that writes refuses it.
#[derive(Debug)]
pub struct FormClaim(Option<Idempotent>);

impl FormClaim {
    fn of(
        session: &Session,
        path: &str,
        fields: &[(String, String)],
    ) -> Result<FormClaim, PageError> {
        let Some((_, nonce)) = fields.iter().find(|(name, _)| name == NONCE_FIELD) else {
            return Ok(FormClaim(None));
        };
        if !is_nonce(nonce) {
            return Err(PageError::Api(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_form_nonce",
                "this form's nonce is not one this site wrote: reload the page and send it again",
            )));
        }
        let typed: Vec<&(String, String)> = fields
            .iter()
            .filter(|(name, _)| name != CSRF_FIELD && name != NONCE_FIELD)
            .collect();
        Ok(FormClaim(Some(Idempotent::new(
            session.claim_scope(),
            IdempotencyKey(Some(format!("console:{nonce}"))),
            &format!("console {path}"),
            &typed,
        ))))
    }

    /// The claim, or the refusal of a writing form sent without its nonce.
    pub fn required(self) -> Result<Idempotent, PageError> {
        self.0.ok_or_else(|| {
            PageError::Api(ApiError::new(
                StatusCode::BAD_REQUEST,
                "form_nonce_required",
                "this form has no nonce, so sending it twice could do it twice: reload the page and send it again",
            ))
        })
    }
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for Posted<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, PageError> {
        let (parts, body) = request.into_parts();
        check_origin(&parts.headers)?;
        let path = parts.uri.path().to_owned();
        let session = session::load(state, &parts.headers).await?.ok_or_else(|| {
            PageError::Api(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                "your session has expired: reload the page and try again",
            ))
        })?;
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|_| ApiError::invalid("the form could not be read"))?;
        let fields = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .map_err(|_| ApiError::invalid("the form could not be read"))?;
        let presented = fields
            .iter()
            .find(|(name, _)| name == CSRF_FIELD)
            .map(|(_, value)| value.as_str())
            .unwrap_or_default();
        use subtle::ConstantTimeEq;
        if !bool::from(presented.as_bytes().ct_eq(session.csrf.as_bytes())) {
            return Err(PageError::Api(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                "this form did not come from this site's page: reload the page and try again",
            )));
        }
        let form = serde_urlencoded::from_bytes::<T>(&bytes).map_err(|e| {
            let message = e.to_string();
            // A refused text field keeps the API's code (`text_empty`, `amount_scale`…).
            let code = holdfast_core::text::field_error_code(&message).unwrap_or("invalid_form");
            ApiError::new(StatusCode::BAD_REQUEST, code, message)
        })?;
        let claim = FormClaim::of(&session, &path, &fields)?;
        Ok(Posted {
            session,
            form,
            claim,
        })
    }
}

/// Refuses a cross-site post: an `Origin` that is present must be this host's.
fn check_origin(headers: &HeaderMap) -> Result<(), PageError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
    });
    match (origin_host, host) {
        (Some(origin_host), Some(host)) if origin_host.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(PageError::Api(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "a form of another site cannot post here",
        ))),
    }
}

/// Renders `error` inline above a form instead of on its own page: the code and message the
/// API would give.
#[derive(Debug, Clone, Default)]
pub struct Notice {
    pub code: String,
    pub message: String,
}

impl From<&ApiError> for Notice {
    fn from(error: &ApiError) -> Self {
        Notice {
            code: error.code.to_owned(),
            message: error.message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::console::test_headers as headers;

    #[test]
    fn a_post_from_another_origin_is_refused_and_one_without_origin_passes() {
        assert!(check_origin(&headers(&[("host", "127.0.0.1:8080")])).is_ok());
        assert!(
            check_origin(&headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080")
            ]))
            .is_ok()
        );
        for origin in ["http://evil.example", "null", "http://127.0.0.1:9999"] {
            let refused = check_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", origin)]));
            assert!(refused.is_err(), "{origin}");
        }
    }

    #[test]
    fn an_error_page_shows_the_code_and_message_and_never_a_cause() {
        let response = error_page(&ApiError::new(
            StatusCode::CONFLICT,
            "invalid_transition",
            "the order cannot be cancelled now",
        ));
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let internal = error_page(&ApiError::internal(&"database exploded at line 3"));
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
