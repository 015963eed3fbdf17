//! SSIS-style assignments `i = 0; vars.total = 10`, as in a For Loop's InitExpression and
//! AssignExpression.

use super::expression::Expression;
use super::syntax::{SyntaxError, string_literal_end, syntax_error_at};

/// An assignment `name = expr` as in SSIS For Loop InitExpression / AssignExpression.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// The variable assigned, without any `vars.` prefix.
    pub var: String,
    /// The value assigned.
    pub value: Expression,
}

/// Parses `name = expr` assignments separated by `;`, e.g. `i = 0; vars.total = 10`.
///
/// The name is an identifier, optionally prefixed `vars.`; the `=` is the first one that is
/// not part of `==`, `!=`, `<=` or `>=` and not inside a string literal. Error positions are
/// relative to the whole `source`.
pub fn parse_assignments(source: &str) -> Result<Vec<Assignment>, SyntaxError> {
    let mut assignments = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let b = source.as_bytes();
    while i <= b.len() {
        match b.get(i) {
            Some(b'\'' | b'"') => {
                i = string_literal_end(source, i).unwrap_or(b.len());
                continue;
            }
            Some(b';') | None => {
                if !source[start..i].trim().is_empty() {
                    assignments.push(parse_assignment(source, start, i)?);
                }
                start = i + 1;
            }
            Some(_) => {}
        }
        i += 1;
    }
    if assignments.is_empty() {
        let message = "expected an assignment `name = expression`";
        return Err(syntax_error_at(source, source.len(), message));
    }
    Ok(assignments)
}

/// Whether `source` starts with `name =` or `vars.name =` (and not `name ==`).
pub fn is_assignment(source: &str) -> bool {
    let s = source.trim_start();
    let rest = s.strip_prefix("vars.").unwrap_or(s);
    let len = identifier_len(rest);
    if len == 0 {
        return false;
    }
    let after = rest[len..].trim_start();
    after.starts_with('=') && !after.starts_with("==")
}

/// The length of the identifier `s` starts with (0 if it starts with none).
fn identifier_len(s: &str) -> usize {
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        return 0;
    }
    s.bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'_').count()
}

/// Parses the one assignment in `source[start..end]`.
fn parse_assignment(source: &str, start: usize, end: usize) -> Result<Assignment, SyntaxError> {
    let segment = &source[start..end];
    let lead = segment.len() - segment.trim_start().len();
    let Some(eq) = assignment_eq(segment) else {
        let message = "expected `name = expression` but found no `=`";
        return Err(syntax_error_at(source, start + lead, message));
    };
    let name = segment[..eq].trim();
    if name.is_empty() {
        let message = "missing variable name before `=`";
        return Err(syntax_error_at(source, start + eq, message));
    }
    let var = name.strip_prefix("vars.").unwrap_or(name);
    if identifier_len(var) != var.len() || var.is_empty() {
        let message = format!("`{name}` is not a variable name: expected `name` or `vars.name`");
        return Err(syntax_error_at(source, start + lead, message));
    }
    if matches!(var, "params" | "vars" | "tasks") {
        let message = format!("cannot assign to `{var}`");
        return Err(syntax_error_at(source, start + lead, message));
    }
    let raw_value = &segment[eq + 1..];
    let value_start = start + eq + 1 + (raw_value.len() - raw_value.trim_start().len());
    let value_src = raw_value.trim();
    if value_src.is_empty() {
        let message = "missing expression after `=`";
        return Err(syntax_error_at(source, start + eq + 1, message));
    }
    let value = Expression::compile(value_src).map_err(|e| e.shifted(source, value_start))?;
    Ok(Assignment { var: var.to_string(), value })
}

/// The byte index of the assignment `=` in `segment`.
fn assignment_eq(segment: &str) -> Option<usize> {
    let b = segment.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                i = string_literal_end(segment, i)?;
                continue;
            }
            b'=' if b.get(i + 1) == Some(&b'=') => i += 1,
            b'=' if i > 0 && matches!(b[i - 1], b'!' | b'<' | b'>') => {}
            b'=' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}
