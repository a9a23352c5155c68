//! The OpenAPI document, generated from the router (`api::routes`, where each route is
//! registered together with its handler's annotation) and served at `/openapi.json`.

use crate::api;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

pub mod webhook_catalogue;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Holdfast",
        description = "Escrow and phone-confirmation settlement. No money reaches a seller \
until the buyer has said yes twice on the phone: to the order, and to the payment after \
delivery. Errors are `{\"error\":{\"code\",\"message\",\"request_id\"}}` with stable codes.",
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "system"), (name = "auth"), (name = "phone", description = "Phone challenges and the phone simulator"),
        (name = "accounts"), (name = "bank", description = "Bank accounts, statements (camt.053/054), daily reconciliation, bank runs and the bank simulator"), (name = "cards"), (name = "institution"), (name = "operator"), (name = "retail"), (name = "distributor"),
        (name = "payee", description = "Payout destinations, payouts and the daily sweep of suppliers, drugstores and insurers"), (name = "webhooks"),
        (name = "pharmacy", description = "Prescriptions between hospitals and drugstores, paid through escrow"),
        (name = "insurance", description = "Insurers, products, policies, premiums, certificates \
and the insurer's settlement: a purchase confirmed on the phone, premiums held in escrow until \
the insurer quotes the policy number and the holder confirms, a monthly cycle with grace and \
lapse, and free-look cancellation."),
        (name = "card-present", description = "A shop terminal asks to authorise a card; the \
holder's phone confirms. The first answer is `challenge_required` while the phone is asked; a \
retry with the same authorisation id is approved once the phone approved. A holder may arm an \
approval ahead (merchant, ceiling, time window) so that a matching payment is approved at once."),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        // A Prometheus scraper presents the token of `--metrics-token` (an operator's JWT
        // works as well).
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "the scrape token set with --metrics-token (HOLDFAST_METRICS_TOKEN)",
                    ))
                    .build(),
            ),
        );
        // The phone simulator's inbox also opens with the key the server prints at start.
        components.add_security_scheme(
            "simulator_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                api::simulator::SIMULATOR_KEY_HEADER,
                "the phone simulator's key, printed at start (development only)",
            ))),
        );
    }
}

/// The document as served and printed (`holdfast openapi`).
pub fn document() -> serde_json::Value {
    let mut json = serde_json::to_value(annotated()).unwrap_or_default();
    state_json_schema_rules(&mut json);
    json
}

/// The document as the annotations and the router describe it, before the rules that
/// utoipa's types cannot spell are added.
fn annotated() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    // The paths come from the router itself: what is served is what is described.
    document.merge(api::routes().into_openapi());
    webhook_catalogue::add(&mut document);
    document_common_errors(&mut document);
    describe_every_response(&mut document);
    document
}

/// What the server enforces that utoipa's schema types cannot say:
/// - an unsigned integer (`u32`, `u64`) is read up to its own maximum, not to the signed
///   maximum its `int32`/`int64` format implies;
/// - an amount has at most its currency's number of decimals and is within the largest
///   amount (`if`/`then` on `Money`, per currency scale).
fn state_json_schema_rules(json: &mut serde_json::Value) {
    unsigned_integers(json);
    body_errors(json);
    if let Some(money) = json.pointer_mut("/components/schemas/Money")
        && let Some(money) = money.as_object_mut()
    {
        money.insert("allOf".to_owned(), amount_rules().into());
    }
}

/// What a body can meet beyond its shape, on every operation whose body holds it: an amount
/// meets an account, a card or a price in some currency, and another currency is refused with
/// 422 `currency_mismatch`; an id (`…_id`) names a party, commodity or account that must exist,
/// or 404.
fn body_errors(json: &mut serde_json::Value) {
    let schemas = json
        .pointer("/components/schemas")
        .cloned()
        .unwrap_or_default();
    let Some(paths) = json
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    let holds_money = |key: &str, value: &serde_json::Value| {
        key == "$ref" && value.as_str() == Some("#/components/schemas/Money")
    };
    let names_an_id = |key: &str, value: &serde_json::Value| {
        key == "properties"
            && value
                .as_object()
                .is_some_and(|properties| properties.keys().any(|name| name.ends_with("_id")))
    };
    for operation in paths
        .values_mut()
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut())
    {
        let Some(body) = operation.get("requestBody").cloned() else {
            continue;
        };
        let mut statuses = Vec::new();
        if reaches(&body, &schemas, &mut Vec::new(), &holds_money) {
            statuses.push("422");
        }
        if reaches(&body, &schemas, &mut Vec::new(), &names_an_id) {
            statuses.push("404");
        }
        let Some(responses) = operation
            .get_mut("responses")
            .and_then(serde_json::Value::as_object_mut)
        else {
            continue;
        };
        for status in statuses {
            responses.entry(status).or_insert_with(|| {
                serde_json::json!({
                    "description": meaning_of(status),
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                })
            });
        }
    }
}

