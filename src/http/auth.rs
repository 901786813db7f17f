//! Bearer-token authentication (HS256 JWT) and the roles it carries.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use std::collections::BTreeMap;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::state::AppState;
use crate::config::{ClaimSettings, JwtAlgorithm, JwtSettings, Secret};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Places orders and sees their own.
    Customer,
    /// Sees and acts on every order.
    Admin,
    /// Reports shipment events.
    Carrier,
}

impl Role {
    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "customer" => Some(Role::Customer),
            "admin" => Some(Role::Admin),
            "carrier" => Some(Role::Carrier),
            _ => None,
        }
    }
}

/// The claims we read. The time claims are typed: a token whose `exp`, `nbf`
/// or `iat` is not a whole number of seconds fails to decode (and is refused),
/// whatever the JWT library's own checks made of it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// Verifies bearer tokens with the configured algorithm and key(s); signs them
/// for `orders-api token` when it has a signing key.
#[derive(Clone)]
pub struct JwtKeys {
    algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: Decoding,
    validation: Validation,
    /// `exp` may be at most this far ahead (plus the leeway).
    max_lifetime: Duration,
    claims: ClaimSettings,
}

/// A verified token as decoded: the time claims typed (see `Claims`), the rest
/// kept to find the subject and role where the IdP put them.
#[derive(Deserialize)]
struct Decoded {
    exp: u64,
    #[serde(default)]
    iat: u64,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// The claim at `path`: a claim of that exact name, else a dotted path into objects.
fn claim<'a>(claims: &'a serde_json::Map<String, serde_json::Value>, path: &str) -> Option<&'a serde_json::Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let first = claims.get(parts.next()?)?;
    parts.try_fold(first, |v, part| v.get(part))
}

impl ClaimSettings {
    /// Our role from the role claim (a string, or a list such as IdP groups),
    /// mapped by `role_map`; with several, the one with most rights wins.
    fn role(&self, claims: &serde_json::Map<String, serde_json::Value>) -> Option<Role> {
        let names: Vec<&str> = match claim(claims, &self.role)? {
            serde_json::Value::String(s) => vec![s.as_str()],
            serde_json::Value::Array(items) => items.iter().filter_map(|v| v.as_str()).collect(),
            _ => return None,
        };
        let ours = names.iter().filter_map(|name| {
            if self.role_map.is_empty() {
                Role::parse(name)
            } else {
                self.role_map.iter().find(|(theirs, _)| theirs == name).and_then(|(_, ours)| Role::parse(ours))
            }
        });
        ours.max_by_key(|r| match r {
            Role::Admin => 2,
            Role::Carrier => 1,
            Role::Customer => 0,
        })
    }
}

#[derive(Clone)]
enum Decoding {
    One(DecodingKey),
    /// From a JWKS document: the token's `kid` picks the key, so keys can rotate.
    ByKid(BTreeMap<String, DecodingKey>),
    /// From an IdP's JWKS endpoint, kept fresh.
    Remote(std::sync::Arc<RemoteJwks>),
}

/// The keys of an IdP's JWKS endpoint: fetched on first use, on a schedule
/// (`refresh_loop`), and when a token names an unknown key id (at most once per
/// `min_refresh`, so tokens with made-up ids cannot make us hammer the IdP).
pub struct RemoteJwks {
    settings: crate::config::JwksUrl,
    http: reqwest::Client,
    keys: std::sync::RwLock<BTreeMap<String, DecodingKey>>,
    /// When the last fetch was tried; the lock also makes concurrent refreshes one.
    fetched: tokio::sync::Mutex<Option<std::time::Instant>>,
}

