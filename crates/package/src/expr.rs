//! CEL expressions over params, vars and task facts.
//!
//! An [`Expression`] is compiled once and evaluated many times against a [`Scope`], which
//! exposes three variables to the expression:
//!
//! - `params`: the package parameters (`params.run_date`),
//! - `vars`: the package variables (`vars.file`),
//! - `tasks`: one object per task (`tasks["Load"].result == "success"`) with the fields
//!   `result` (`"success"`, `"failure"`, `"completion"`, `"canceled"` or `"not_run"`),
//!   `exit_code` (int or null), `duration_ms` (int) and `output` (string).
//!
//! Values cross the boundary as [`serde_json::Value`], see [`json_to_cel`] and [`cel_to_json`].
//!
//! # Robustness
//!
//! No input makes [`Expression::compile`] panic or overflow the stack:
//!
//! - the `cel` parser is recursive and needs far more stack than a worker thread has (a
//!   debug build overflows 2 MiB with a dozen nested parentheses), so it runs on a short-lived
//!   thread with a [`COMPILER_STACK`] stack; its own recursion limit bounds what that needs;
//! - it is also wrapped in [`std::panic::catch_unwind`], so that a panic inside `cel` (none
//!   is known) becomes a [`SyntaxError`] rather than taking the engine down;
//! - sources longer than [`MAX_SOURCE_LEN`] and expressions nested deeper than [`MAX_DEPTH`]
//!   are rejected, because `cel`'s interpreter recurses on the caller's stack once per level.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::objects::Key;
use indexmap::IndexMap;
use serde_json::Value as Json;

/// Parameters or variables: a name to a JSON value, in declaration order.
pub type Map = IndexMap<String, Json>;

/// The longest expression source accepted, in bytes.
pub const MAX_SOURCE_LEN: usize = 16 * 1024;

/// The deepest expression tree accepted (`a + b + c` is 3 deep, so is `f(g(x))`).
pub const MAX_DEPTH: usize = 32;

/// The stack size of the thread each expression is compiled on.
pub const COMPILER_STACK: usize = 64 << 20;

/// What an expression can know about one task, as `tasks["<name>"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFacts {
    /// `"success"`, `"failure"`, `"completion"`, `"canceled"` or `"not_run"`.
    pub result: String,
    /// The exit code of the task's process, if it ran one and it exited.
    pub exit_code: Option<i64>,
    /// How long the task ran, in milliseconds.
    pub duration_ms: u64,
    /// The task's captured output.
    pub output: String,
}

/// The variables an expression is evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Bound to `params`.
    pub params: &'a Map,
    /// Bound to `vars`.
    pub vars: &'a Map,
    /// Bound to `tasks`.
    pub tasks: &'a IndexMap<String, TaskFacts>,
}

/// A compiled CEL expression; cheap to clone and shareable between threads.
#[derive(Clone)]
pub struct Expression {
    source: Arc<str>,
    program: Arc<cel::Program>,
    uses: Uses,
}

/// Which of the scope's variables an expression references, so the others are not converted.
#[derive(Clone, Copy, Debug)]
struct Uses {
    params: bool,
    vars: bool,
    tasks: bool,
}

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

/// An expression that compiled but failed to evaluate.
#[derive(Debug, Clone, thiserror::Error)]
#[error("expression `{expression}` failed: {reason}")]
pub struct EvalError {
    /// The source of the expression.
    pub expression: String,
    /// Why it failed.
    pub reason: String,
}

/// An assignment `name = expr` as in SSIS For Loop InitExpression / AssignExpression.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// The variable assigned, without any `vars.` prefix.
    pub var: String,
    /// The value assigned.
    pub value: Expression,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source()).finish()
    }
}

