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
