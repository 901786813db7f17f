//! The committed OpenAPI document is the one the code serves: regenerate it with
//! `cargo run --bin orders-api -- openapi` when the API changes.

#[test]
fn the_committed_openapi_document_is_current() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
        .expect("openapi/openapi.json is committed");
    let generated = orders::http::openapi::document().expect("the document serialises") + "\n";
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `cargo run --bin orders-api -- openapi` and commit the result"
    );
}

/// Client generators name methods after operation ids: each is unique and
/// camelCase (`createOrder`, `listOrders`), so no two methods clash; and the
/// document names its server.
#[test]
fn operation_ids_are_unique_and_named_for_generators() {
    let doc: serde_json::Value = serde_json::from_str(&orders::http::openapi::document().unwrap()).unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(id.chars().next().unwrap().is_ascii_lowercase() && id.chars().all(|c| c.is_ascii_alphanumeric()));
            assert!(ids.insert(id.to_owned()), "{id} is used twice");
        }
    }
    assert!(ids.contains("createOrder") && ids.contains("listOrders") && ids.contains("getOrder"));
    assert!(doc["servers"][0]["url"].is_string());
}

/// Every operation documents every status the service can answer it with, so
/// clients and the contract fuzzer (scripts/contract) are never surprised:
/// 429/500/503 everywhere, 401/403 where a token is needed, 404 where the path
/// names a resource, 400/408/413/415/422 where a JSON body is read.
#[test]
fn every_operation_documents_the_errors_it_can_answer_with() {
    let doc: serde_json::Value = serde_json::from_str(&orders::http::openapi::document().unwrap()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let mut expected = vec!["429", "500", "503"];
            if op.get("security").is_some() {
                expected.extend(["401", "403"]);
            }
            if path.contains('{') {
                expected.push("404");
            }
            if op.get("requestBody").is_some() {
                expected.extend(["400", "408", "413", "415", "422"]);
            }
            for status in expected {
                assert!(responses.contains_key(status), "{method} {path} does not document {status}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 16, "every operation was checked");
    let retry = &doc["components"]["responses"]["RateLimited"]["headers"]["Retry-After"];
    assert!(retry.is_object(), "429 documents Retry-After");
}

/// The documented text patterns are exactly the server's rules, character by
/// character over the whole Basic Multilingual Plane: what may appear in a value
/// (no control or bidirectional control characters) and what counts as its
/// content (not white space, not a format character). A client validating with
/// the document is never refused by the server, nor the other way round.
#[test]
fn the_documented_text_patterns_are_the_servers_rules() {
    use orders::domain::validation::text;
    let doc: serde_json::Value = serde_json::from_str(&orders::http::openapi::document().unwrap()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let pattern = |schema: &str, field: &str| {
        let p = schemas[schema]["properties"][field]["pattern"].as_str().unwrap_or_else(|| panic!("{schema}.{field}"));
        regex::Regex::new(p).unwrap()
    };
    let (street, state, notes) =
        (pattern("AddressInput", "street"), pattern("AddressInput", "state"), pattern("CreateOrderRequest", "notes"));
    let mut checked = 0;
    for c in (0..=0xFFFFu32).filter_map(char::from_u32) {
        let alone = c.to_string();
        let inside = format!("a{c}b");
        assert_eq!(street.is_match(&alone), text(&alone, 1, 255).is_ok(), "street {:?} (U+{:04X})", c, c as u32);
        assert_eq!(street.is_match(&inside), text(&inside, 1, 255).is_ok(), "street a{:?}b", c);
        let two = format!("X{c}");
        assert_eq!(state.is_match(&two), text(&two, 2, 50).is_ok(), "state X{:?} (U+{:04X})", c, c as u32);
        assert_eq!(notes.is_match(&inside), text(&inside, 0, 1000).is_ok(), "notes a{:?}b", c);
        checked += 1;
    }
    assert!(checked > 60_000);
}
