//! The name rules the coordinator enforces and the SDK checks before sending, written once.
//! A rule is a predicate plus the sentence each side puts in its error.

/// Queue, tenant and similar names: `[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}`.
pub fn is_name(value: &str) -> bool {
    starts_and_continues(value, 128, b"_.:-")
}

/// What [`is_name`] requires, for error messages.
pub const NAME_RULE: &str = "1-128 characters of letters, digits, '_', '.', ':' or '-', \
                             starting with a letter or digit";

/// Job kinds: like names, with `/` also allowed and up to 255 bytes.
pub fn is_kind(value: &str) -> bool {
    starts_and_continues(value, 255, b"_.:-/")
}

/// What [`is_kind`] requires, for error messages.
pub const KIND_RULE: &str = "1-255 characters of letters, digits, '_', '.', ':', '-' or '/', \
                             starting with a letter or digit";

/// Free-form labels (idempotency keys, correlation ids, projects, worker ids and versions):
/// 1-255 bytes without control characters.
pub fn is_label(value: &str) -> bool {
    !value.is_empty() && value.len() <= 255 && !value.chars().any(char::is_control)
}

/// What [`is_label`] requires, for error messages.
pub const LABEL_RULE: &str = "1-255 bytes without control characters";

fn starts_and_continues(value: &str, max: usize, extra: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules() {
        assert!(is_name("emails") && is_name("a.b:c-d_e") && is_name(&"q".repeat(128)));
        assert!(!is_name("") && !is_name("-x") && !is_name("a/b") && !is_name(&"q".repeat(129)));
        assert!(is_kind("images/resize") && !is_kind("/x") && !is_kind(&"k".repeat(256)));
        assert!(is_label("any thing: at all") && !is_label("") && !is_label("a\nb"));
        assert!(!is_label(&"l".repeat(256)));
    }
}
