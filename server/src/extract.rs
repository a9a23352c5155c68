//! Extractors whose rejections use the API's error envelope instead of axum's plain text.
//!
//! A JSON body that parses but holds a refused value gets that value's stable code and the
//! path of the field: `text_empty`, `text_too_long`, `text_control_character` (see
//! [`holdfast_core::text`]), `amount_invalid`, `amount_scale`, `amount_too_large`,
//! `amount_negative`; anything else malformed is `invalid_json`. All are 400.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, StatusCode, header};
use holdfast_core::text::{FIELD_ERROR_CODES, field_error_code};
use serde::de::DeserializeOwned;

/// A JSON request body, or the error envelope.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a request with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "the request body is too large",
                    )
                } else {
                    ApiError::invalid("the request body could not be read")
                }
            })?;
        parse_json(&bytes).map(Json)
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON body, naming the field and its code when a value is refused.
pub fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let value = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => value,
        Err(error) if error.inner().to_string().contains(WHOLE_FLOAT_REFUSED) => {
            return parse_whole_floats_as_integers(raw).unwrap_or(Err(refused_field(error)));
        }
        Err(error) => return Err(refused_field(error)),
    };
    deserializer
        .end()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
    Ok(value)
}

/// serde_json's message when a number written with a point (`2.0`) meets an integer field.
const WHOLE_FLOAT_REFUSED: &str = "invalid type: floating point";

/// JSON (and the document's JSON Schema) has one number type: `2.0` is the integer 2, and some
/// serialisers write whole numbers that way. serde refuses it for an integer field, so a body
/// refused for that alone is read again with each whole number (exactly representable, below
/// 2^53) written as an integer; what is refused then is refused for its own reason.
fn parse_whole_floats_as_integers<T: DeserializeOwned>(raw: &[u8]) -> Option<Result<T, ApiError>> {
    fn integral(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Number(number) if number.is_f64() => {
                const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
                if let Some(float) = number.as_f64()
                    && float.fract() == 0.0
                    && float.abs() <= EXACT
                {
                    // Exact: a whole f64 within 2^53 converts without loss.
                    #[allow(clippy::cast_possible_truncation)]
                    let whole = float as i64;
                    *value = serde_json::Value::from(whole);
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(integral),
            serde_json::Value::Object(fields) => fields.values_mut().for_each(integral),
            _ => {}
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(raw).ok()?;
    integral(&mut value);
    Some(serde_path_to_error::deserialize(value).map_err(refused_field))
}

/// An optional JSON body: none (or only white space) is `T::default()`.
pub fn optional_json<T: DeserializeOwned + Default>(raw: &[u8]) -> Result<T, ApiError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(raw)
    }
}

fn refused_field(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    let message = inner.to_string();
    // serde_json appends the position; the field's path says more.
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(head, _)| head);
    match field_error_code(message) {
        Some(code) => {
            let detail = message
                .split_once(':')
                .map_or(message, |(_, rest)| rest.trim());
            ApiError::new(StatusCode::BAD_REQUEST, code, format!("{path}: {detail}"))
        }
        None if path == "." => ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message),
        None => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("{path}: {message}"),
        ),
    }
}

#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            rejection.body_text(),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        let message = rejection.body_text();
        // A refused text parameter keeps its code (the message reads `field: code: …`).
        let code = FIELD_ERROR_CODES
            .iter()
            .copied()
            .find(|code| message.contains(&format!("{code}:")))
            .unwrap_or("invalid_query");
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

/// The client's address for throttling: the TCP peer (`ConnectInfo`, which `main` serves
/// with), or one shared "unknown" bucket when there is none (a router called directly, as in
/// tests). Forwarded-for headers are not trusted: anyone can write them.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub holdfast_core::login_throttle::ClientKey);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        use holdfast_core::login_throttle::ClientKey;
        Ok(ClientAddress(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map_or_else(ClientKey::unknown, |info| ClientKey::of(info.0.ip())),
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Line {
        quantity: u32,
        name: holdfast_core::text::Name,
    }

    #[test]
    fn a_whole_number_written_with_a_point_is_read_as_the_integer() {
        let line: Line = parse_json(br#"{"quantity": 2.0, "name": "beans"}"#).unwrap();
        assert_eq!((line.quantity, line.name.as_str()), (2, "beans"));
        let fraction = parse_json::<Line>(br#"{"quantity": 2.5, "name": "beans"}"#).unwrap_err();
        assert_eq!(fraction.code, "invalid_json");
        // Refused for its own reason once the number is read.
        let empty = parse_json::<Line>(br#"{"quantity": 2.0, "name": ""}"#).unwrap_err();
        assert_eq!(empty.code, "text_empty");
    }
}
