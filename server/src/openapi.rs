//! The OpenAPI document, generated from the router (`api::routes`, where each route is
//! registered together with its handler's annotation) and served at `/openapi.json`.

use crate::api;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

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
        (name = "accounts"), (name = "cards"), (name = "institution"), (name = "operator"), (name = "retail"), (name = "distributor"), (name = "webhooks"),
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

pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    // The paths come from the router itself: what is served is what is described.
    document.merge(api::routes().into_openapi());
    describe_every_response(&mut document);
    document
}

/// OpenAPI requires a description on every response; an annotation that gives none gets the
/// meaning of its status in this API (a client generator refuses the document otherwise).
fn describe_every_response(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            for (status, response) in operation.responses.responses.iter_mut() {
                if let RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    response.description = meaning_of(status).to_owned();
                }
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
