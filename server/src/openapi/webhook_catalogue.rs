//! The webhook event catalogue: every event kind the server POSTs to webhook endpoints, as an
//! OpenAPI 3.1 `webhooks` entry whose request body is a schema of its own (`WebhookOrderConfirmed`
//! for `order.confirmed`: the envelope of [`holdfast_core::events::Event`] with that kind's
//! `data`), and the headers a receiver verifies.
//!
//! Event kinds are strings chosen where the change happens (core and each vertical publish
//! their own), so this table is kept beside them by a test that reads the sources for every
//! kind published and finds it here (`tests/tests/webhook_catalogue.rs`).

use holdfast_core::webhooks::SIGNATURE_HEADER;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{ContentBuilder, PathsBuilder, Ref, RefOr, Required, ResponseBuilder};

use crate::delivery::EVENT_ID_HEADER;

/// What a `data` field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    Text,
    Uuid,
    Time,
    /// `{"amount": "12.50", "currency": "USD"}`.
    Money,
    Integer,
    /// An order's lines, as the order views show them.
    Lines,
    /// A value whose shape this catalogue leaves open.
    Any,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub value: Value,
    /// May be `null`.
    pub nullable: bool,
    /// Always present (every field is, but for the few kinds published from two places).
    pub required: bool,
}

const fn f(name: &'static str, value: Value) -> Field {
    Field {
        name,
        value,
        nullable: false,
        required: true,
    }
}

/// A field that is present and may be `null`.
const fn null(name: &'static str, value: Value) -> Field {
    Field {
        name,
        value,
        nullable: true,
        required: true,
    }
}