impl Expression {
    /// Compiles `source`; see the [module documentation](self) for the limits applied.
    pub fn compile(source: &str) -> Result<Expression, SyntaxError> {
        if source.trim().is_empty() {
            return Err(SyntaxError::new(1, 1, "empty expression"));
        }
        if source.len() > MAX_SOURCE_LEN {
            let message = format!("expression is longer than {MAX_SOURCE_LEN} bytes");
            return Err(SyntaxError::new(1, 1, message));
        }
        let (program, uses) = std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new()
                .name("cel-compile".into())
                .stack_size(COMPILER_STACK)
                .spawn_scoped(scope, || compile_here(source));
            match spawned {
                Ok(handle) => {
                    handle.join().unwrap_or_else(|_| Err(SyntaxError::new(1, 1, "the CEL parser failed on this input")))
                }
                Err(e) => Err(SyntaxError::new(1, 1, format!("could not start the expression compiler: {e}"))),
            }
        })?;
        Ok(Expression { source: source.into(), program: Arc::new(program), uses })
    }

    /// The source the expression was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the expression against `scope`.
    pub fn evaluate(&self, scope: &Scope) -> Result<Json, EvalError> {
        let value = self.execute(scope)?;
        cel_to_json(&value).map_err(|reason| self.error(reason))
    }

    /// Evaluates the expression against `scope`, requiring a bool result.
    pub fn evaluate_bool(&self, scope: &Scope) -> Result<bool, EvalError> {
        match self.execute(scope)? {
            cel::Value::Bool(b) => Ok(b),
            other => {
                let shown = cel_to_json(&other).map(|j| j.to_string()).unwrap_or_else(|_| format!("{other:?}"));
                Err(self.error(format!("expected a bool result, got {} {}", other.type_of(), truncate(&shown, 80))))
            }
        }
    }

    fn execute(&self, scope: &Scope) -> Result<cel::Value, EvalError> {
        let mut ctx = cel::Context::with_env(stdlib());
        if self.uses.params {
            ctx.add_variable_from_value("params", map_to_cel(scope.params));
        }
        if self.uses.vars {
            ctx.add_variable_from_value("vars", map_to_cel(scope.vars));
        }
        if self.uses.tasks {
            ctx.add_variable_from_value("tasks", tasks_to_cel(scope.tasks));
        }
        match panic::catch_unwind(AssertUnwindSafe(|| self.program.execute(&ctx))) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.error(e.to_string())),
            Err(_) => Err(self.error("the CEL interpreter panicked".into())),
        }
    }

    fn error(&self, reason: String) -> EvalError {
        EvalError { expression: self.source.to_string(), reason }
    }
}

/// The standard CEL environment, built once: building it registers every standard function.
fn stdlib() -> Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(cel::Env::stdlib())).clone()
}

/// Parses and checks `source`; runs on the compiler thread.
fn compile_here(source: &str) -> Result<(cel::Program, Uses), SyntaxError> {
    // `cel` is not known to panic, but a parser bug must not take the engine down.
    let program = match panic::catch_unwind(|| cel::Program::compile(source)) {
        Ok(Ok(program)) => program,
        Ok(Err(errors)) => return Err(SyntaxError::from_cel(&errors)),
        Err(_) => return Err(SyntaxError::new(1, 1, "the CEL parser failed on this input")),
    };
    if let Some(id) = too_deep(program.expression()) {
        let at = program.source_info().offset_for(id).map_or(0, |(start, _)| start as usize);
        let byte = source.char_indices().nth(at).map_or(source.len(), |(b, _)| b);
        let (line, column) = line_col(source, byte);
        let message = format!("expression nests more than {MAX_DEPTH} levels deep");
        return Err(SyntaxError::new(line, column, message));
    }
    let refs = program.references();
    let uses = Uses {
        params: refs.has_variable("params"),
        vars: refs.has_variable("vars"),
        tasks: refs.has_variable("tasks"),
    };
    Ok((program, uses))
}

