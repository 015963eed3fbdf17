//! Where an expression is wrong: [`SyntaxError`], positions in the source text, and scanning
//! past CEL string literals.

/// An expression that does not compile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} at line {line}, column {column} of the expression")]
pub struct SyntaxError {
    /// 1-based line within the source.
    pub line: usize,
    /// 1-based column within the line, counted in characters (Unicode scalar values).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl SyntaxError {
    /// An error at 1-based `line` and `column`.
    pub(super) fn new(line: usize, column: usize, message: impl Into<String>) -> Self {
        SyntaxError { line, column, message: message.into() }
    }

    /// Picks the most telling of `cel`'s errors; its positions are already 1-based.
    pub(super) fn from_cel(errors: &cel::ParseErrors) -> Self {
        let best = errors.errors.iter().find(|e| !e.msg.starts_with("Incomplete")).or_else(|| errors.errors.first());
        let Some(e) = best else {
            return SyntaxError::new(1, 1, "invalid expression");
        };
        let message = if e.msg.contains("Recursion limit") {
            "expression nests too deeply".to_string()
        } else {
            e.msg.replacen("Syntax error: ", "syntax error: ", 1)
        };
        let line = usize::try_from(e.pos.0).unwrap_or(1).max(1);
        let column = usize::try_from(e.pos.1).unwrap_or(1).max(1);
        SyntaxError::new(line, column, message)
    }

    /// The byte offset in `source` (the text this error was reported for) of the error,
    /// clamped to `source.len()`.
    pub fn byte_offset_in(&self, source: &str) -> usize {
        let mut line_start = 0;
        for _ in 1..self.line {
            match source[line_start..].find('\n') {
                Some(nl) => line_start += nl + 1,
                None => return source.len(),
            }
        }
        let line = &source[line_start..];
        let line = &line[..line.find('\n').unwrap_or(line.len())];
        let within = line.char_indices().nth(self.column.saturating_sub(1)).map_or(line.len(), |(b, _)| b);
        line_start + within
    }

    /// Moves an error reported for text starting at byte `offset` of `whole` into `whole`.
    pub(super) fn shifted(self, whole: &str, offset: usize) -> Self {
        let (line0, column0) = line_col(whole, offset);
        let column = if self.line == 1 { column0 + self.column - 1 } else { self.column };
        SyntaxError::new(line0 + self.line - 1, column, self.message)
    }
}

/// Given a `'` or `"` at byte `quote` of `src`, the byte just past the CEL string or bytes
/// literal it opens (single or triple quoted, `r` prefix for raw); `None` if unterminated.
pub(crate) fn string_literal_end(src: &str, quote: usize) -> Option<usize> {
    let b = src.as_bytes();
    let q = *b.get(quote)?;
    let prefix_len = b[..quote].iter().rev().take_while(|c| matches!(c, b'r' | b'R' | b'b' | b'B')).count().min(2);
    let prefix = &b[quote - prefix_len..quote];
    let before = quote - prefix_len;
    let is_prefix = before == 0 || !(b[before - 1].is_ascii_alphanumeric() || b[before - 1] == b'_');
    let raw = is_prefix && prefix.iter().any(|c| matches!(c, b'r' | b'R'));
    let triple = b[quote..].starts_with(&[q, q, q]);
    let mut i = quote + if triple { 3 } else { 1 };
    while i < b.len() {
        match b[i] {
            b'\\' if !raw => i += 2,
            b'\n' if !triple => return None,
            c if c == q && (!triple || b[i..].starts_with(&[q, q, q])) => {
                return Some(i + if triple { 3 } else { 1 });
            }
            _ => i += 1,
        }
    }
    None
}

/// The 1-based line and character column of byte `offset` of `source`.
pub(super) fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// A [`SyntaxError`] at byte `offset` of `source`.
pub(super) fn syntax_error_at(source: &str, offset: usize, message: impl Into<String>) -> SyntaxError {
    let (line, column) = line_col(source, offset);
    SyntaxError::new(line, column, message)
}
