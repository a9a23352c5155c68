//! The OpenAPI document, generated from the handlers' annotations and served at
//! `/openapi.json`.

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
    paths(
        api::health,
        api::auth::login_with_password,
        api::auth::start_card_login,
        api::challenges::answer,
        api::challenges::resend,
        api::phone::inbound,
        api::simulator::messages,
        api::accounts::my_accounts,
        api::accounts::deposit,
        api::cards::my_cards,
        api::cards::report_lost,
        api::institution::issue_card,
        api::institution::list_cards,
        api::institution::block_card,
        api::institution::unblock_card,
        api::institution::replace_card,
        api::institution::list_holds,
        api::institution::list_accounts,
        api::supplier::change_profile,
        api::operator::create_supplier,
        api::operator::create_shopper,
        api::operator::create_institution,
        api::operator::accounts,
        api::operator::create_distributor,
        api::operator::set_seller_terms,
        api::operator::set_commodity_commission,
        api::operator::list_disputes,
        api::operator::mediate,
        api::distributor::list_parcels,
        api::distributor::record_tracking,
        api::webhooks::register,
        api::webhooks::list,
        api::webhooks::deactivate,
        api::webhooks::deliveries,
        api::webhooks::feed,
        api::operator::audit,
        api::retail::create_commodity,
        api::retail::change_commodity,
        api::retail::refuse_order,
        api::retail::assign_carrier,
        api::retail::dispute_order,
        api::retail::open_auction,
        api::retail::list_auctions,
        api::retail::get_auction,
        api::retail::place_bid,
        api::retail::list_commodities,
        api::retail::place_order,
        api::retail::list_orders,
        api::retail::get_order,
        api::retail::order_history,
        api::retail::cancel_order,
        api::retail::request_settlement,
        api::retail::renew_settlement_confirmation,
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "system"), (name = "auth"), (name = "phone", description = "Phone challenges and the phone simulator"),
        (name = "accounts"), (name = "cards"), (name = "institution"), (name = "operator"), (name = "retail"), (name = "distributor"), (name = "webhooks"),
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
    // Each vertical's module documents its own routes.
    document.merge(api::pharmacy::Doc::openapi());
    document.merge(api::insurance::Doc::openapi());
    document.merge(api::card_present::Doc::openapi());
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