/// The id of a node deeper than [`MAX_DEPTH`], if any; iterative, so it cannot overflow.
fn too_deep(root: &IdedExpr) -> Option<u64> {
    let mut stack = vec![(root, 1usize)];
    while let Some((node, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Some(node.id);
        }
        let next = depth + 1;
        match &node.expr {
            Expr::Call(call) => {
                stack.extend(call.target.iter().map(|t| (&**t, next)));
                stack.extend(call.args.iter().map(|a| (a, next)));
            }
            Expr::Comprehension(c) => {
                let parts = [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result];
                stack.extend(parts.into_iter().map(|e| (e, next)));
            }
            Expr::List(list) => stack.extend(list.elements.iter().map(|e| (e, next))),
            Expr::Map(map) => push_entries(&mut stack, &map.entries, next),
            Expr::Struct(s) => push_entries(&mut stack, &s.entries, next),
            Expr::Select(select) => stack.push((&select.operand, next)),
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    None
}

fn push_entries<'e>(
    stack: &mut Vec<(&'e IdedExpr, usize)>,
    entries: &'e [cel::common::ast::IdedEntryExpr],
    depth: usize,
) {
    for entry in entries {
        match &entry.expr {
            EntryExpr::MapEntry(e) => stack.extend([(&e.key, depth), (&e.value, depth)]),
            EntryExpr::StructField(f) => stack.push((&f.value, depth)),
        }
    }
}

impl SyntaxError {
    fn new(line: usize, column: usize, message: impl Into<String>) -> Self {
        SyntaxError { line, column, message: message.into() }
    }

    /// Picks the most telling of `cel`'s errors; its positions are already 1-based.
    fn from_cel(errors: &cel::ParseErrors) -> Self {
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
    fn shifted(self, whole: &str, offset: usize) -> Self {
        let (line0, column0) = line_col(whole, offset);
        let column = if self.line == 1 { column0 + self.column - 1 } else { self.column };
        SyntaxError::new(line0 + self.line - 1, column, self.message)
    }
}

/// The 1-based line and character column of byte `offset` of `source`.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn syntax_error_at(source: &str, offset: usize, message: impl Into<String>) -> SyntaxError {
    let (line, column) = line_col(source, offset);
    SyntaxError::new(line, column, message)
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
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

fn identifier_len(s: &str) -> usize {
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        return 0;
    }
    s.bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'_').count()
}

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

/// Converts a JSON value to CEL: integers become `int` (`uint` beyond `i64`), objects maps.
pub fn json_to_cel(value: &Json) -> cel::Value {
    match value {
        Json::Null => cel::Value::Null,
        Json::Bool(b) => cel::Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => n.as_f64().map_or(cel::Value::Null, cel::Value::Float),
        },
        Json::String(s) => cel::Value::String(Arc::new(s.clone())),
        Json::Array(items) => cel::Value::List(Arc::new(items.iter().map(json_to_cel).collect())),
        Json::Object(fields) => cel_map(fields.iter().map(|(k, v)| (k.clone(), json_to_cel(v)))),
    }
}

fn cel_map(entries: impl Iterator<Item = (String, cel::Value)>) -> cel::Value {
    let map = entries.map(|(k, v)| (Key::String(Arc::new(k)), v)).collect();
    cel::Value::Map(cel::objects::Map { map: Arc::new(map) })
}

fn map_to_cel(map: &Map) -> cel::Value {
    cel_map(map.iter().map(|(k, v)| (k.clone(), json_to_cel(v))))
}

fn tasks_to_cel(tasks: &IndexMap<String, TaskFacts>) -> cel::Value {
    cel_map(tasks.iter().map(|(name, facts)| {
        let duration = i64::try_from(facts.duration_ms).map_or(cel::Value::UInt(facts.duration_ms), cel::Value::Int);
        let fields = [
            ("result", cel::Value::String(Arc::new(facts.result.clone()))),
            ("exit_code", facts.exit_code.map_or(cel::Value::Null, cel::Value::Int)),
            ("duration_ms", duration),
            ("output", cel::Value::String(Arc::new(facts.output.clone()))),
        ];
        let fields = fields.into_iter().map(|(k, v)| (k.to_string(), v));
        (name.clone(), cel_map(fields))
    }))
}

