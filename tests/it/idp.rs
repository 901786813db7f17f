//! Tokens from an identity provider's JWKS endpoint over HTTPS (a local TLS
//! server with a CA of the test's own): keys are fetched on first use and again
//! when a token names a key id not held yet, so a rotation at the IdP needs no
//! restart; and that refetch is rate-limited.

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::e2e::{Process, free_port, tls_files};
use crate::support::*;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The fixtures' JWKS with only the key `kid` in it.
fn jwks_with(kid: &str) -> String {
    let mut set: Value = serde_json::from_str(&fixture("jwks.json")).unwrap();
    set["keys"].as_array_mut().unwrap().retain(|k| k["kid"] == kid);
    set.to_string()
}

/// An RS256 token as the IdP would sign it with the key `kid` (fixture `pem`).
fn idp_token(kid: &str, pem: &str) -> String {
    signed(kid, pem, json!({"sub": "idp-user", "role": "customer"}))
}

fn signed(kid: &str, pem: &str, mut claims: Value) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    claims["exp"] = (now + 300).into();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    let key = EncodingKey::from_rsa_pem(fixture(pem).as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// An HTTPS JWKS endpoint serving `jwks.json` of a directory the test rewrites.
struct Idp {
    dir: std::path::PathBuf,
    issuer: String,
    url: String,
    ca: String,
    _server: Process,
}

impl Idp {
    fn start(kid: &str) -> Idp {
        let dir = std::env::temp_dir().join(format!("orders-idp-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, cert, key) = tls_files(&dir);
        let site = dir.join("site");
        std::fs::create_dir_all(&site).unwrap();
        std::fs::write(site.join("jwks.json"), jwks_with(kid)).unwrap();
        let port = free_port();
        // OpenID discovery: the issuer's configuration names its JWKS endpoint.
        std::fs::create_dir_all(site.join(".well-known")).unwrap();
        let issuer = format!("https://127.0.0.1:{port}");
        let configuration = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks.json")});
        std::fs::write(site.join(".well-known/openid-configuration"), configuration.to_string()).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/https_static.py");
        let server = Process(
            Command::new("python3")
                .args([script, &port.to_string(), &cert, &key, &site.display().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3 runs"),
        );
        Idp { url: format!("{issuer}/jwks.json"), issuer, ca, dir, _server: server }
    }

    /// Waits until the endpoint answers over TLS with the test CA.
    async fn ready(&self) {
        let ca = reqwest::Certificate::from_pem(std::fs::read(&self.ca).unwrap().as_slice()).unwrap();
        let client = orders::tls::client().add_root_certificate(ca).build().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !client.get(&self.url).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(std::time::Instant::now() < deadline, "the JWKS endpoint never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn rotate_to(&self, kid: &str) {
        std::fs::write(self.dir.join("site/jwks.json"), jwks_with(kid)).unwrap();
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn app_of(idp: &Idp, min_refresh: &str) -> TestApp {
    idp.ready().await;
    spawn_app_with(&[
        ("ORDERS_JWT_ALG", "RS256"),
        ("ORDERS_JWT_JWKS_URL", &idp.url),
        ("ORDERS_JWT_JWKS_CA_FILE", &idp.ca),
        ("ORDERS_JWT_JWKS_REFRESH", "1h"),
        ("ORDERS_JWT_JWKS_MIN_REFRESH", min_refresh),
    ])
    .await
}

async fn list_with(app: &TestApp, token: &str) -> StatusCode {
    app.http.get(format!("{}/orders", app.address)).bearer_auth(token).send().await.unwrap().status()
}

#[tokio::test]
async fn keys_rotate_at_the_idp_without_a_restart() {
    let idp = Idp::start("key-2026-10");
    let app = app_of(&idp, "0s").await;
    let (old, new) = (idp_token("key-2026-10", "rsa-private.pem"), idp_token("key-2026-11", "rsa2-private.pem"));
    assert_eq!(list_with(&app, &old).await, StatusCode::OK, "fetched over TLS on first use");

    idp.rotate_to("key-2026-11");
    assert_eq!(list_with(&app, &new).await, StatusCode::OK, "an unknown key id makes the API fetch the keys again");
    assert_eq!(list_with(&app, &old).await, StatusCode::UNAUTHORIZED, "the key the IdP dropped is no longer trusted");
}

#[tokio::test]
async fn unknown_key_ids_refetch_at_most_once_per_interval() {
    let idp = Idp::start("key-2026-10");
    let app = app_of(&idp, "1h").await;
    assert_eq!(list_with(&app, &idp_token("key-2026-10", "rsa-private.pem")).await, StatusCode::OK);
    idp.rotate_to("key-2026-11");
    // Within the interval a made-up (or new) key id does not make the API call the IdP again.
    let new = idp_token("key-2026-11", "rsa2-private.pem");
    assert_eq!(list_with(&app, &new).await, StatusCode::UNAUTHORIZED);
}

/// `ORDERS_JWT_JWKS_URL=discover`: the JWKS endpoint is the one the issuer's
/// OpenID configuration names, as Keycloak, Auth0, Cognito and Entra publish it.
#[tokio::test]
async fn the_jwks_endpoint_is_found_by_openid_discovery() {
    let idp = Idp::start("key-2026-10");
    idp.ready().await;
    let app = spawn_app_with(&[
        ("ORDERS_JWT_ALG", "RS256"),
        ("ORDERS_JWT_ISSUER", &idp.issuer),
        ("ORDERS_JWT_JWKS_URL", "discover"),
        ("ORDERS_JWT_JWKS_CA_FILE", &idp.ca),
    ])
    .await;
    let token = signed("key-2026-10", "rsa-private.pem", json!({"sub": "u1", "role": "customer", "iss": idp.issuer}));
    assert_eq!(list_with(&app, &token).await, StatusCode::OK);
    let other_issuer = signed(
        "key-2026-10",
        "rsa-private.pem",
        json!({"sub": "u1", "role": "customer", "iss": "https://evil.example"}),
    );
    assert_eq!(list_with(&app, &other_issuer).await, StatusCode::UNAUTHORIZED);
}
