//! Compiling an [`Expression`]: the `cel` parser on its own thread, and the size and depth
//! limits that keep parsing and evaluation off the end of the stack.

use std::panic;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, IdedExpr};

use super::syntax::{SyntaxError, line_col};

/// The longest expression source accepted, in bytes.
pub const MAX_SOURCE_LEN: usize = 16 * 1024;

/// The deepest expression tree accepted (`a + b + c` is 3 deep, so is `f(g(x))`).
pub const MAX_DEPTH: usize = 32;

/// The stack size of the thread each expression is compiled on.
pub const COMPILER_STACK: usize = 64 << 20;

/// A compiled CEL expression; cheap to clone and shareable between threads.
#[derive(Clone)]
pub struct Expression {
    /// The text compiled, for [`Expression::source`] and error messages.
    pub(super) source: Arc<str>,
    /// The compiled program, run by each evaluation.
    pub(super) program: Arc<cel::Program>,
    /// The scope variables the program reads.
    pub(super) uses: Uses,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source()).finish()
    }
}

impl Expression {
    /// Compiles `source`; see the [module documentation](super) for the limits applied.
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
}

/// Which of the scope's variables an expression references, so the others are not converted.
#[derive(Clone, Copy, Debug)]
pub(super) struct Uses {
    /// `params` is referenced.
    pub(super) params: bool,
    /// `vars` is referenced.
    pub(super) vars: bool,
    /// `tasks` is referenced.
    pub(super) tasks: bool,
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

/// Pushes the keys and values of map or struct `entries` at `depth`.
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