/// Converts a CEL value to JSON; map keys are stringified (and sorted, as CEL maps are
/// unordered), timestamps and durations become their CEL string forms (`"2024-01-01T00:00:00Z"`,
/// `"1.5s"`) and bytes a lossy UTF-8 string. Fails on non-finite floats and on values with
/// no JSON form (types, functions, optionals).
pub fn cel_to_json(value: &cel::Value) -> Result<Json, String> {
    Ok(match value {
        cel::Value::Null => Json::Null,
        cel::Value::Bool(b) => Json::Bool(*b),
        cel::Value::Int(i) => Json::from(*i),
        cel::Value::UInt(u) => Json::from(*u),
        cel::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| format!("the result {f} is not a finite number"))?,
        cel::Value::String(s) => Json::String(s.to_string()),
        cel::Value::Bytes(b) => Json::String(String::from_utf8_lossy(b).into_owned()),
        cel::Value::List(items) => Json::Array(items.iter().map(cel_to_json).collect::<Result<_, _>>()?),
        cel::Value::Map(map) => {
            let mut entries = map
                .map
                .iter()
                .map(|(k, v)| Ok((key_string(k), cel_to_json(v)?)))
                .collect::<Result<Vec<_>, String>>()?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Object(entries.into_iter().collect())
        }
        cel::Value::Timestamp(t) => {
            Json::String(t.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }
        cel::Value::Duration(d) => Json::String(duration_string(d)),
        other => return Err(format!("a {} value has no JSON form", other.type_of())),
    })
}

fn key_string(key: &Key) -> String {
    match key {
        Key::String(s) => s.to_string(),
        Key::Int(i) => i.to_string(),
        Key::Uint(u) => u.to_string(),
        Key::Bool(b) => b.to_string(),
    }
}

