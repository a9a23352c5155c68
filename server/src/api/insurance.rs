//! Insurance: products, policies, premiums, certificates and insurer settlement.

use crate::api::paging::{self, PagedJson};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::idempotency::{IdempotencyKey, Idempotent, Outcome};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use holdfast_core::ids::PartyId;
use holdfast_core::order_number::OrderNumber;
use holdfast_core::paging::ListKind;
use holdfast_core::parties::Role;
use holdfast_core::{BasisPoints, CoreError, Money};
use holdfast_insurance::cycle;
use holdfast_insurance::policies::{
    self, CancelOutcome, Cancellation, CertificateTask, PolicyEvent, PolicyRef, PolicyState,
    PolicyView, Recheck,
};
use holdfast_insurance::products::{
    self, NewProduct, PaymentPlan, Product, ProductId, ProductViewer,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_insurer))
        .routes(routes!(create_product, list_products))
        .routes(routes!(get_product, change_product))
        .routes(routes!(purchase, list_policies))
        .routes(routes!(get_policy))
        .routes(routes!(policy_history))
        .routes(routes!(recheck))
        .routes(routes!(request_settlement))
        .routes(routes!(cancel))
        .routes(routes!(pay_overdue))
        .routes(routes!(list_certificates))
        .routes(routes!(receive_certificate))
        .routes(routes!(record_delivery))
}

