//! Where a key is written in a TOML file, so a message about it can say `file:line:column`.

use toml::de::{DeArray, DeTable, DeValue};

/// The 1-based line and column of the value of `key` in `text`: a top-level key (`slots`), a
/// nested one (`limits.idle_timeout`) or an item of an array of tables (`agents[1].address`).
/// Keys compare without case (the layering lowercases them). `None` when the text does not parse
/// or does not hold the key.
pub fn position_of(text: &str, key: &str) -> Option<(usize, usize)> {
    let root = DeTable::parse(text).ok()?;
    let mut offset = None;
    let mut table = Some(root.get_ref());
    let mut array: Option<&DeArray<'_>> = None;
    for segment in segments(key) {
        let value = match segment {
            Segment::Key(name) => {
                let found = table?.iter().find(|(k, _)| k.get_ref().eq_ignore_ascii_case(name))?;
                found.1
            }
            Segment::Index(i) => array?.get(i)?,
        };
        offset = Some(value.span().start);
        (table, array) = match value.get_ref() {
            DeValue::Table(t) => (Some(t), None),
            DeValue::Array(items) => (None, Some(items)),
            _ => (None, None),
        };
    }
    offset.map(|at| line_column(text, at))
}

enum Segment<'k> {
    Key(&'k str),
    Index(usize),
}

/// `agents[1].address` as `agents`, `1`, `address`.
fn segments(key: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let mut pieces = part.split('[');
        if let Some(name) = pieces.next().filter(|n| !n.is_empty()) {
            out.push(Segment::Key(name));
        }
        for index in pieces {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                out.push(Segment::Index(i));
            }
        }
    }
    out
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "listen = \"127.0.0.1:7600\"\nslots = \"four\"\n[limits]\nidle_timeout = 5\n\
                        [[agents]]\nname = \"a\"\n[[agents]]\nname = \"b\"\naddress = 7\n";

    #[test]
    fn top_level_nested_and_array_keys_are_found() {
        assert_eq!(position_of(TEXT, "slots"), Some((2, 9)));
        assert_eq!(position_of(TEXT, "limits.idle_timeout"), Some((4, 16)));
        assert_eq!(position_of(TEXT, "agents[1].address"), Some((9, 11)));
        assert_eq!(position_of(TEXT, "SLOTS"), Some((2, 9)));
    }

    #[test]
    fn a_missing_key_or_bad_text_has_no_position() {
        assert_eq!(position_of(TEXT, "nope"), None);
        assert_eq!(position_of(TEXT, "agents[5].name"), None);
        assert_eq!(position_of("= broken", "slots"), None);
    }
}