impl RemoteJwks {
    fn new(settings: &crate::config::JwksUrl) -> Result<Self, KeyError> {
        let bad = |message: String| KeyError::Invalid { var: "ORDERS_JWT_JWKS_CA_FILE", message };
        let mut builder = crate::tls::client().timeout(Duration::from_secs(10));
        if let Some(pem) = &settings.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| bad(e.to_string()))? {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self {
            settings: settings.clone(),
            http: builder.build().map_err(|e| bad(e.to_string()))?,
            keys: Default::default(),
            fetched: Default::default(),
        })
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).get(kid).cloned()
    }

    /// Fetches the keys unless a fetch was tried less than `min_refresh` ago.
    pub async fn refresh(&self, min_interval: Duration) {
        let mut fetched = self.fetched.lock().await;
        if fetched.is_some_and(|at| at.elapsed() < min_interval) {
            return;
        }
        *fetched = Some(std::time::Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(url = %self.settings.url, keys = keys.len(), "JWKS fetched");
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
            }
            // The keys held stay in use until a fetch succeeds.
            Err(e) => tracing::warn!(url = %self.settings.url, error = %e, "JWKS fetch failed"),
        }
    }

    /// Where the keys are: the configured endpoint, or the `jwks_uri` of the
    /// issuer's OpenID configuration (read again at every fetch: it may move too).
    async fn jwks_uri(&self) -> Result<String, String> {
        if !self.settings.discover {
            return Ok(self.settings.url.clone());
        }
        #[derive(Deserialize)]
        struct OpenIdConfiguration {
            jwks_uri: String,
        }
        let resp = self.http.get(&self.settings.url).send().await.map_err(|e| e.to_string())?;
        let config: OpenIdConfiguration =
            resp.error_for_status().map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
        if !config.jwks_uri.starts_with("https://") {
            return Err(format!("jwks_uri {} is not https", config.jwks_uri));
        }
        Ok(config.jwks_uri)
    }

    async fn fetch(&self) -> Result<BTreeMap<String, DecodingKey>, String> {
        let resp = self.http.get(self.jwks_uri().await?).send().await.map_err(|e| e.to_string())?;
        let set: JwkSet =
            resp.error_for_status().map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
        let mut keys = BTreeMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else { continue };
            // A key of a kind we cannot use (another algorithm's) is skipped, not fatal.
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, key);
            }
        }
        Ok(keys)
    }

    /// Refreshes on the configured schedule until the process stops (the first
    /// fetch is the first token's).
    pub async fn refresh_loop(self: std::sync::Arc<Self>) {
        let every = self.settings.refresh_every;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            self.refresh(Duration::ZERO).await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
}

fn invalid(var: &'static str) -> impl Fn(jsonwebtoken::errors::Error) -> KeyError {
    move |e| KeyError::Invalid { var, message: e.to_string() }
}

impl JwtKeys {
    /// HS256 with a shared secret (the default).
    pub fn new(secret: &Secret) -> Self {
        let settings = JwtSettings {
            algorithm: JwtAlgorithm::Hs256,
            secret: Some(secret.clone()),
            public_key_pem: None,
            jwks: None,
            jwks_url: None,
            private_key_pem: None,
            issuer: None,
            audience: None,
            leeway_secs: 30,
            max_lifetime: Duration::from_secs(24 * 3600),
            claims: ClaimSettings::default(),
        };
        // An HS256 key is any byte string: this cannot fail.
        Self::from_settings(&settings).expect("HS256 keys always build")
    }