fn policy_ref(raw: &str) -> ApiResult<PolicyRef> {
    raw.parse::<PolicyRef>().map_err(ApiError::from)
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct CreateInsurer {
    pub display_name: holdfast_core::text::Name,
    pub username: holdfast_core::text::Username,
    /// 10 to 256 characters.
    pub password: holdfast_core::text::NewPassword,
    /// The platform's share of each premium settled, a decimal fraction up to 0.5 (default
    /// `"0.05"`).
    pub commission_rate: Option<holdfast_core::text::Token>,
}

#[derive(Serialize, ToSchema)]
pub struct InsurerCreated {
    pub party_id: PartyId,
    pub role: Role,
    pub display_name: String,
    pub username: String,
}

/// Onboard an insurer whose staff log in with a username and password (operators).
#[utoipa::path(post, path = "/v1/insurance/insurers", tag = "insurance", security(("bearer" = [])),
    request_body = CreateInsurer,
    responses((status = 201, body = InsurerCreated), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn create_insurer(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateInsurer>,
) -> ApiResult<(StatusCode, axum::Json<InsurerCreated>)> {
    principal.require(&[Role::Operator])?;
    let commission = body
        .commission_rate
        .as_deref()
        .map(|rate| -> ApiResult<BasisPoints> {
            let rate = holdfast_retail::catalogue::CommissionRate::parse(rate)?;
            Ok(BasisPoints::new(rate.basis_points()).map_err(CoreError::Money)?)
        })
        .transpose()?;
    let credentials = holdfast_core::onboarding::StaffCredentials::hash(
        &state.core.passwords,
        &body.username,
        &body.password,
        None,
    )
    .await?;
    let (party, username) = state
        .in_write_txn(async move |txn, core| {
            products::onboard_insurer_in_txn(txn, core, &body.display_name, credentials, commission)
                .await
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(InsurerCreated {
            party_id: party.id,
            role: party.role,
            display_name: party.display_name,
            username,
        }),
    ))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    pub name: holdfast_insurance::products::ProductName,
    /// What is covered, in the insurer's words.
    pub coverage: holdfast_insurance::products::Coverage,
    /// The sum insured.
    pub coverage_amount: Money,
    /// Per month (`monthly`) or for the whole term (`lump_sum`).
    pub premium: Money,
    /// 1 to 600.
    #[schema(minimum = 1, maximum = 600)]
    pub term_months: i32,
    pub payment_plan: PaymentPlan,
    /// The distributor that delivers the certificates.
    pub service_company_id: PartyId,
    /// Days of notice after a missed premium before the policy lapses (default 14; at least
    /// 14, or 7 for terms under a year; at most 90).
    #[schema(minimum = 7, maximum = 90)]
    pub grace_days: Option<i32>,
    /// Days after the certificate's delivery during which the holder may cancel with every
    /// premium returned (default 15, 10 to 30).
    #[schema(minimum = 10, maximum = 30)]
    pub free_look_days: Option<i32>,
}

/// List a product (insurers).
#[utoipa::path(post, path = "/v1/insurance/products", tag = "insurance", security(("bearer" = [])),
    request_body = CreateProduct,
    responses((status = 201, body = Product), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn create_product(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateProduct>,
) -> ApiResult<(StatusCode, axum::Json<Product>)> {
    principal.require(&[Role::Insurer])?;
    let product = state
        .in_write_txn(async move |txn, core| {
            products::create_product_in_txn(
                txn,
                core,
                principal.party,
                NewProduct {
                    name: body.name.into(),
                    coverage: body.coverage.into(),
                    coverage_amount: body.coverage_amount,
                    premium: body.premium,
                    term_months: body.term_months,
                    payment_plan: body.payment_plan,
                    service_company: body.service_company_id,
                    grace_days: body.grace_days,
                    free_look_days: body.free_look_days,
                },
            )
            .await
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(product)))
}

#[derive(Deserialize, IntoParams)]
pub struct ProductPage {
    /// The last id of the previous page.
    pub after: Option<ProductId>,
    /// 1–100, default 20.
    pub limit: Option<u64>,
}

/// Products: an insurer sees its own, on sale or not; everyone else what is on sale.
#[utoipa::path(get, path = "/v1/insurance/products", tag = "insurance", security(("bearer" = [])),
    params(ProductPage), responses((status = 200, body = [Product])))]
pub async fn list_products(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<ProductPage>,
) -> ApiResult<axum::Json<Vec<Product>>> {
    let viewer = match principal.role {
        Role::Insurer => ProductViewer::Insurer(principal.party),
        _ => ProductViewer::Buyer,
    };
    let list =
        products::list_products(&state.db, viewer, page.after, page.limit.unwrap_or(20)).await?;
    Ok(axum::Json(list))
}

/// One product.
#[utoipa::path(get, path = "/v1/insurance/products/{product_id}", tag = "insurance",
    security(("bearer" = [])), params(("product_id" = ProductId, Path)),
    responses((status = 200, body = Product), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_product(
    State(state): State<AppState>,
    _principal: Principal,
    Path(id): Path<ProductId>,
) -> ApiResult<axum::Json<Product>> {
    Ok(axum::Json(products::get_product(&state.db, id).await?))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeProduct {
    /// `false` takes it off sale; policies sold keep their terms.
    pub active: bool,
}

/// Take a product off sale or put it back (its insurer).
#[utoipa::path(patch, path = "/v1/insurance/products/{product_id}", tag = "insurance",
    security(("bearer" = [])), params(("product_id" = ProductId, Path)), request_body = ChangeProduct,
    responses((status = 200, body = Product), (status = 404, body = crate::error::ErrorBody)))]
pub async fn change_product(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<ProductId>,
    Json(body): Json<ChangeProduct>,
) -> ApiResult<axum::Json<Product>> {
    principal.require(&[Role::Insurer])?;
    let product = state
        .in_write_txn(async move |txn, core| {
            products::set_active_in_txn(txn, core, principal.party, id, body.active).await
        })
        .await?;
    Ok(axum::Json(product))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Purchase {
    pub product_id: ProductId,
}

/// Buy a policy (shoppers) with the card of the session: the first premium (a month's, or the
/// lump sum) is held at once and the card's phone is asked to approve product, insurer and
/// premium; answer with `POST /v1/challenges/{id}/answer`. The insurer then rechecks and issues
/// the policy number, which is texted to the phone.
#[utoipa::path(post, path = "/v1/insurance/policies", tag = "insurance", security(("bearer" = [])),
    params(crate::openapi::RequiredIdempotencyKey),
    request_body = Purchase,
    responses((status = 201, body = PolicyView), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 422, description = "not enough funds, product off sale…", body = crate::error::ErrorBody)))]
pub async fn purchase(
    State(state): State<AppState>,
    principal: Principal,
    key: IdempotencyKey,
    Json(body): Json<Purchase>,
) -> ApiResult<Response> {
    let key = key.required()?;
    let card = principal.shopper_card()?;
    state
        .write(
            Idempotent::new(principal.scope(), key, "buy_policy", &(card, &body)),
            StatusCode::CREATED,
            async move |txn, core| {
                Ok(
                    policies::purchase_in_txn(txn, core, principal.party, card, body.product_id)
                        .await?,
                )
            },
        )
        .await
}

#[derive(Deserialize, IntoParams)]
pub struct PolicyQuery {
    /// Only policies in this state (an insurer's applications to recheck: `awaiting_recheck`).
    pub state: Option<PolicyState>,
    /// Created on or after this day (UTC).
    pub from: Option<chrono::NaiveDate>,
    /// Created on or before this day (UTC).
    pub to: Option<chrono::NaiveDate>,
    /// 1–100, default 20.
    pub limit: Option<u64>,
    /// The `Next-Cursor` of the previous page; empty or absent for the first page.
    #[param(pattern = "^([A-Za-z0-9_-]{40})?$")]
    pub cursor: Option<String>,
}