/// A field that only some of the kind's publishers send.
const fn maybe(name: &'static str, value: Value) -> Field {
    Field {
        name,
        value,
        nullable: false,
        required: false,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct EventKind {
    pub kind: &'static str,
    /// Who receives it (the party whose endpoints it goes to), and when.
    pub summary: &'static str,
    pub data: &'static [Field],
}

use Value::{Any, Integer, Lines, Money, Text, Time, Uuid};

const PAYOUT: &[Field] = &[
    f("order_number", Text),
    f("state", Text),
    f("released", Money),
    f("payout", Money),
    f("commission", Money),
    f("institution_fee", Money),
    f("penalty", Money),
    f("returned_to_buyer", Money),
];

const HOLD: &[Field] = &[
    f("hold_id", Uuid),
    f("amount", Money),
    f("mode", Text),
    f("status", Text),
    null("posted_amount", Money),
    f("funding_account_id", Uuid),
    f("freezing_account_id", Uuid),
];

const CARD_PRESENT: &[Field] = &[
    f("authorisation_id", Text),
    f("terminal_id", Uuid),
    f("status", Text),
    null("decline_reason", Text),
    f("amount", Money),
    null("card", Text),
    null("approval_code", Text),
];

/// Prescription events come from two places: the prescription's own steps (its `state`) and
/// the payment case's outcomes (`amount` and `case_state`); `prescription.paid` from both.
const PRESCRIPTION: &[Field] = &[
    f("prescription_number", Text),
    maybe("state", Text),
    maybe("amount", Money),
    maybe("case_state", Text),
];

const fn kind(kind: &'static str, summary: &'static str, data: &'static [Field]) -> EventKind {
    EventKind {
        kind,
        summary,
        data,
    }
}

/// Every event kind the server sends, in the order of a purchase's life.
pub const EVENT_KINDS: &[EventKind] = &[
    kind(
        "hold.placed",
        "To the funding institution: money is held on its source.",
        HOLD,
    ),
    kind(
        "hold.posted",
        "To the funding institution: a hold was paid out.",
        HOLD,
    ),
    kind(
        "hold.voided",
        "To the funding institution: a hold was released unpaid.",
        HOLD,
    ),
    kind(
        "hold.expired",
        "To the funding institution: a hold ran out unpaid.",
        HOLD,
    ),
    kind(
        "order.confirmed",
        "To the seller: the buyer approved the order on the phone; ship it.",
        &[
            f("order_number", Text),
            f("card", Text),
            f("total", Money),
            f("lines", Lines),
        ],
    ),
    kind(
        "order.cancelled",
        "To the seller: the buyer cancelled before dispatch.",
        &[f("order_number", Text)],
    ),
    kind(
        "parcel.assigned",
        "To the carrier: a parcel to collect.",
        &[
            f("parcel_id", Uuid),
            f("order_number", Text),
            f("destination", Text),
            f("seller", Text),
        ],
    ),
    kind(
        "parcel.withdrawn",
        "To the carrier: the order was cancelled; do not deliver.",
        &[f("parcel_id", Uuid), f("order_number", Text)],
    ),
    kind(
        "parcel.tracked",
        "To the seller: the carrier recorded a tracking step.",
        &[
            f("order_number", Text),
            f("kind", Text),
            f("location", Text),
        ],
    ),
    kind(
        "settlement.requested",
        "To the seller: payment was asked for; it releases by itself at `auto_settles_at` \
         unless the buyer disputes.",
        &[
            f("order_number", Text),
            f("amount", Money),
            f("auto_settles_at", Time),
        ],
    ),
    kind(
        "order.settled",
        "To the seller: the money was released.",
        PAYOUT,
    ),
    kind(
        "order.disputed",
        "To the seller: the buyer disputed; an operator mediates.",
        &[f("order_number", Text), null("reason", Text)],
    ),
    kind(
        "dispute.mediated",
        "To the seller: the operator's decision, and the money it moved.",
        PAYOUT,
    ),
    kind(
        "card_present.approved",
        "To the merchant: an authorisation was approved.",
        CARD_PRESENT,
    ),
    kind(
        "card_present.declined",
        "To the merchant: an authorisation was declined.",
        CARD_PRESENT,
    ),
    kind(
        "card_present.captured",
        "To the merchant: an authorisation was captured.",
        CARD_PRESENT,
    ),
    kind(
        "card_present.voided",
        "To the merchant: an authorisation was voided.",
        CARD_PRESENT,
    ),
    kind(
        "card_present.expired",
        "To the merchant: an authorisation expired.",
        CARD_PRESENT,
    ),
    kind(
        "prescription.routed",
        "To the drugstore: a prescription was routed to it.",
        PRESCRIPTION,
    ),
    kind(
        "prescription.opened",
        "To the drugstore: the prescription was opened.",
        PRESCRIPTION,
    ),
    kind(
        "prescription.open_refused",
        "To the drugstore: opening the prescription was refused.",
        PRESCRIPTION,
    ),
    kind(
        "prescription.paid",
        "The prescription's payment was approved.",
        PRESCRIPTION,
    ),
    kind(
        "prescription.payment_denied",
        "To the drugstore: the patient denied the payment.",
        PRESCRIPTION,
    ),
    kind(
        "prescription.dispensed",
        "The prescription was dispensed.",
        PRESCRIPTION,
    ),
    kind(
        "prescription.payment_disputed",
        "To the drugstore: the payment is disputed.",
        PRESCRIPTION,
    ),
    kind(
        "prescription.settled",
        "To the drugstore: the payment was released.",
        PRESCRIPTION,
    ),
    kind(
        "prescription.cancelled",
        "To the drugstore: the prescription was cancelled.",
        PRESCRIPTION,
    ),
    kind(
        "prescription.expired",
        "To the drugstore: the prescription expired.",
        PRESCRIPTION,
    ),
    kind(
        "policy.applied",
        "To the insurer: an application to check by `recheck_by`.",
        &[
            f("policy_id", Uuid),
            f("product_id", Uuid),
            f("product_name", Text),
            f("premium", Money),
            f("card", Text),
            f("recheck_by", Time),
        ],
    ),
    kind(
        "policy.issued",
        "To the insurer: the policy was issued.",
        &[
            f("policy_id", Uuid),
            f("policy_number", Text),
            f("product_name", Text),
        ],
    ),
    kind(
        "certificate.requested",
        "To the service company: a certificate to deliver.",
        &[
            f("policy_number", Text),
            f("product_name", Text),
            f("insurer_name", Text),
            f("destination", Text),
        ],
    ),
    kind(
        "certificate.received",
        "To the insurer: the holder received the certificate.",
        &[f("policy_number", Text)],
    ),
    kind(
        "policy.documents_recorded",
        "To the insurer: the signed application was collected; the free-look period runs.",
        &[
            f("policy_number", Text),
            f("application_reference", Text),
            f("delivered_at", Time),
            f("free_look_ends_at", Time),
        ],
    ),
    kind(
        "premium.collected",
        "To the insurer: an installment is held in escrow.",
        &[
            null("policy_number", Text),
            f("installment", Integer),
            f("order_number", Text),
            f("amount", Money),
        ],
    ),
    kind(
        "premium.settled",
        "To the insurer: an installment was released to it.",
        &[
            null("policy_number", Text),
            f("installment", Integer),
            f("order_number", Text),
            f("amount", Money),
        ],
    ),
    kind(
        "premium.disputed",
        "To the insurer: the holder disputed an installment.",
        &[
            null("policy_number", Text),
            f("installment", Integer),
            f("order_number", Text),
        ],
    ),
    kind(
        "premium.failed",
        "To the insurer: an installment could not be collected; grace runs.",
        &[
            null("policy_number", Text),
            f("installment", Integer),
            f("grace_ends_at", Time),
        ],
    ),
    kind(
        "policy.lapsed",
        "To the insurer: the policy lapsed for an unpaid installment.",
        &[
            null("policy_number", Text),
            f("unpaid_installment", Integer),
            f("lapsed_at", Time),
            f("settle_held_premiums_by", Time),
        ],
    ),
    kind(
        "policy.matured",
        "To the insurer: the policy reached its end.",
        &[
            null("policy_number", Text),
            null("matured_at", Time),
            f("settle_held_premiums_by", Time),
        ],
    ),
    kind(
        "premiums.returned",
        "To the insurer: held premiums went back to the holder.",
        &[
            null("policy_number", Text),
            f("installments", Any),
            f("returned", Any),
            f("reason", Text),
        ],
    ),
    kind(
        "policy.cancelled",
        "To the insurer: the holder cancelled in the free-look period.",
        &[
            f("policy_id", Uuid),
            null("policy_number", Text),
            f("returned", Any),
            f("reason", Text),
        ],
    ),
    kind(
        "policy.cancellation_blocked",
        "To the insurer: a cancellation was refused, an installment being paid out already.",
        &[
            null("policy_number", Text),
            f("installment", Integer),
            f("amount", Money),
            f("requested_at", Time),
        ],
    ),
    kind(
        "reconciliation.discrepancy",
        "To the institution: a day's reconciliation of its own bank account is not clean.",
        &[
            f("currency", Text),
            f("day", Text),
            null("bank_closing", Text),
            f("ledger_balance", Text),
            f("open_items", Integer),
        ],
    ),
    kind(
        "timer.retried",
        "To the operator who did it: a failed timer was put back to fire again.",
        &[
            f("timer_id", Uuid),
            f("kind", Text),
            f("subject_id", Uuid),
            f("retried_by", Uuid),
            f("retried_at", Time),
        ],
    ),
];

/// The component name of `kind`'s body: `order.confirmed` → `WebhookOrderConfirmed`.
pub fn schema_name(kind: &str) -> String {
    let mut name = String::from("Webhook");
    for word in kind.split(['.', '_']) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name
}

fn typed(schema_type: Type, format: Option<KnownFormat>, nullable: bool) -> Schema {
    let schema_type = if nullable {
        SchemaType::from_iter([schema_type, Type::Null])
    } else {
        SchemaType::new(schema_type)
    };
    ObjectBuilder::new()
        .schema_type(schema_type)
        .format(format.map(SchemaFormat::KnownFormat))
        .into()
}

fn schema_of(field: &Field) -> RefOr<Schema> {
    let money = || RefOr::Ref(Ref::from_schema_name("Money"));
    match field.value {
        Value::Text => typed(Type::String, None, field.nullable).into(),
        Value::Uuid => typed(Type::String, Some(KnownFormat::Uuid), field.nullable).into(),
        Value::Time => typed(Type::String, Some(KnownFormat::DateTime), field.nullable).into(),
        Value::Integer => typed(Type::Integer, None, field.nullable).into(),
        Value::Money if field.nullable => OneOfBuilder::new()
            .item(money())
            .item(typed(Type::Null, None, false))
            .into(),
        Value::Money => money(),
        Value::Lines => ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::Object))
            .into(),
        Value::Any => Schema::default().into(),
    }
}

