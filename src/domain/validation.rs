//! Collects every problem with a request instead of stopping at the first, so a
//! client can fix all of them in one round trip.

use serde::Serialize;
use utoipa::ToSchema;

/// One invalid field, located by an RFC 6901 JSON pointer into the request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    #[schema(example = "/items/0/quantity")]
    pub pointer: String,
    #[schema(example = "must be between 1 and 1000")]
    pub message: String,
}

#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { pointer: pointer.into(), message: message.into() });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }

    /// Records the error of a field parse and returns its value when it parsed.
    pub fn check<T>(&mut self, pointer: &str, parsed: Result<T, String>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(message) => {
                self.add(pointer, message);
                None
            }
        }
    }

    /// Parses an optional field: `Some(None)` when absent, `None` when present but invalid.
    pub fn optional<T>(
        &mut self,
        pointer: &str,
        value: Option<String>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match value {
            None => Some(None),
            Some(v) => self.check(pointer, parse(&v)).map(Some),
        }
    }

    /// Records "is required" when a field is absent.
    pub fn required<T>(&mut self, pointer: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.add(pointer, "is required");
        }
        value
    }
}

/// Trims a text field and checks its length in characters (not bytes).
pub fn text(value: &str, min: usize, max: usize) -> Result<String, String> {
    // As documented in the OpenAPI patterns: at most `max` characters as sent,
    // at least `min` once surrounding whitespace is trimmed, no control
    // characters anywhere.
    let trimmed = value.trim();
    if trimmed.chars().count() < min || value.chars().count() > max {
        return Err(if min == max {
            format!("must be {min} characters")
        } else if min == 0 {
            format!("must be at most {max} characters")
        } else {
            format!("must be between {min} and {max} characters")
        });
    }
    if value.chars().any(|c| c.is_control()) {
        return Err("must not contain control characters".into());
    }
    Ok(trimmed.to_owned())
}

/// Escapes a JSON object key for use in a pointer (RFC 6901 §3).
pub fn pointer_segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_counts_characters_and_trims() {
        assert_eq!(text(" Zürich ", 1, 8), Ok("Zürich".to_owned()));
        // The limit applies to what was sent, as the documented maxLength does.
        assert!(text("  Zürich ", 1, 8).is_err());
        assert!(text("   ", 1, 10).is_err());
        assert!(text(" a ", 2, 10).is_err());
        assert!(text("abcdef", 1, 5).is_err());
        assert!(text("a\u{0}b", 1, 5).is_err());
        assert!(text("ab\t", 1, 5).is_err());
    }

    #[test]
    fn pointer_segments_are_escaped() {
        assert_eq!(pointer_segment("a/b~c"), "a~1b~0c");
    }
}
