//! The OpenAPI document: generated from the code, checked in, and in step with what the local
//! server mounts and what `template.yaml` deploys.

use std::collections::BTreeSet;

use e2e::*;
use serde_json::Value;
use shared::http::{all, openapi};

async fn documented() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(&openapi().await.unwrap().to_json().unwrap()).unwrap();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

fn declared() -> BTreeSet<(String, String)> {
    all().flat_map(|e| e.routes.iter().map(|(m, p)| (m.to_string(), p.to_string()))).collect()
}

#[tokio::test]
async fn given_the_code_then_the_checked_in_openapi_json_is_current() {
    let generated = openapi().await.unwrap().to_pretty_json().unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json");
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in.trim_end() == generated.trim_end(),
        "openapi.json is stale: run `cargo run -p local-server -- --openapi > openapi.json` and commit it"
    );
    let doc: Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["oauth2"]["flows"]["password"]["tokenUrl"], "/auth/token");
}

#[tokio::test]
async fn given_the_document_then_it_lists_exactly_the_routes_of_every_endpoint() {
    assert_eq!(documented().await, declared());
}

#[tokio::test]
async fn given_every_documented_operation_then_the_local_server_mounts_it() {
    let s = start(|_| {}).await;
    for (method, path) in documented().await {
        let url = s.url(&path.replace("{file}", "swagger-ui.css"));
        let req = s.http.request(method.parse().unwrap(), &url);
        let req = if method == "GET" { req } else { req.header("content-type", "application/json").body("{}") };
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        let routing_miss = (status == 404 && body.contains("urn:secure-auth:problem:not-found")) || status == 405;
        assert!(!routing_miss, "{method} {path} is documented but not mounted ({status})");
    }
}

/// `UsersRevokeSessionsFunction` → `users-revoke-sessions`: a function's logical id names its
/// binary.
fn binary_of(logical_id: &str) -> String {
    let mut out = String::new();
    for (i, c) in logical_id.trim_end_matches("Function").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// (binary, [(method, path)]) for every function in template.yaml, read line by line (the
/// template's custom tags defeat plain YAML parsers; its layout is regular).
fn template_functions() -> Vec<(String, Vec<(String, String)>)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut in_function = false;
    let mut resource = String::new();
    let mut method = String::new();
    for line in text.lines() {
        let t = line.trim();
        if line.starts_with("  ") && !line.starts_with("   ") && t.ends_with(':') {
            in_function = false;
            resource = t.trim_end_matches(':').to_owned();
        }
        if t == "Type: AWS::Serverless::Function" {
            in_function = true;
            out.push((binary_of(&resource), Vec::new()));
        }
        if !in_function {
            continue;
        }
        let last = out.last_mut().unwrap();
        if let Some(m) = t.strip_prefix("Method: ") {
            method = m.to_uppercase();
        } else if let Some(p) = t.strip_prefix("Path: ") {
            // API Gateway's greedy parameter `{file+}` is the document's `{file}`.
            last.1.push((method.clone(), p.replace("+}", "}")));
        }
    }
    out
}

#[test]
fn given_template_yaml_then_every_endpoint_has_its_function_and_an_api_event_per_route() {
    let functions = template_functions();
    for e in all() {
        let (_, events) = functions
            .iter()
            .find(|(b, _)| b == e.binary)
            .unwrap_or_else(|| panic!("no function with Binary: {} in template.yaml", e.binary));
        for (m, p) in e.routes {
            assert!(events.contains(&(m.to_string(), p.to_string())), "{} lacks the event {m} {p}", e.binary);
        }
        let bin = format!("{}/../functions/src/bin/{}.rs", env!("CARGO_MANIFEST_DIR"), e.binary);
        assert!(std::path::Path::new(&bin).exists(), "{bin} missing");
    }
    let events: BTreeSet<(String, String)> = functions.iter().flat_map(|(_, ev)| ev.iter().cloned()).collect();
    assert_eq!(events, declared(), "template events and the document disagree");
}

#[test]
fn given_the_declarations_then_the_readme_endpoint_table_is_derived_from_them() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let (_, rest) = readme.split_once("<!-- endpoints:begin -->\n").expect("README table markers");
    let (table, _) = rest.split_once("<!-- endpoints:end -->").expect("README table end marker");
    assert!(
        table == shared::http::readme_table(),
        "the README's endpoint table is stale: replace it with `cargo run -p local-server -- --readme-table`"
    );
    // Every handler file and use-case module it names exists.
    for e in all() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        for f in std::iter::once(e.source).chain(e.use_case.split(", ").filter(|u| *u != "—")) {
            assert!(std::path::Path::new(&format!("{root}/{f}")).exists(), "{}: {f} missing", e.binary);
        }
    }
}
