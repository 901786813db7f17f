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

/// Bidirectional embedding, override and isolate controls (U+202A–U+202E,
/// U+2066–U+2069): they reorder how the text around them is shown (U+202E makes
/// "gpj.exe" read "exe.jpg"), so no field takes them.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show nothing: white space and the format characters of the
/// Basic Multilingual Plane (soft hyphen, zero-width space, the joiners ZWNJ and
/// ZWJ, direction marks, word joiner, byte order mark, ...). A value may have
/// them inside (scripts need the joiners), but they are not its content.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}'
        )
}

/// Trims a text field and checks its length in characters (not bytes).
///
/// As the OpenAPI patterns document it: at most `max` characters as sent, at
/// least `min` visible ones (not white space, not a format character), no
/// control or bidirectional control characters anywhere. The patterns are
/// (`ANY` what may appear, `VISIBLE` what counts):
/// `ANY = [^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]`,
/// `VISIBLE = [^\s\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]`;
/// a test checks every character of the plane against them.
pub fn text(value: &str, min: usize, max: usize) -> Result<String, String> {
    let visible = value.chars().filter(|c| !is_invisible(*c) && !c.is_control()).count();
    if visible < min || value.chars().count() > max {
        return Err(if min == max {
            format!("must be {min} characters")
        } else if min == 0 {
            format!("must be at most {max} characters")
        } else if min == 1 {
            format!("must have a visible character and at most {max} characters")
        } else {
            format!("must have at least {min} visible characters and at most {max} characters")
        });
    }
    if value.chars().any(|c| c.is_control()) {
        return Err("must not contain control characters".into());
    }
    if value.chars().any(is_bidi_control) {
        return Err("must not contain bidirectional control characters (U+202A–U+202E, U+2066–U+2069)".into());
    }
    Ok(value.trim().to_owned())
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
    fn invisible_and_reordering_text_is_refused() {
        assert!(text("\u{200B}", 1, 10).is_err(), "only a zero-width space");
        assert!(text(" \u{200C}\u{200D} ", 1, 10).is_err(), "only joiners");
        assert!(text("I\u{200B}", 2, 10).is_err(), "one visible character where two are needed");
        assert!(text("Main St\u{202E}", 1, 20).is_err(), "right-to-left override");
        assert!(text("a\u{2066}b", 0, 20).is_err(), "an isolate, even in optional text");
        assert_eq!(text("می\u{200C}خواهم", 1, 20), Ok("می\u{200C}خواهم".to_owned()), "ZWNJ inside a Persian word");
        assert_eq!(text("\u{200B}x", 1, 10), Ok("\u{200B}x".to_owned()));
    }

    #[test]
    fn pointer_segments_are_escaped() {
        assert_eq!(pointer_segment("a/b~c"), "a~1b~0c");
    }
}