    pub fn from_settings(s: &JwtSettings) -> Result<Self, KeyError> {
        let algorithm = match s.algorithm {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
        };
        let (encoding, decoding) = match (s.algorithm, &s.secret) {
            (JwtAlgorithm::Hs256, Some(secret)) => (
                Some(EncodingKey::from_secret(secret.expose().as_bytes()).map_err(invalid("ORDERS_JWT_SECRET"))?),
                Decoding::One(
                    DecodingKey::from_secret(secret.expose().as_bytes()).map_err(invalid("ORDERS_JWT_SECRET"))?,
                ),
            ),
            (JwtAlgorithm::Hs256, None) => {
                return Err(KeyError::Invalid { var: "ORDERS_JWT_SECRET", message: "is required".into() });
            }
            (alg, _) => {
                let rsa = alg == JwtAlgorithm::Rs256;
                let encoding = match &s.private_key_pem {
                    Some(pem) if rsa => Some(EncodingKey::from_rsa_pem(pem.expose().as_bytes())),
                    Some(pem) => Some(EncodingKey::from_ec_pem(pem.expose().as_bytes())),
                    None => None,
                }
                .transpose()
                .map_err(invalid("ORDERS_JWT_PRIVATE_KEY_FILE"))?;
                let decoding = if let Some(url) = &s.jwks_url {
                    Decoding::Remote(std::sync::Arc::new(RemoteJwks::new(url)?))
                } else if let Some(jwks) = &s.jwks {
                    let set: JwkSet = serde_json::from_str(jwks)
                        .map_err(|e| KeyError::Invalid { var: "ORDERS_JWT_JWKS_FILE", message: e.to_string() })?;
                    let mut keys = BTreeMap::new();
                    for jwk in &set.keys {
                        let Some(kid) = jwk.common.key_id.clone() else { continue };
                        keys.insert(kid, DecodingKey::from_jwk(jwk).map_err(invalid("ORDERS_JWT_JWKS_FILE"))?);
                    }
                    Decoding::ByKid(keys)
                } else {
                    let pem = s.public_key_pem.as_deref().unwrap_or_default().as_bytes();
                    let key = if rsa { DecodingKey::from_rsa_pem(pem) } else { DecodingKey::from_ec_pem(pem) };
                    Decoding::One(key.map_err(invalid("ORDERS_JWT_PUBLIC_KEY_FILE"))?)
                };
                (encoding, decoding)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp"]);
        validation.leeway = s.leeway_secs;
        // Off by default in jsonwebtoken: a token must not work before its `nbf`.
        validation.validate_nbf = true;
        if let Some(iss) = &s.issuer {
            validation.set_issuer(&[iss]);
        }
        match &s.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Self { algorithm, encoding, decoding, validation, max_lifetime: s.max_lifetime, claims: s.claims.clone() })
    }

    pub fn issue(&self, sub: &str, role: Role, ttl: Duration) -> Result<String, jsonwebtoken::errors::Error> {
        let Some(key) = &self.encoding else {
            return Err(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into());
        };
        // The clock is after 1970 on every machine we run on; 0 would only make the token expire.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let claims = Claims { sub: sub.to_owned(), role, iat: now, exp: now + ttl.as_secs(), nbf: None };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
    }

    /// The IdP's JWKS endpoint, when keys come from one (its refresh loop runs with the API).
    pub fn remote(&self) -> Option<std::sync::Arc<RemoteJwks>> {
        match &self.decoding {
            Decoding::Remote(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// As `verify`, fetching the IdP's keys first when the token names a key id
    /// not held yet (a rotation), rate-limited.
    pub async fn verify_fresh(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        if let Decoding::Remote(remote) = &self.decoding {
            let kid = jsonwebtoken::decode_header(token)?.kid;
            if kid.as_deref().is_some_and(|kid| remote.key(kid).is_none()) {
                remote.refresh(remote.settings.min_refresh).await;
            }
        }
        self.verify(token)
    }

    /// Only the configured algorithm is accepted (so `alg: none` and a public key
    /// used as an HMAC secret both fail), with `exp` required and `iss`/`aud`
    /// checked when configured.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let header = jsonwebtoken::decode_header(token)?;
        if header.alg != self.algorithm {
            return Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into());
        }
        let no_key = || jsonwebtoken::errors::Error::from(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat);
        let remote_key;
        let key = match &self.decoding {
            Decoding::One(k) => k,
            Decoding::ByKid(keys) => header.kid.as_ref().and_then(|kid| keys.get(kid)).ok_or_else(no_key)?,
            Decoding::Remote(remote) => {
                remote_key = header.kid.as_deref().and_then(|kid| remote.key(kid)).ok_or_else(no_key)?;
                &remote_key
            }
        };
        let decoded = jsonwebtoken::decode::<Decoded>(token, key, &self.validation)?.claims;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if decoded.exp > now + self.max_lifetime.as_secs() + self.validation.leeway {
            return Err(jsonwebtoken::errors::ErrorKind::ExpiredSignature.into());
        }
        let missing = |claim: &str| jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(claim.to_owned());
        let sub = claim(&decoded.other, &self.claims.subject)
            .and_then(|v| v.as_str())
            .ok_or_else(|| missing(&self.claims.subject))?
            .to_owned();
        let role = self.claims.role(&decoded.other).ok_or_else(|| missing(&self.claims.role))?;
        Ok(Claims { sub, role, exp: decoded.exp, iat: decoded.iat, nbf: decoded.nbf })
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: String,
    pub role: Role,
}

impl Caller {
    pub fn require(&self, allowed: &[Role]) -> Result<(), ApiError> {
        if allowed.contains(&self.role) { Ok(()) } else { Err(ApiError::Forbidden) }
    }
}

impl Caller {
    /// The caller named by a valid `Authorization: Bearer` header, if any.
    pub async fn from_header(state: &AppState, headers: &axum::http::HeaderMap) -> Option<Caller> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))?;
        // Which check failed is logged at debug level, never told to the client.
        let claims = state
            .jwt
            .verify_fresh(token.trim())
            .await
            .map_err(|e| tracing::debug!(error = %e, "token rejected"))
            .ok()?;
        if claims.sub.trim().is_empty() {
            return None;
        }
        Some(Caller { subject: claims.sub, role: claims.role })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // Usually verified already by the rate limiter in front of every route.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        Caller::from_header(state, &parts.headers).await.ok_or(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::new(&Secret::new(secret))
    }