/// The body of `event`: the envelope, its `kind` fixed, and its `data`.
fn body_schema(event: &EventKind) -> Schema {
    let mut data = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
    for field in event.data {
        data = data.property(field.name, schema_of(field));
        if field.required {
            data = data.required(field.name);
        }
    }
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(event.summary))
        .property(
            "id",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                .description(Some(
                    "The event's id, also in the `Holdfast-Event-Id` header: a receiver that \
                     sees an id twice has seen the same event twice (deliveries are retried).",
                )),
        )
        .required("id")
        .property(
            "kind",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([event.kind])),
        )
        .required("kind")
        .property(
            "created_at",
            typed(Type::String, Some(KnownFormat::DateTime), false),
        )
        .required("created_at")
        .property("data", data)
        .required("data")
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
        .into()
}

fn header(name: &str, description: &str) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(typed(Type::String, None, false)))
        .build()
}

/// Adds the catalogue: each kind's body under `components.schemas`, and a `webhooks` entry
/// per kind.
pub fn add(document: &mut utoipa::openapi::OpenApi) {
    let components = document.components.get_or_insert_with(Default::default);
    let mut webhooks = PathsBuilder::new();
    for event in EVENT_KINDS {
        let name = schema_name(event.kind);
        components
            .schemas
            .insert(name.clone(), body_schema(event).into());
        let operation = OperationBuilder::new()
            .operation_id(Some(format!("webhook_{}", event.kind.replace('.', "_"))))
            .tag("webhooks")
            .summary(Some(event.summary))
            .parameter(header(
                SIGNATURE_HEADER,
                "`t=<unix seconds>,v1=<hex HMAC-SHA256>` of `<t>.<raw body>`, keyed with the \
                 endpoint's secret (shown once, at registration). Verify it over the raw bytes \
                 before parsing, compare in constant time, and refuse a `t` far from now.",
            ))
            .parameter(header(
                EVENT_ID_HEADER,
                "The event's id (the body's `id`): deduplicate on it.",
            ))
            .request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(name)))
                            .build(),
                    )
                    .build(),
            ))
            .response(
                "200",
                ResponseBuilder::new().description(
                    "Received. Any 2xx acknowledges the event; any other answer, or none \
                     within 10 seconds, is a failed delivery, retried with backoff (up to an \
                     hour apart, about a day in all).",
                ),
            );
        webhooks = webhooks.path(event.kind, PathItem::new(HttpMethod::Post, operation));
    }
    document.webhooks = Some(webhooks.build());
}
