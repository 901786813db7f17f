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

/// What is stored of a verification code: its hash, salted with the user id so
/// that equal codes of two users hash differently.
pub fn code_hash(user_id: uuid::Uuid, code: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(format!("{user_id}:{}", code.trim()).as_bytes()))
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
}