/// Whether `value`, or a schema it refers to (`$ref`, followed once each), has a member for
/// which `found(key, value)` holds.
fn reaches(
    value: &serde_json::Value,
    schemas: &serde_json::Value,
    seen: &mut Vec<String>,
    found: &dyn Fn(&str, &serde_json::Value) -> bool,
) -> bool {
    match value {
        serde_json::Value::Object(object) => object.iter().any(|(key, value)| {
            if found(key, value) {
                return true;
            }
            match (key.as_str(), value.as_str()) {
                ("$ref", Some(reference)) => {
                    let target = reference.rsplit('/').next().unwrap_or_default();
                    if seen.iter().any(|s| s == target) {
                        return false;
                    }
                    seen.push(target.to_owned());
                    schemas
                        .get(target)
                        .is_some_and(|schema| reaches(schema, schemas, seen, found))
                }
                _ => reaches(value, schemas, seen, found),
            }
        }),
        serde_json::Value::Array(items) => items.iter().any(|v| reaches(v, schemas, seen, found)),
        _ => false,
    }
}

/// One `if`/`then` per currency scale: the amount has at most that many decimals and is at most
/// [`MAX_MINOR_UNITS`](holdfast_core::money::MAX_MINOR_UNITS) minor units.
fn amount_rules() -> Vec<serde_json::Value> {
    use holdfast_core::money::{Currency, MAX_MINOR_UNITS};
    let mut scales: Vec<u32> = Currency::ALL.iter().map(|c| c.scale()).collect();
    scales.sort_unstable();
    scales.dedup();
    scales
        .into_iter()
        .map(|scale| {
            let currencies: Vec<_> = Currency::ALL
                .into_iter()
                .filter(|c| c.scale() == scale)
                .map(|c| c.code())
                .collect();
            serde_json::json!({
                "if": {"properties": {"currency": {"enum": currencies}}, "required": ["currency"]},
                "then": {"properties": {"amount": {"pattern": amount_pattern(MAX_MINOR_UNITS, scale)}}},
            })
        })
        .collect()
}

/// The amounts from 0 to `max_minor` minor units at `scale` decimals, in the amount grammar (no
/// leading zeros, at most `scale` decimals). `max_minor` is a power of ten.
fn amount_pattern(max_minor: i64, scale: u32) -> String {
    let top = max_minor.to_string();
    // 10^k minor units is 10^(k - scale) whole units: a 1 and k - scale zeros.
    let zeros = (top.len() - 1).saturating_sub(scale as usize);
    let fraction = if scale == 0 {
        String::new()
    } else {
        format!("(\\.[0-9]{{1,{scale}}})?")
    };
    let top_fraction = if scale == 0 {
        String::new()
    } else {
        format!("(\\.0{{1,{scale}}})?")
    };
    let below = if zeros == 0 {
        "0".to_owned()
    } else {
        format!("0|[1-9][0-9]{{0,{}}}", zeros - 1)
    };
    format!(
        "^(({below}){fraction}|1{}{top_fraction})$",
        "0".repeat(zeros)
    )
}

fn unsigned_integers(json: &mut serde_json::Value) {
    match json {
        serde_json::Value::Object(object) => {
            let unsigned = object.get("minimum").and_then(serde_json::Value::as_f64) == Some(0.0)
                && object.get("maximum").is_none();
            let maximum = match object.get("format").and_then(serde_json::Value::as_str) {
                Some("int32") if unsigned => Some(u64::from(u32::MAX)),
                Some("int64") if unsigned => Some(u64::MAX),
                _ => None,
            };
            if let Some(maximum) = maximum {
                object.remove("format");
                object.insert("maximum".to_owned(), maximum.into());
            }
            object.values_mut().for_each(unsigned_integers);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unsigned_integers),
        _ => {}
    }
}

fn operations_mut(
    document: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    document.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
    })
}

