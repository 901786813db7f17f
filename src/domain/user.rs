//! Customer accounts.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    PendingVerification,
    Active,
    /// Too many wrong verification codes.
    Locked,
    /// Not verified before the deadline.
    Expired,
}

impl UserStatus {
    pub const ALL: [UserStatus; 4] = [Self::PendingVerification, Self::Active, Self::Locked, Self::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingVerification => "pending_verification",
            Self::Active => "active",
            Self::Locked => "locked",
            Self::Expired => "expired",
        }
    }

    pub fn parse(value: &str) -> Option<UserStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// Wrong codes allowed before the account locks (the fifth locks it).
pub const MAX_CODE_ATTEMPTS: u32 = 5;

/// What is stored of a verification code: an HMAC-SHA256 under the server's
/// key (`ORDERS_VERIFICATION_KEY`), over the user id and the code. A plain hash
/// of six digits is undone by trying all million; without the key, a copy of
/// the database gives no code away. The user id makes equal codes of two users
/// hash differently.
pub fn code_hash(key: &[u8], user_id: uuid::Uuid, code: &str) -> String {
    use hmac::{Hmac, Mac};
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("verification-code:{user_id}:{}", code.trim()).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The hash of versions before the key (SHA-256 of id and code): still accepted
/// for the accounts that got their code then, until their verification deadline
/// has passed; remove it one `ORDERS_VERIFICATION_DEADLINE` after upgrading.
pub fn legacy_code_hash(user_id: uuid::Uuid, code: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(format!("{user_id}:{}", code.trim()).as_bytes()))
}

/// The hashes a code may be stored under: the keyed one, then the legacy one.
pub fn code_hashes(key: &[u8], user_id: uuid::Uuid, code: &str) -> [String; 2] {
    [code_hash(key, user_id, code), legacy_code_hash(user_id, code)]
}

/// Constant-time comparison of two hashes (hex strings of equal length), so
/// the time a comparison takes says nothing about how much of it matched.
pub fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// A plausible email address: one `@`, a dot in the domain, no spaces, at most 254 characters.
pub fn parse_email(value: &str) -> Result<String, String> {
    let v = value.trim();
    let ok = v.len() <= 254
        && !v.chars().any(|c| c.is_whitespace() || c.is_control())
        && v.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if ok { Ok(v.to_owned()) } else { Err("must be an email address like ada@example.com".into()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(parse_email(" ada@example.com "), Ok("ada@example.com".to_owned()));
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "a b@example.com", "a@b@c.com", "ada@.com"] {
            assert!(parse_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn code_hashes_depend_on_the_key_the_user_and_the_code() {
        let (a, b) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let key = b"0123456789abcdef0123456789abcdef";
        let h = code_hash(key, a, "123456");
        assert_eq!(h.len(), 64);
        assert_eq!(h, code_hash(key, a, " 123456 "), "surrounding spaces are not part of the code");
        assert_ne!(h, code_hash(b"another key, as long as the first", a, "123456"));
        assert_ne!(h, code_hash(key, b, "123456"));
        assert_ne!(h, code_hash(key, a, "123457"));
        assert_ne!(h, legacy_code_hash(a, "123456"));
        assert_eq!(code_hashes(key, a, "123456"), [h.clone(), legacy_code_hash(a, "123456")]);
        assert!(same_hash(&h, &h.clone()));
        assert!(!same_hash(&h, &code_hash(key, a, "000000")));
        assert!(!same_hash(&h, &h[..63]));
    }
}
