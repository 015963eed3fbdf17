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
//!
//! - an evaluation is bounded in work: [`budget`] bounds the steps it can take from its tree
//!   and the lengths of the lists it reads, and one over the budget is refused before it runs.
//!
//! One file per concept: `syntax` (errors, positions, string literals), `expression`
//! (compiling and the limits), `bindings` (the scope and the JSON/CEL conversions), `evaluate`,
//! and `assign` (the `name = expr` assignments of loops).

mod assign;
mod bindings;
pub mod budget;
mod evaluate;
mod expression;
mod syntax;
#[cfg(test)]
mod tests;

pub use assign::{Assignment, is_assignment, parse_assignments};
pub use bindings::{Map, Scope, TaskFacts, cel_to_json, json_to_cel};
pub use budget::DEFAULT_STEPS;
pub use evaluate::EvalError;
pub(crate) use evaluate::over_budget;
pub use expression::{COMPILER_STACK, Expression, MAX_DEPTH, MAX_SOURCE_LEN};
pub use syntax::SyntaxError;
pub(crate) use syntax::string_literal_end;