/// The errors any operation can meet by its shape, whatever its handler does, listed on every
/// operation they apply to (an annotation that lists one keeps its own description):
/// 400 for a malformed parameter or body, 401/403 behind a token, 404 for an id in the path,
/// 409 for an `Idempotency-Key` reused with another body, 413/415 for a body too large or not
/// JSON, and 503 when the database is busy.
fn document_common_errors(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    for operation in operations_mut(document) {
        let parameters: Vec<_> = operation
            .parameters
            .iter()
            .flatten()
            .filter_map(|p| match p {
                utoipa::openapi::RefOr::T(p) => Some(p),
                utoipa::openapi::RefOr::Ref(_) => None,
            })
            .collect();
        let in_path = parameters
            .iter()
            .any(|p| p.parameter_in == ParameterIn::Path);
        let takes_key = parameters.iter().any(|p| p.name == "Idempotency-Key");
        let has_body = operation.request_body.is_some();
        let behind_token = operation.security.as_ref().is_some_and(|requirements| {
            serde_json::to_value(requirements)
                .is_ok_and(|value| value.to_string().contains("\"bearer\""))
        });
        // Everything but this document itself reads the database, which may be busy.
        let mut statuses = if operation.operation_id.as_deref() == Some("openapi") {
            vec![]
        } else {
            vec!["503"]
        };
        if !parameters.is_empty() || has_body {
            statuses.push("400");
        }
        if behind_token {
            statuses.extend(["401", "403"]);
        }
        if in_path {
            statuses.push("404");
        }
        if takes_key {
            statuses.push("409");
        }
        if has_body {
            statuses.extend(["413", "415"]);
        }
        for status in statuses {
            operation
                .responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| {
                    ResponseBuilder::new()
                        .description(meaning_of(status))
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build()
                        .into()
                });
        }
    }
}

/// OpenAPI requires a description on every response; an annotation that gives none gets the
/// meaning of its status in this API (a client generator refuses the document otherwise).
fn describe_every_response(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    for operation in operations_mut(document) {
        for (status, response) in operation.responses.responses.iter_mut() {
            if let RefOr::T(response) = response
                && response.description.is_empty()
            {
                response.description = meaning_of(status).to_owned();
            }
        }
    }
}

fn meaning_of(status: &str) -> &'static str {
    match status {
        "200" => "Done",
        "201" => "Created",
        "202" => "Accepted: the phone has been asked",
        "204" => "Done, nothing to return",
        "400" => "The request is malformed or a field is out of range (`error.code` says which)",
        "401" => "No valid credential",
        "403" => "The caller's role or ownership does not allow this",
        "404" => "Not found, or not visible to the caller",
        "409" => {
            "The state does not allow this now, or the Idempotency-Key was used for another request"
        }
        "413" => "The body is too large",
        "415" => "The body is not `Content-Type: application/json`",
        "422" => "Understood but cannot be done (funds, code, limits: `error.code` says which)",
        "429" => "Too many requests: wait for `Retry-After` seconds",
        "503" => "Busy: retry after `Retry-After` seconds",
        _ => "See `error.code`",
    }
}

/// The `Idempotency-Key` header as the server reads it (`crate::idempotency`): 1 to 255
/// printable ASCII characters. `REQUIRED` for an operation whose handler refuses to run
/// without one (`IdempotencyKey::required`).
pub struct IdempotencyKeyHeader<const REQUIRED: bool>;

/// For operations that refuse to run without a key: they move money.
pub type RequiredIdempotencyKey = IdempotencyKeyHeader<true>;
/// For operations that are safe to retry with a key and run once without one.
pub type OptionalIdempotencyKey = IdempotencyKeyHeader<false>;

impl<const REQUIRED: bool> utoipa::IntoParams for IdempotencyKeyHeader<REQUIRED> {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{ObjectBuilder, Required, Type};
        let description = if REQUIRED {
            "Required: this request moves money. Any unique string; a retry with the same key \
             and body replays the first answer, another body with it is refused (409)."
        } else {
            "Optional: with it, a retry with the same key and body replays the first answer, \
             another body with it is refused (409)."
        };
        vec![
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(if REQUIRED {
                    Required::True
                } else {
                    Required::False
                })
                .description(Some(description))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(crate::idempotency::MAX_KEY_CHARS))
                        // Printable ASCII, no space at either end (the server trims them).
                        .pattern(Some("^[!-~]([ -~]*[!-~])?$")),
                ))
                .build(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::amount_pattern;

    #[test]
    fn the_amount_pattern_reaches_exactly_the_largest_amount() {
        assert_eq!(
            amount_pattern(1_000_000_000_000_000, 0),
            "^((0|[1-9][0-9]{0,14})|1000000000000000)$"
        );
        assert_eq!(
            amount_pattern(1_000_000_000_000_000, 2),
            "^((0|[1-9][0-9]{0,12})(\\.[0-9]{1,2})?|10000000000000(\\.0{1,2})?)$"
        );
    }
}
