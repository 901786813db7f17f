//! Bearer-token authentication (HS256 JWT) and the roles it carries.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::state::AppState;
use crate::config::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
}

/// Signs and verifies tokens with one shared secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub fn new(secret: &Secret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
        }
    }

    pub fn issue(&self, sub: &str, role: Role, ttl: Duration) -> Result<String, jsonwebtoken::errors::Error> {
        // The clock is after 1970 on every machine we run on; 0 would only make the token expire.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let claims = Claims { sub: sub.to_owned(), role, iat: now, exp: now + ttl.as_secs() };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|d| d.claims)
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

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or(ApiError::Unauthorized)?;
        // Which check failed is logged at debug level, never told to the client.
        let claims = state.jwt.verify(token.trim()).map_err(|e| {
            tracing::debug!(error = %e, "token rejected");
            ApiError::Unauthorized
        })?;
        if claims.sub.trim().is_empty() {
            return Err(ApiError::Unauthorized);
        }
        Ok(Caller { subject: claims.sub, role: claims.role })
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
        let expired = Claims { sub: "x".into(), role: Role::Admin, exp: now - 3600, iat: now - 7200 };
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &expired, &k.encoding).unwrap();
        assert!(k.verify(&t).is_err());
        // alg "none": header {"alg":"none"} and no signature
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4Iiwicm9sZSI6ImFkbWluIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(k.verify(none).is_err());
    }
}
