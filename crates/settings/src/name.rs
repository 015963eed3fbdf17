//! One rule for the names of agents, jobs and labels: safe as a file name, a command-line
//! argument and a label.

/// How to write a valid name, for messages.
pub const NAME_RULE: &str = "use 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'";

/// 1 to 128 characters of `A-Z a-z 0-9 _ . -`, not starting with `.` or `-`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && !name.starts_with(['.', '-'])
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks `name`; `what` names it in the message ("agent name", "label").
pub fn check_name(name: &str, what: &'static str) -> Result<(), NameError> {
    if is_valid_name(name) { Ok(()) } else { Err(NameError { name: name.to_string(), what }) }
}

/// A name that breaks [`NAME_RULE`].
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("`{name}` is not a valid {what}: {NAME_RULE}")]
pub struct NameError {
    /// The name as given.
    pub name: String,
    /// What it names: "agent name", "label".
    pub what: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for good in ["a", "load_customers", "x.toml", "A-1", "v1.2_3", "1e5", &"n".repeat(128)] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["", ".hidden", "-rf", "a b", "a/b", "a\\b", "..", "é", "a:b", "a\0b", &"n".repeat(129)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_message_names_the_name_and_the_rule() {
        let e = check_name("a b", "agent name").expect_err("space");
        assert_eq!(
            e.to_string(),
            "`a b` is not a valid agent name: use 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        );
        assert_eq!(check_name("etl", "label"), Ok(()));
    }
}