/// CEL's `string(duration)`: whole seconds plus a trimmed fraction, e.g. `"1.5s"`.
fn duration_string(d: &chrono::Duration) -> String {
    let (secs, nanos) = (d.num_seconds(), d.subsec_nanos());
    let sign = if secs < 0 || nanos < 0 { "-" } else { "" };
    let (secs, nanos) = (secs.unsigned_abs(), nanos.unsigned_abs());
    if nanos == 0 {
        format!("{sign}{secs}s")
    } else {
        let frac = format!("{nanos:09}");
        format!("{sign}{secs}.{}s", frac.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fixture {
        params: Map,
        vars: Map,
        tasks: IndexMap<String, TaskFacts>,
    }

    impl Fixture {
        fn new() -> Self {
            let mut params = Map::new();
            params.insert("run_date".into(), json!("2024-05-01"));
            params.insert("retries".into(), json!(3));
            params.insert("big".into(), json!(u64::MAX));
            let mut vars = Map::new();
            vars.insert("file".into(), json!("a.csv"));
            vars.insert("i".into(), json!(2));
            vars.insert("list".into(), json!([1, "two", null, {"k": true}]));
            let mut tasks = IndexMap::new();
            let load = TaskFacts {
                result: "success".into(),
                exit_code: Some(0),
                duration_ms: 1500,
                output: "loaded 10 rows".into(),
            };
            tasks.insert("Load".to_string(), load);
            let skipped = TaskFacts { result: "not_run".into(), ..TaskFacts::default() };
            tasks.insert("Skipped".to_string(), skipped);
            Fixture { params, vars, tasks }
        }

        fn scope(&self) -> Scope<'_> {
            Scope { params: &self.params, vars: &self.vars, tasks: &self.tasks }
        }

        fn eval(&self, source: &str) -> Result<Json, EvalError> {
            Expression::compile(source).unwrap().evaluate(&self.scope())
        }

        fn eval_bool(&self, source: &str) -> Result<bool, EvalError> {
            Expression::compile(source).unwrap().evaluate_bool(&self.scope())
        }
    }

    #[test]
    fn expression_is_send_sync_clone() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<Expression>();
        assert_traits::<SyntaxError>();
        assert_traits::<EvalError>();
    }

    #[test]
    fn accesses_params_vars_and_tasks() {
        let f = Fixture::new();
        assert_eq!(f.eval("params.run_date").unwrap(), json!("2024-05-01"));
        assert_eq!(f.eval("vars.file").unwrap(), json!("a.csv"));
        assert_eq!(f.eval("params.retries + vars.i").unwrap(), json!(5));
        assert_eq!(f.eval("params.big").unwrap(), json!(u64::MAX));
        assert_eq!(f.eval("vars.list").unwrap(), json!([1, "two", null, {"k": true}]));
        assert_eq!(f.eval("tasks.Load.exit_code").unwrap(), json!(0));
        assert_eq!(f.eval("tasks.Skipped.exit_code").unwrap(), json!(null));
        assert_eq!(f.eval("tasks['Load'].duration_ms").unwrap(), json!(1500));
        assert_eq!(f.eval("tasks.Load.output").unwrap(), json!("loaded 10 rows"));
        assert!(f.eval_bool(r#"tasks["Load"].result == "success""#).unwrap());
        assert!(!f.eval_bool("tasks.Skipped.result == 'success'").unwrap());
        assert!(f.eval_bool("tasks.Load.output.contains('10') && vars.i > 1").unwrap());
        assert!(f.eval_bool("'Load' in tasks && !('Nope' in tasks)").unwrap());
        assert!(f.eval_bool("has(vars.file) && !has(vars.missing)").unwrap());
        assert!(f.eval_bool("tasks.all(t, t != '')").unwrap());
        assert_eq!(f.eval("{'b': 1, 'a': [1.5]}").unwrap(), json!({"a": [1.5], "b": 1}));
        assert_eq!(f.eval("duration('1500ms')").unwrap(), json!("1.5s"));
        let ts = f.eval("timestamp('2024-05-01T10:00:00+02:00')").unwrap();
        assert_eq!(ts, json!("2024-05-01T08:00:00Z"));
        assert_eq!(f.eval("b'hi'").unwrap(), json!("hi"));
    }

    #[test]
    fn evaluates_many_times_without_recompiling() {
        let f = Fixture::new();
        let expr = Expression::compile("vars.i * 2").unwrap();
        let copy = expr.clone();
        for _ in 0..3 {
            assert_eq!(copy.evaluate(&f.scope()).unwrap(), json!(4));
        }
        assert_eq!(expr.source(), "vars.i * 2");
        assert_eq!(format!("{expr:?}"), r#"Expression("vars.i * 2")"#);
    }

    #[test]
    fn evaluate_bool_rejects_other_types() {
        let f = Fixture::new();
        let err = f.eval_bool("1 + 2").unwrap_err();
        assert_eq!(err.expression, "1 + 2");
        assert_eq!(err.reason, "expected a bool result, got int 3");
        let err = f.eval_bool("vars.file").unwrap_err();
        assert!(err.reason.contains("got string \"a.csv\""), "{err}");
        let err = f.eval_bool("tasks.Skipped.exit_code").unwrap_err();
        assert!(err.reason.contains("got null"), "{err}");
    }

    #[test]
    fn unknown_names_fail_with_the_expression_text() {
        let f = Fixture::new();
        let err = f.eval("vars.nope == 1").unwrap_err();
        assert!(err.reason.contains("nope"), "{err}");
        assert!(err.to_string().starts_with("expression `vars.nope == 1` failed:"), "{err}");
        let err = f.eval("tasks.Missing.result").unwrap_err();
        assert!(err.to_string().contains("`tasks.Missing.result`"), "{err}");
        assert!(err.reason.contains("Missing"), "{err}");
        let err = f.eval("foo + 1").unwrap_err();
        assert!(err.reason.contains("foo"), "{err}");
        let err = f.eval("1 / 0").unwrap_err();
        assert!(err.reason.contains("zero"), "{err}");
        let err = f.eval("1.0 / 0.0").unwrap_err();
        assert!(err.reason.contains("not a finite number"), "{err}");
    }

    #[test]
    fn syntax_error_positions_are_one_based() {
        let err = Expression::compile("((").unwrap_err();
        assert_eq!((err.line, err.column), (1, 3));
        let err = Expression::compile("a ===").unwrap_err();
        assert_eq!((err.line, err.column), (1, 5));
        let err = Expression::compile("}}").unwrap_err();
        assert_eq!((err.line, err.column), (1, 1));
        let err = Expression::compile("vars.a &&\n  && vars.b").unwrap_err();
        assert_eq!((err.line, err.column), (2, 3));
        assert!(err.message.contains("syntax error"), "{err}");
        assert!(err.to_string().ends_with("at line 2, column 3 of the expression"), "{err}");
        // Columns count characters, not bytes.
        let err = Expression::compile("'é' + )").unwrap_err();
        assert_eq!((err.line, err.column), (1, 7));
        assert_eq!(err.byte_offset_in("'é' + )"), 7);
        let err = Expression::compile("  \n ").unwrap_err();
        assert_eq!(err, SyntaxError::new(1, 1, "empty expression"));
    }

    #[test]
    fn limits_are_syntax_errors_not_crashes() {
        for source in [
            "(".repeat(5000),
            "[".repeat(200) + &"]".repeat(200),
            "-(".repeat(60) + "1" + &")".repeat(60),
            "size(".repeat(100) + &")".repeat(100),
            vec!["1"; 200].join(" + "),
            "vars".to_string() + &".a".repeat(5000),
            "x".repeat(MAX_SOURCE_LEN + 1),
        ] {
            assert!(Expression::compile(&source).is_err(), "{}", &source[..20]);
        }
        let f = Fixture::new();
        let deepest = vec!["1"; MAX_DEPTH].join(" + ");
        assert_eq!(f.eval(&deepest).unwrap(), json!(MAX_DEPTH));
        let err = Expression::compile(&vec!["1"; MAX_DEPTH + 1].join(" + ")).unwrap_err();
        assert!(err.message.contains("levels deep"), "{err}");
        let nested = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(f.eval(&nested).is_ok());
        // `&&` chains are balanced by the parser, so long ones are fine.
        assert!(f.eval_bool(&vec!["true"; 500].join(" && ")).unwrap());
    }

    #[test]
    fn deepest_accepted_expressions_evaluate() {
        // The interpreter recurses on the caller's stack: the deepest expressions accepted
        // must evaluate on a 2 MiB test thread, unoptimised.
        let f = Fixture::new();
        let shapes: [(&str, &str, &str); 6] = [
            ("[1].all(x, ", "true", ")"),
            ("{'a': ", "1", "}"),
            ("size(", "'x'", ")"),
            ("(true ? ", "1", " : 2)"),
            ("-(", "1", ")"),
            ("[vars.i].map(y, ", "[y]", ")"),
        ];
        for (open, inner, close) in shapes {
            let mut accepted = 0;
            for n in 1..=MAX_DEPTH {
                let source = open.repeat(n) + inner + &close.repeat(n);
                let Ok(expr) = Expression::compile(&source) else {
                    break;
                };
                accepted = n;
                let _ = expr.evaluate(&f.scope());
            }
            assert!(accepted >= 4, "{open}: {accepted}");
        }
    }

    #[test]
    fn nasty_inputs_do_not_panic() {
        let f = Fixture::new();
        for source in [
            "((",
            "a ===",
            "'unterminated",
            "}}",
            "{{",
            "é + ",
            "🎉🎉",
            "\u{0}",
            "\"abc",
            "'''",
            "r'",
            "b'\\xzz'",
            "x ? y",
            "a[",
            "has(a)",
            "9999999999999999999999",
            "1.0.0",
            "..",
            "-9223372036854775808 / -1",
            "vars.i = 1",
            "params.x ==",
            "\\",
            "@#$`",
            ";",
            "timestamp('bad')",
            "[1][5]",
            "int(1e300)",
            "'(' .matches('(')",
            "{'a':1,'a':2}",
        ] {
            if let Ok(expr) = Expression::compile(source) {
                let _ = expr.evaluate(&f.scope());
                let _ = expr.evaluate_bool(&f.scope());
            }
        }
    }

    #[test]
    fn parses_assignments() {
        let f = Fixture::new();
        let list = parse_assignments("i = 0").unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].var, "i");
        assert_eq!(list[0].value.source(), "0");
        let list = parse_assignments("vars.i = vars.i + 1").unwrap();
        assert_eq!(list[0].var, "i");
        assert_eq!(list[0].value.evaluate(&f.scope()).unwrap(), json!(3));
        let list = parse_assignments("i = 0; total = 10;").unwrap();
        let names: Vec<_> = list.iter().map(|a| a.var.as_str()).collect();
        assert_eq!(names, ["i", "total"]);
        let list = parse_assignments("done = vars.i == 2 || vars.i != 3 && 1 <= 2 && 2 >= 1").unwrap();
        assert_eq!(list[0].var, "done");
        assert_eq!(list[0].value.evaluate(&f.scope()).unwrap(), json!(true));
        let list = parse_assignments("s = 'a;b = c' + \"=;\"; t = [1, 2]").unwrap();
        assert_eq!(list[0].value.evaluate(&f.scope()).unwrap(), json!("a;b = c=;"));
        assert_eq!(list[1].value.source(), "[1, 2]");
    }

    #[test]
    fn assignment_errors_have_positions_in_the_whole_source() {
        let err = parse_assignments("i == 0").unwrap_err();
        assert!(err.message.contains("no `=`"), "{err}");
        assert_eq!((err.line, err.column), (1, 1));
        let err = parse_assignments("i = 0;  2x = 1").unwrap_err();
        assert!(err.message.contains("`2x` is not a variable name"), "{err}");
        assert_eq!((err.line, err.column), (1, 9));
        let err = parse_assignments("params.x = 1").unwrap_err();
        assert!(err.message.contains("not a variable name"), "{err}");
        let err = parse_assignments("i = 0; j = (1 +").unwrap_err();
        assert_eq!((err.line, err.column), (1, 16));
        let err = parse_assignments("i = 0;\nj = }").unwrap_err();
        assert_eq!((err.line, err.column), (2, 5));
        let err = parse_assignments("i =").unwrap_err();
        assert!(err.message.contains("missing expression"), "{err}");
        let err = parse_assignments(" = 1").unwrap_err();
        assert!(err.message.contains("missing variable name"), "{err}");
        assert!(parse_assignments(" ; ").is_err());
        assert!(parse_assignments("vars = 1").is_err());
    }

    #[test]
    fn recognises_assignments() {
        assert!(is_assignment("i = 0"));
        assert!(is_assignment("  vars.i=vars.i + 1"));
        assert!(is_assignment("total = 1; i = 2"));
        assert!(!is_assignment("i == 0"));
        assert!(!is_assignment("vars.i > 0"));
        assert!(!is_assignment("params.x = 1"));
        assert!(!is_assignment("2 = 1"));
        assert!(!is_assignment(""));
    }

    #[test]
    fn string_literals_are_skipped() {
        let end = |s: &str| string_literal_end(s, s.find(['\'', '"']).unwrap());
        assert_eq!(end("'a\\'b' x"), Some(6));
        assert_eq!(end("r'a\\' x"), Some(5));
        assert_eq!(end("'''a'b''' x"), Some(9));
        assert_eq!(end("\"a\nb\""), None);
        assert_eq!(end("'open"), None);
    }
}
