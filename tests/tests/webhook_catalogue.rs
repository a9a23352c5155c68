//! The webhook event catalogue (the OpenAPI document's `webhooks`) matches what the server
//! sends: every event kind published anywhere in core or a vertical has an entry (and every
//! entry is published somewhere), and the bodies a receiver really gets validate against
//! their entry's schema.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::{HeaderMap, StatusCode};
use holdfast_tests::world::{Shop, random_phone};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

fn document() -> Value {
    holdfast_server::openapi::document()
}

fn catalogued(document: &Value) -> BTreeSet<String> {
    document["webhooks"]
        .as_object()
        .expect("the document has a webhooks map")
        .keys()
        .cloned()
        .collect()
}

fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// What the sources publish: every string literal shaped like an event kind
/// (`"word.word"`) outside comments and span names, and every kind built from a prefix
/// (`format!("card_present.{}", …)` in a publish call), as the prefix.
fn published_in_sources() -> (BTreeSet<String>, BTreeSet<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&root.join("core/src"), &mut files);
    for vertical in std::fs::read_dir(root.join("verticals")).unwrap() {
        rust_files(&vertical.unwrap().path().join("src"), &mut files);
    }
    let is_word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    let (mut kinds, mut prefixes) = (BTreeSet::new(), BTreeSet::new());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            // A kind built with `format!` is one only as an argument of a publish call (a
            // history entry's `payment.{}` is not an event).
            let publishing = lines[index.saturating_sub(6)..index]
                .iter()
                .any(|l| l.contains("publish_in_txn("));
            let parts: Vec<&str> = line.split('"').collect();
            for (position, literal) in parts.iter().enumerate().skip(1).step_by(2) {
                // A span's name (`#[tracing::instrument(name = "retail.place_order", …)]`) is
                // shaped like a kind but is none.
                if parts[position - 1].trim_end().ends_with("name =") {
                    continue;
                }
                match literal.split_once('.') {
                    Some((a, b)) if is_word(a) && is_word(b) => {
                        kinds.insert((*literal).to_owned());
                    }
                    Some((a, "{}")) if is_word(a) && publishing => {
                        prefixes.insert(format!("{a}."));
                    }
                    _ => {}
                }
            }
        }
    }
    (kinds, prefixes)
}

#[test]
fn every_event_kind_the_sources_publish_has_a_catalogue_entry_and_no_entry_is_stale() {
    let document = document();
    let entries = catalogued(&document);
    let (kinds, prefixes) = published_in_sources();
    assert!(kinds.len() > 30, "too few kinds read: {kinds:?}");
    let missing: Vec<_> = kinds.difference(&entries).collect();
    assert!(
        missing.is_empty(),
        "published but not catalogued: {missing:?}"
    );
    assert!(prefixes.contains("card_present."), "{prefixes:?}");
    for prefix in &prefixes {
        assert!(
            entries.iter().any(|e| e.starts_with(prefix.as_str())),
            "no catalogue entry for the kinds built from {prefix}"
        );
    }
    let stale: Vec<_> = entries
        .iter()
        .filter(|e| !kinds.contains(*e) && !prefixes.iter().any(|p| e.starts_with(p.as_str())))
        .collect();
    assert!(
        stale.is_empty(),
        "catalogued but never published: {stale:?}"
    );

    // Each entry is a POST with its own body schema and the headers to verify.
    for kind in &entries {
        let post = &document["webhooks"][kind]["post"];
        let reference = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{kind}: no body schema"));
        let schema = resolve(&document, reference);
        assert_eq!(
            schema["properties"]["kind"]["enum"],
            json!([kind]),
            "{kind}"
        );
        let headers: BTreeSet<&str> = post["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "header" && p["required"] == true)
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            headers,
            BTreeSet::from(["Holdfast-Signature", "Holdfast-Event-Id"]),
            "{kind}"
        );
    }
    // The card-present kinds are the statuses an authorisation can move to.
    for status in ["approved", "declined", "captured", "voided", "expired"] {
        assert!(
            entries.contains(&format!("card_present.{status}")),
            "{status}"
        );
    }
}

fn resolve<'a>(document: &'a Value, reference: &str) -> &'a Value {
    document
        .pointer(reference.trim_start_matches('#'))
        .unwrap_or_else(|| panic!("unresolved {reference}"))
}