/// The caller's policies, newest first: held (shoppers), sold (insurers), or all (operators).
/// Paged: the next page's cursor is in the `Next-Cursor` header.
#[utoipa::path(get, path = "/v1/insurance/policies", tag = "insurance", security(("bearer" = [])),
    params(PolicyQuery), responses((status = 200, description = "a page of policies", body = [PolicyView], headers(("Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "a cursor this list did not give out (`invalid_cursor`)", body = crate::error::ErrorBody)))]
pub async fn list_policies(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<PolicyQuery>,
) -> ApiResult<PagedJson<PolicyView>> {
    principal.require(&[Role::Shopper, Role::Insurer, Role::Operator])?;
    let page = paging::page(ListKind::Policies, query.limit, query.cursor.as_deref())?;
    let filter = paging::filter(query.state, query.from, query.to);
    let list = policies::list_policies(
        &state.db,
        &state.core,
        principal.party,
        principal.role,
        &filter,
        &page,
    )
    .await?;
    Ok(list.into())
}

/// One policy, by its id or its number, for its holder, its insurer or an operator. Only the
/// holder sees its pending phone confirmations.
#[utoipa::path(get, path = "/v1/insurance/policies/{policy}", tag = "insurance",
    security(("bearer" = [])), params(("policy" = String, Path, description = "the policy id or number")),
    responses((status = 200, body = PolicyView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_policy(
    State(state): State<AppState>,
    principal: Principal,
    Path(policy): Path<String>,
) -> ApiResult<axum::Json<PolicyView>> {
    let policy = policy_ref(&policy)?;
    let view = policies::get_policy(
        &state.db,
        &state.core,
        principal.party,
        principal.role,
        &policy,
    )
    .await?;
    Ok(axum::Json(view))
}

/// The policy's timeline, oldest first: its own steps and every state change, text and
/// confirmation of its premiums (never a code).
#[utoipa::path(get, path = "/v1/insurance/policies/{policy}/history", tag = "insurance",
    security(("bearer" = [])), params(("policy" = String, Path, description = "the policy id or number")),
    responses((status = 200, body = [PolicyEvent]), (status = 404, body = crate::error::ErrorBody)))]
pub async fn policy_history(
    State(state): State<AppState>,
    principal: Principal,
    Path(policy): Path<String>,
) -> ApiResult<axum::Json<Vec<PolicyEvent>>> {
    let policy = policy_ref(&policy)?;
    let lines = policies::history(&state.db, principal.party, principal.role, &policy).await?;
    Ok(axum::Json(lines))
}

#[derive(Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecheckDecision {
    Issue,
    Decline,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecheckRequest {
    pub decision: RecheckDecision,
    /// Why it is declined (required to decline).
    pub reason: Option<holdfast_insurance::policies::RecheckReason>,
}

/// Recheck an application the holder approved on the phone (its insurer): `issue` gives it a
/// policy number, texted to the holder, asks the service company to deliver the certificate
/// and starts the monthly cycle; `decline` returns the first premium.
#[utoipa::path(post, path = "/v1/insurance/policies/{policy}/recheck", tag = "insurance",
    security(("bearer" = [])),
    params(("policy" = String, Path, description = "the policy id"), crate::openapi::OptionalIdempotencyKey),
    request_body = RecheckRequest,
    responses((status = 200, body = PolicyView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn recheck(
    State(state): State<AppState>,
    principal: Principal,
    Path(policy): Path<String>,
    key: IdempotencyKey,
    Json(body): Json<RecheckRequest>,
) -> ApiResult<Response> {
    principal.require(&[Role::Insurer])?;
    let policy = policy_ref(&policy)?;
    let decision = match body.decision {
        RecheckDecision::Issue => Recheck::Issue,
        RecheckDecision::Decline => Recheck::Decline {
            reason: body
                .reason
                .clone()
                .map(String::from)
                .ok_or_else(|| ApiError::invalid("a decline needs a reason"))?,
        },
    };
    state
        .write(
            Idempotent::new(
                principal.scope(),
                key,
                "recheck_policy",
                &(format!("{policy:?}"), &body),
            ),
            StatusCode::OK,
            async move |txn, core| {
                Ok(policies::recheck_in_txn(txn, core, principal.party, &policy, decision).await?)
            },
        )
        .await
}

#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PremiumSettlementRequest {
    /// The premium to be paid; the oldest one held when absent.
    pub installment: Option<i32>,
}

/// Ask to be paid a premium, quoting the policy number (its insurer): the holder's phone is
/// asked to release it, and without an answer it is released when the settlement period ends.
/// Only after the certificate and the signed application are recorded. After the policy lapses
/// or matures the insurer has 90 days to ask; premiums still held then return to the holder.
#[utoipa::path(post, path = "/v1/insurance/policies/{policy}/settlement-request", tag = "insurance", operation_id = "request_premium_settlement",
    security(("bearer" = [])),
    params(("policy" = String, Path, description = "the policy number"), crate::openapi::OptionalIdempotencyKey),
    request_body(content = PremiumSettlementRequest, description = "optional"),
    responses((status = 200, body = PolicyView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "documents missing, nothing to settle", body = crate::error::ErrorBody)))]
pub async fn request_settlement(
    State(state): State<AppState>,
    principal: Principal,
    Path(policy): Path<OrderNumber>,
    key: IdempotencyKey,
    raw: axum::body::Bytes,
) -> ApiResult<Response> {
    principal.require(&[Role::Insurer])?;
    // The body is optional: none asks for the oldest premium held.
    let body: PremiumSettlementRequest = crate::extract::optional_json(&raw)?;
    state
        .write(
            Idempotent::new(
                principal.scope(),
                key,
                "request_premium_settlement",
                &(&policy, &body),
            ),
            StatusCode::OK,
            async move |txn, core| {
                Ok(policies::request_settlement_in_txn(
                    txn,
                    core,
                    principal.party,
                    &policy,
                    body.installment,
                )
                .await?)
            },
        )
        .await
}

/// Cancel a policy within its free-look period (its holder, from the phone's app): every
/// premium paid or held returns to the card's funding source. The period runs `free_look_days`
/// from the certificate's delivery, or from 30 days after issue if the certificate was not
/// delivered by then (`free_look_ends_at` in the policy). An application still awaiting the
/// insurer's recheck may be cancelled too. If a premium paid to the insurer has since left its
/// account, nothing moves and the answer is `premium_paid_out`: the insurer is told what to
/// return, and the holder may ask again once it has — even after the period, since it asked in
/// time.
#[utoipa::path(post, path = "/v1/insurance/policies/{policy}/cancel", tag = "insurance", operation_id = "cancel_policy",
    security(("bearer" = [])),
    params(("policy" = String, Path, description = "the policy id or number"), crate::openapi::RequiredIdempotencyKey),
    responses((status = 200, body = Cancellation), (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "the free-look period ended, the policy has ended, or a premium paid out must be returned first (`premium_paid_out`)", body = crate::error::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(policy): Path<String>,
    key: IdempotencyKey,
) -> ApiResult<Response> {
    let key = key.required()?;
    principal.require(&[Role::Shopper])?;
    let policy = policy_ref(&policy)?;
    state
        .write_outcome(
            Idempotent::new(
                principal.scope(),
                key,
                "cancel_policy",
                &format!("{policy:?}"),
            ),
            StatusCode::OK,
            async move |txn, core| {
                Ok(
                    match policies::cancel_in_txn(txn, core, principal.party, &policy).await? {
                        CancelOutcome::Cancelled(cancelled) => Outcome::Done(*cancelled),
                        // The attempt and the insurer's notice are kept: committed, then refused.
                        CancelOutcome::Blocked(error) => Outcome::Refused(error.into()),
                    },
                )
            },
        )
        .await
}

/// Pay the overdue premium during the grace period (its holder, after topping up the card's
/// funding source): it is collected at once and the policy is in force again.
#[utoipa::path(post, path = "/v1/insurance/policies/{policy}/overdue-premium", tag = "insurance",
    security(("bearer" = [])),
    params(("policy" = String, Path, description = "the policy id or number"), crate::openapi::RequiredIdempotencyKey),
    responses((status = 200, body = PolicyView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "not in grace", body = crate::error::ErrorBody),
        (status = 422, description = "still not enough funds", body = crate::error::ErrorBody)))]
pub async fn pay_overdue(
    State(state): State<AppState>,
    principal: Principal,
    Path(policy): Path<String>,
    key: IdempotencyKey,
) -> ApiResult<Response> {
    let key = key.required()?;
    principal.require(&[Role::Shopper])?;
    let policy = policy_ref(&policy)?;
    state
        .write(
            Idempotent::new(
                principal.scope(),
                key,
                "pay_overdue_premium",
                &format!("{policy:?}"),
            ),
            StatusCode::OK,
            async move |txn, core| {
                Ok(cycle::pay_overdue_in_txn(txn, core, principal.party, &policy).await?)
            },
        )
        .await
}

#[derive(Deserialize, IntoParams)]
pub struct CertificateQuery {
    /// Only certificates in this status; with none, those still to fetch or deliver
    /// (`awaiting_pickup` and `with_service_company`).
    pub state: Option<holdfast_insurance::policies::CertificateStatus>,
    /// Created on or after this day (UTC).
    pub from: Option<chrono::NaiveDate>,
    /// Created on or before this day (UTC).
    pub to: Option<chrono::NaiveDate>,
    /// 1–100, default 20.
    pub limit: Option<u64>,
    /// The `Next-Cursor` of the previous page; empty or absent for the first page.
    #[param(pattern = "^([A-Za-z0-9_-]{40})?$")]
    pub cursor: Option<String>,
}

/// The certificates a service company has to fetch from the insurer or deliver (distributors),
/// newest first: policy number, product and destination, never payment data. Paged: the next
/// page's cursor is in the `Next-Cursor` header.
#[utoipa::path(get, path = "/v1/insurance/certificates", tag = "insurance", security(("bearer" = [])),
    params(CertificateQuery), responses((status = 200, description = "a page of certificates", body = [CertificateTask], headers(("Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "a cursor this list did not give out (`invalid_cursor`)", body = crate::error::ErrorBody)))]
pub async fn list_certificates(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<CertificateQuery>,
) -> ApiResult<PagedJson<CertificateTask>> {
    principal.require(&[Role::Distributor])?;
    let page = paging::page(ListKind::Certificates, query.limit, query.cursor.as_deref())?;
    let filter = paging::filter(query.state, query.from, query.to);
    let list = policies::certificates_of(&state.db, principal.party, &filter, &page).await?;
    Ok(list.into())
}

/// The service company fetched the certificate from the insurer.
#[utoipa::path(post, path = "/v1/insurance/certificates/{policy_number}/received", tag = "insurance",
    security(("bearer" = [])), params(("policy_number" = OrderNumber, Path), crate::openapi::OptionalIdempotencyKey),
    responses((status = 200, body = CertificateTask), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn receive_certificate(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<OrderNumber>,
    key: IdempotencyKey,
) -> ApiResult<Response> {
    principal.require(&[Role::Distributor])?;
    state
        .write(
            Idempotent::new(principal.scope(), key, "receive_certificate", &number),
            StatusCode::OK,
            async move |txn, core| {
                Ok(
                    policies::receive_certificate_in_txn(txn, core, principal.party, &number)
                        .await?,
                )
            },
        )
        .await
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateDelivery {
    /// The policy number the holder handed over on delivery.
    #[schema(value_type = String, example = "1234-5678-9015")]
    pub order_number: OrderNumber,
    /// The signed application collected (the reference of its scan or form).
    pub application_reference: holdfast_insurance::policies::ApplicationReference,
}

/// The service company delivered the certificate and collected the signed application and the
/// policy number from the holder: it records both. The free-look period starts, and the
/// insurer may now ask to be paid.
#[utoipa::path(post, path = "/v1/insurance/certificates/{policy_number}/delivery", tag = "insurance",
    security(("bearer" = [])), params(("policy_number" = OrderNumber, Path), crate::openapi::OptionalIdempotencyKey),
    request_body = CertificateDelivery,
    responses((status = 200, body = CertificateTask), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
        (status = 422, description = "the number handed over is not this policy's", body = crate::error::ErrorBody)))]
pub async fn record_delivery(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<OrderNumber>,
    key: IdempotencyKey,
    Json(body): Json<CertificateDelivery>,
) -> ApiResult<Response> {
    principal.require(&[Role::Distributor])?;
    state
        .write(
            Idempotent::new(
                principal.scope(),
                key,
                "record_certificate_delivery",
                &(&number, &body),
            ),
            StatusCode::OK,
            async move |txn, core| {
                Ok(policies::record_documents_in_txn(
                    txn,
                    core,
                    principal.party,
                    &number,
                    &body.order_number,
                    &body.application_reference,
                )
                .await?)
            },
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_path_takes_an_id_or_a_number() {
        assert!(policy_ref(&uuid::Uuid::now_v7().to_string()).is_ok());
        assert!(policy_ref(&OrderNumber::generate().to_string()).is_ok());
        assert!(policy_ref("nope").is_err());
    }
}