    #[test]
    fn issued_tokens_verify_and_carry_role() {
        let k = keys("0123456789abcdef0123456789abcdef");
        let t = k.issue("cust-1", Role::Customer, Duration::from_secs(60)).unwrap();
        let c = k.verify(&t).unwrap();
        assert_eq!((c.sub.as_str(), c.role), ("cust-1", Role::Customer));
    }

    #[test]
    fn other_secret_expired_and_unsigned_tokens_fail() {
        let k = keys("0123456789abcdef0123456789abcdef");
        let other = keys("ffffffffffffffffffffffffffffffff").issue("x", Role::Admin, Duration::from_secs(60)).unwrap();
        assert!(k.verify(&other).is_err());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let expired = Claims { sub: "x".into(), role: Role::Admin, exp: now - 3600, iat: now - 7200, nbf: None };
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &expired, k.encoding.as_ref().unwrap()).unwrap();
        assert!(k.verify(&t).is_err());
        // alg "none": header {"alg":"none"} and no signature
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4Iiwicm9sZSI6ImFkbWluIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(k.verify(none).is_err());
    }

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn asymmetric(alg: JwtAlgorithm, public: Option<&str>, jwks: bool, private: &str) -> JwtSettings {
        JwtSettings {
            algorithm: alg,
            secret: None,
            public_key_pem: public.map(fixture),
            jwks: jwks.then(|| fixture("jwks.json")),
            jwks_url: None,
            private_key_pem: Some(Secret::new(fixture(private))),
            issuer: Some("https://idp.example.com".into()),
            audience: Some("orders".into()),
            leeway_secs: 5,
            max_lifetime: Duration::from_secs(3600),
            claims: ClaimSettings::default(),
        }
    }

    /// HS256 keys reading the subject and roles where an IdP puts them.
    fn idp_keys(subject: &str, role: &str, map: &[(&str, &str)]) -> (JwtKeys, EncodingKey) {
        let secret = "0123456789abcdef0123456789abcdef";
        let mut settings = JwtSettings {
            claims: ClaimSettings {
                subject: subject.into(),
                role: role.into(),
                role_map: map.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect(),
            },
            ..asymmetric(JwtAlgorithm::Hs256, None, false, "rsa-private.pem")
        };
        settings.secret = Some(Secret::new(secret));
        settings.private_key_pem = None;
        (settings.issuer, settings.audience) = (None, None);
        (JwtKeys::from_settings(&settings).unwrap(), EncodingKey::from_secret(secret.as_bytes()).unwrap())
    }

    fn hs256(key: &EncodingKey, mut claims: serde_json::Value) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        claims["exp"] = (now + 60).into();
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key).unwrap()
    }

    #[test]
    fn keycloak_shaped_tokens_give_their_realm_roles() {
        let (keys, key) =
            idp_keys("sub", "realm_access.roles", &[("shop-admin", "admin"), ("shop-customer", "customer")]);
        let token = |roles: serde_json::Value| {
            hs256(
                &key,
                serde_json::json!({"sub": "f1c2", "preferred_username": "ada", "realm_access": {"roles": roles}}),
            )
        };
        let c = keys.verify(&token(serde_json::json!(["offline_access", "shop-customer"]))).unwrap();
        assert_eq!((c.sub.as_str(), c.role), ("f1c2", Role::Customer));
        let both = keys.verify(&token(serde_json::json!(["shop-customer", "shop-admin"]))).unwrap();
        assert_eq!(both.role, Role::Admin, "the role with most rights");
        assert!(keys.verify(&token(serde_json::json!(["offline_access"]))).is_err(), "no mapped role: refused");
        assert!(keys.verify(&token(serde_json::json!(["admin"]))).is_err(), "only mapped names count");
    }

    #[test]
    fn cognito_shaped_and_namespaced_claims_are_read_too() {
        let (keys, key) = idp_keys("username", "cognito:groups", &[("carriers", "carrier")]);
        let c = keys
            .verify(&hs256(
                &key,
                serde_json::json!({"sub": "uuid-1", "username": "ups", "cognito:groups": ["carriers"]}),
            ))
            .unwrap();
        assert_eq!((c.sub.as_str(), c.role), ("ups", Role::Carrier));
        assert!(
            keys.verify(&hs256(&key, serde_json::json!({"sub": "uuid-1", "cognito:groups": ["carriers"]}))).is_err(),
            "no subject claim"
        );
        let (keys, key) = idp_keys("sub", "https://shop.example/role", &[]);
        let c =
            keys.verify(&hs256(&key, serde_json::json!({"sub": "u", "https://shop.example/role": "admin"}))).unwrap();
        assert_eq!(c.role, Role::Admin);
    }

    fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, iss: &str, aud: &str) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let claims = serde_json::json!({"sub": "alice", "role": "customer", "exp": now + 60, "iss": iss, "aud": aud});
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    #[test]
    fn a_token_is_refused_before_its_not_before_time_beyond_the_leeway() {
        let k = keys("0123456789abcdef0123456789abcdef");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let with_nbf = |nbf: u64| {
            let claims = serde_json::json!({"sub": "x", "role": "customer", "exp": now + 3600, "nbf": nbf});
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, k.encoding.as_ref().unwrap()).unwrap()
        };
        assert!(k.verify(&with_nbf(now + 600)).is_err(), "not valid for ten more minutes");
        // Within the leeway (30 s here) a slightly fast issuer clock is tolerated.
        assert!(k.verify(&with_nbf(now + 10)).is_ok());
        assert!(k.verify(&with_nbf(now - 10)).is_ok());
    }

    /// CVE-2026-25537: jsonwebtoken before 10.3 skipped the check of a time claim
    /// of the wrong JSON type. Such a token is refused, as is one that lives too long.
    #[test]
    fn time_claims_must_be_whole_seconds_and_lifetimes_are_bounded() {
        let k = keys("0123456789abcdef0123456789abcdef");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let token = |claims: serde_json::Value| {
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, k.encoding.as_ref().unwrap()).unwrap()
        };
        let base = serde_json::json!({"sub": "x", "role": "customer", "exp": now + 600});
        assert!(k.verify(&token(base.clone())).is_ok());
        for (claim, value) in [
            ("nbf", serde_json::json!("9999999999")),
            ("nbf", serde_json::json!(1e30)),
            ("exp", serde_json::json!("9999999999")),
            ("exp", serde_json::json!(1e30)),
            ("exp", serde_json::json!(now as f64 + 600.5)),
            ("iat", serde_json::json!("yesterday")),
        ] {
            let mut claims = base.clone();
            claims[claim] = value.clone();
            assert!(k.verify(&token(claims)).is_err(), "{claim}: {value}");
        }
        let mut long = base.clone();
        long["exp"] = serde_json::json!(now + 25 * 3600);
        assert!(k.verify(&token(long)).is_err(), "beyond ORDERS_JWT_MAX_LIFETIME (24 h here)");
    }

    #[test]
    fn rs256_and_es256_verify_with_issuer_and_audience() {
        for (alg, algorithm, public, private) in [
            (JwtAlgorithm::Rs256, Algorithm::RS256, "rsa-public.pem", "rsa-private.pem"),
            (JwtAlgorithm::Es256, Algorithm::ES256, "ec-public.pem", "ec-private.pem"),
        ] {
            let keys = JwtKeys::from_settings(&asymmetric(alg, Some(public), false, private)).unwrap();
            let own = keys.encoding.clone().unwrap();
            let ok = sign(algorithm, None, &own, "https://idp.example.com", "orders");
            assert_eq!(keys.verify(&ok).unwrap().sub, "alice");
            assert!(keys.verify(&sign(algorithm, None, &own, "https://other.example.com", "orders")).is_err(), "iss");
            assert!(keys.verify(&sign(algorithm, None, &own, "https://idp.example.com", "billing")).is_err(), "aud");
            // The public key used as an HMAC secret (the classic key-confusion forgery).
            let forged = sign(
                Algorithm::HS256,
                None,
                &EncodingKey::from_secret(fixture(public).as_bytes()).unwrap(),
                "https://idp.example.com",
                "orders",
            );
            assert!(keys.verify(&forged).is_err(), "{alg:?}: HS256 with the public key must fail");
        }
    }

    #[test]
    fn jwks_keys_are_chosen_by_kid_so_they_can_rotate() {
        let keys = JwtKeys::from_settings(&asymmetric(JwtAlgorithm::Rs256, None, true, "rsa-private.pem")).unwrap();
        let old = EncodingKey::from_rsa_pem(fixture("rsa-private.pem").as_bytes()).unwrap();
        let new = EncodingKey::from_rsa_pem(fixture("rsa2-private.pem").as_bytes()).unwrap();
        let iss = "https://idp.example.com";
        assert!(keys.verify(&sign(Algorithm::RS256, Some("key-2026-10"), &old, iss, "orders")).is_ok());
        assert!(keys.verify(&sign(Algorithm::RS256, Some("key-2026-11"), &new, iss, "orders")).is_ok());
        assert!(
            keys.verify(&sign(Algorithm::RS256, Some("key-2026-11"), &old, iss, "orders")).is_err(),
            "wrong key for kid"
        );
        assert!(keys.verify(&sign(Algorithm::RS256, None, &old, iss, "orders")).is_err(), "no kid");
        assert!(keys.verify(&sign(Algorithm::RS256, Some("unknown"), &old, iss, "orders")).is_err());
    }
}

/// Who the bearer token says the caller is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Identity {
    /// The customer id (or the admin's or carrier's subject).
    pub subject: String,
    pub role: Role,
}

/// The caller as the API sees them, after the IdP's claims are mapped: lets a
/// client (the console, a storefront) check a token and show what it may do,
/// also when an authenticating proxy holds the token.
#[utoipa::path(get, path = "/whoami", operation_id = "whoami", tag = "users", security(("bearerAuth" = [])),
    responses((status = 200, description = "The caller's subject and role", body = Identity)))]
pub async fn whoami(caller: Caller) -> axum::Json<Identity> {
    axum::Json(Identity { subject: caller.subject, role: caller.role })
}