/// Where `value` breaks `schema`, for the keywords the catalogue uses (`$ref`, `type`,
/// `format` uuid and date-time, `enum`, `properties`, `required`, `additionalProperties:
/// false`, `items`, `oneOf`); others (the amount rules on `Money`) are not checked here.
fn violations(document: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    if let Some(reference) = schema["$ref"].as_str() {
        return violations(document, resolve(document, reference), value, at);
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let matching = options
            .iter()
            .filter(|o| violations(document, o, value, at).is_empty())
            .count();
        return if matching == 1 {
            Vec::new()
        } else {
            vec![format!("{at}: matches {matching} of oneOf")]
        };
    }
    let mut found = Vec::new();
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let type_of = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let allowed = types.is_empty()
        || types.contains(&type_of)
        || (type_of == "integer" && types.contains(&"number"));
    if !allowed {
        return vec![format!("{at}: a {type_of}, not {types:?}")];
    }
    if let (Some(format), Some(text)) = (schema["format"].as_str(), value.as_str()) {
        let ok = match format {
            "uuid" => uuid::Uuid::parse_str(text).is_ok(),
            "date-time" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            _ => true,
        };
        if !ok {
            found.push(format!("{at}: {text:?} is not a {format}"));
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        found.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(object) = value.as_object() {
        let properties = schema["properties"].as_object();
        for name in schema["required"].as_array().into_iter().flatten() {
            if !object.contains_key(name.as_str().unwrap()) {
                found.push(format!("{at}: {name} is missing"));
            }
        }
        for (name, field) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(property) => found.extend(violations(
                    document,
                    property,
                    field,
                    &format!("{at}.{name}"),
                )),
                None if schema["additionalProperties"] == false => {
                    found.push(format!("{at}.{name} is not in the schema"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), value.as_array()) {
        for (index, item) in list.iter().enumerate() {
            found.extend(violations(document, items, item, &format!("{at}[{index}]")));
        }
    }
    found
}

/// The violations of a delivered body against its kind's catalogue entry.
fn check_body(document: &Value, body: &Value) -> Vec<String> {
    let kind = body["kind"].as_str().unwrap_or_default();
    let Some(reference) =
        document["webhooks"][kind]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["$ref"]
            .as_str()
    else {
        return vec![format!("{kind:?} has no catalogue entry")];
    };
    violations(document, resolve(document, reference), body, "body")
}

type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A receiver on 127.0.0.1 that records what it is sent.
async fn receiver() -> (String, Received) {
    let seen: Received = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push((headers, body));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/hook"), seen)
}

#[tokio::test]
async fn the_bodies_a_seller_receives_over_a_purchase_validate_against_their_entries() {
    let shop = Shop::spawn(&random_phone(), "500.00", "50.00", "0.10").await;
    let (url, seen) = receiver().await;
    let registered = shop
        .app
        .post("/v1/webhooks", Some(&shop.supplier), json!({"url": url}))
        .await;
    assert_eq!(registered.status, StatusCode::CREATED, "{registered:?}");

    // Settled: confirmed, settlement requested, settled.
    let (number, challenge) = shop.order(1).await;
    assert_eq!(
        shop.answer(&challenge, "approve").await.status,
        StatusCode::OK
    );
    let ask = |number: String| {
        let shop = &shop;
        async move {
            let asked = shop
                .app
                .post(
                    &format!("/v1/retail/orders/{number}/settlement-request"),
                    Some(&shop.supplier),
                    json!({}),
                )
                .await;
            assert_eq!(asked.status, StatusCode::OK, "{asked:?}");
            shop.app.pending_confirmation(&shop.shopper, &number).await
        }
    };
    let settlement = ask(number.clone()).await;
    assert_eq!(
        shop.answer(&settlement, "approve").await.status,
        StatusCode::OK
    );
    // Disputed: the shopper refuses to pay and says why.
    let (disputed, challenge) = shop.order(1).await;
    assert_eq!(
        shop.answer(&challenge, "approve").await.status,
        StatusCode::OK
    );
    ask(disputed.clone()).await;
    let refused = shop
        .app
        .post(
            &format!("/v1/retail/orders/{disputed}/dispute"),
            Some(&shop.shopper),
            json!({"reason": "never arrived"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::OK, "{refused:?}");
    // Cancelled before dispatch.
    let (cancelled, challenge) = shop.order(1).await;
    assert_eq!(
        shop.answer(&challenge, "approve").await.status,
        StatusCode::OK
    );
    let cancel = shop
        .app
        .post(
            &format!("/v1/retail/orders/{cancelled}/cancel"),
            Some(&shop.shopper),
            json!({}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::OK, "{cancel:?}");
    shop.app.deliver().await;

    let document = document();
    let received = seen.lock().unwrap().clone();
    let mut kinds = BTreeSet::new();
    for (headers, raw) in &received {
        let body: Value = serde_json::from_str(raw).unwrap();
        let problems = check_body(&document, &body);
        assert!(problems.is_empty(), "{raw}: {problems:?}");
        assert!(headers.contains_key("holdfast-signature"), "{headers:?}");
        assert_eq!(headers["holdfast-event-id"].to_str().unwrap(), body["id"]);
        kinds.insert(body["kind"].as_str().unwrap().to_owned());
    }
    for kind in [
        "order.confirmed",
        "settlement.requested",
        "order.settled",
        "order.disputed",
        "order.cancelled",
    ] {
        assert!(kinds.contains(kind), "no {kind} among {kinds:?}");
    }

    // The check can fail: a field too many, a field missing, a wrong type, another kind.
    let (_, raw) = &received[0];
    let body: Value = serde_json::from_str(raw).unwrap();
    let mut extra = body.clone();
    extra["data"]["phone"] = json!("+821012345678");
    assert!(!check_body(&document, &extra).is_empty());
    let mut missing = body.clone();
    missing["data"]
        .as_object_mut()
        .unwrap()
        .remove("order_number");
    assert!(!check_body(&document, &missing).is_empty());
    let mut wrong = body.clone();
    wrong["id"] = json!(7);
    assert!(!check_body(&document, &wrong).is_empty());
    let mut unknown = body;
    unknown["kind"] = json!("order.teleported");
    assert!(!check_body(&document, &unknown).is_empty());
}
