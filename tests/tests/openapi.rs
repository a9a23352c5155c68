//! The OpenAPI document matches the server: every route the application router serves is in
//! it with each of its methods (and nothing else is), and an operation that refuses to run
//! without an `Idempotency-Key` documents the header as required.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use holdfast_tests::TestApp;
use serde_json::Value;
use std::collections::BTreeSet;

/// `(METHOD, path template)` for every route of `router`, read from axum's own `Debug` view of
/// it (the route table and each route's `Allow` list): what the server really serves, whatever
/// way a route was registered.
fn served_routes(router: &axum::Router) -> BTreeSet<(String, String)> {
    let debug = format!("{router:?}");
    // The fallback router (unmatched paths) comes after the path router; only the latter serves
    // routes.
    let table = debug
        .split_once("fallback_router:")
        .expect("axum's Router Debug names its fallback router")
        .0;
    let mut paths = std::collections::BTreeMap::new();
    let mut allowed = std::collections::BTreeMap::new();
    for entry in table.split("RouteId(").skip(1) {
        let (id, rest) = entry.split_once("): ").expect("RouteId(n): …");
        if let Some(path) = rest.strip_prefix('"') {
            paths.insert(id.to_owned(), path.split('"').next().unwrap().to_owned());
        } else if rest.starts_with("MethodRouter(") {
            let methods = rest
                .split_once("allow_header: Bytes(b\"")
                .unwrap_or_else(|| panic!("route {id} has no Allow list: {rest}"))
                .1
                .split('"')
                .next()
                .unwrap();
            allowed.insert(id.to_owned(), methods.to_owned());
        } else {
            panic!("route {id} is not a method router: {rest}");
        }
    }
    assert!(!paths.is_empty(), "no routes read from {table}");
    let mut served = BTreeSet::new();
    for (id, path) in paths {
        let methods = allowed
            .get(&id)
            .unwrap_or_else(|| panic!("{path}: no methods"));
        for method in methods.split(',') {
            // axum answers HEAD wherever it answers GET; the document lists the GET.
            if method != "HEAD" {
                served.insert((method.to_owned(), path.clone()));
            }
        }
    }
    served
}

/// The API's paths: everything under `/v1`, the health and readiness checks, the metrics and the
/// document itself.
fn is_api_path(path: &str) -> bool {
    path.starts_with("/v1/") || ["/healthz", "/readyz", "/metrics", "/openapi.json"].contains(&path)
}

fn documented_routes(document: &Value) -> BTreeSet<(String, String)> {
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    documented
}

#[tokio::test]
async fn every_route_the_router_serves_is_documented_with_its_method() {
    let app = TestApp::spawn().await;
    // The console's pages (HTML, under `/` outside `/v1`) are not part of the API.
    let served: BTreeSet<_> = served_routes(&app.router)
        .into_iter()
        .filter(|(_, path)| is_api_path(path))
        .collect();
    assert!(served.len() >= 90, "too few API routes read: {served:?}");
    let reply = app.get("/openapi.json", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let documented = documented_routes(&reply.body);
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in /openapi.json: {undocumented:?}"
    );
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        unserved.is_empty(),
        "in /openapi.json but not served: {unserved:?}"
    );
    // The reading of the route table is not vacuous: it sees the routes of every part.
    for route in [
        ("GET", "/healthz"),
        ("GET", "/openapi.json"),
        ("POST", "/v1/retail/orders"),
        ("GET", "/v1/retail/orders"),
        ("PATCH", "/v1/insurance/products/{product_id}"),
        ("DELETE", "/v1/webhooks/{endpoint_id}"),
        ("PUT", "/v1/operator/sellers/{party_id}"),
        ("POST", "/v1/card-present/authorisations"),
    ] {
        assert!(
            served.contains(&(route.0.to_owned(), route.1.to_owned())),
            "{route:?} not read from the router"
        );
    }
    // `holdfast openapi` prints the same document the server serves.
    let printed = serde_json::to_value(holdfast_server::openapi::document()).unwrap();
    assert_eq!(printed, reply.body);
}

/// One handler as written in server/src/api: its annotation's method and path, and whether
/// its code takes an `Idempotency-Key` and refuses to run without one.
struct Handler {
    method: String,
    path: String,
    takes_key: bool,
    requires_key: bool,
}

fn handlers() -> Vec<Handler> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../server/src/api");
    let mut handlers = Vec::new();
    for file in std::fs::read_dir(dir).unwrap() {
        let source = std::fs::read_to_string(file.unwrap().path()).unwrap();
        // Each annotation up to the next one: the handler it documents, and the helpers after it.
        for chunk in source.split("#[utoipa::path(").skip(1) {
            let (method, rest) = chunk.split_once(',').unwrap();
            let path = rest
                .split_once("path = \"")
                .unwrap()
                .1
                .split('"')
                .next()
                .unwrap();
            // The handler's own code ends where the next item at column 0 ends.
            let code = chunk.split("\n}\n").next().unwrap();
            handlers.push(Handler {
                method: method.trim().to_uppercase(),
                path: path.to_owned(),
                takes_key: code.contains(": IdempotencyKey"),
                requires_key: code.contains("key.required()"),
            });
        }
    }
    handlers
}

#[test]
fn an_operation_that_needs_an_idempotency_key_documents_it_as_required() {
    let document = serde_json::to_value(holdfast_server::openapi::document()).unwrap();
    let handlers = handlers();
    assert!(handlers.len() > 90, "only {} handlers read", handlers.len());
    assert!(
        handlers.iter().filter(|h| h.requires_key).count() >= 9,
        "the scan of the handlers found too few that require a key"
    );
    let mut wrong = Vec::new();
    for handler in &handlers {
        let operation = &document["paths"][&handler.path][handler.method.to_lowercase()];
        assert!(
            operation.is_object(),
            "{} {} not documented",
            handler.method,
            handler.path
        );
        let key = operation["parameters"].as_array().and_then(|parameters| {
            parameters
                .iter()
                .find(|p| p["name"] == "Idempotency-Key" && p["in"] == "header")
        });
        let documented_required = key.is_some_and(|key| key["required"] == true);
        let ok = match key {
            None => !handler.takes_key,
            Some(_) => handler.takes_key && documented_required == handler.requires_key,
        };
        if !ok {
            wrong.push(format!(
                "{} {}: takes a key {}, requires it {}, documents it {}",
                handler.method,
                handler.path,
                handler.takes_key,
                handler.requires_key,
                match key {
                    None => "not at all",
                    Some(_) if documented_required => "as required",
                    Some(_) => "as optional",
                }
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
