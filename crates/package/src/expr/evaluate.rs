//! Evaluating a compiled [`Expression`] against a [`Scope`], and the [`EvalError`] it fails with.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use serde_json::Value as Json;

use super::bindings::{Scope, cel_to_json, map_to_cel, tasks_to_cel};
use super::budget::{self, DEFAULT_STEPS};
use super::expression::Expression;

/// An expression that compiled but failed to evaluate.
#[derive(Debug, Clone, thiserror::Error)]
#[error("expression `{expression}` failed: {reason}")]
pub struct EvalError {
    /// The source of the expression.
    pub expression: String,
    /// Why it failed.
    pub reason: String,
}

impl Expression {
    /// Evaluates the expression against `scope` within the [`DEFAULT_STEPS`] budget.
    pub fn evaluate(&self, scope: &Scope) -> Result<Json, EvalError> {
        self.evaluate_within(scope, DEFAULT_STEPS)
    }

    /// Evaluates the expression against `scope`, requiring a bool result, within the
    /// [`DEFAULT_STEPS`] budget.
    pub fn evaluate_bool(&self, scope: &Scope) -> Result<bool, EvalError> {
        self.evaluate_bool_within(scope, DEFAULT_STEPS)
    }

    /// Evaluates the expression against `scope`; refused without running when its bound on
    /// the steps it can take (see [`super::budget`]) is over `budget`.
    pub fn evaluate_within(&self, scope: &Scope, budget: u64) -> Result<Json, EvalError> {
        let value = self.execute(scope, budget)?;
        cel_to_json(&value).map_err(|reason| self.error(reason))
    }

    /// [`Expression::evaluate_within`] requiring a bool result.
    pub fn evaluate_bool_within(&self, scope: &Scope, budget: u64) -> Result<bool, EvalError> {
        match self.execute(scope, budget)? {
            cel::Value::Bool(b) => Ok(b),
            other => {
                let shown = cel_to_json(&other).map(|j| j.to_string()).unwrap_or_else(|_| format!("{other:?}"));
                Err(self.error(format!("expected a bool result, got {} {}", other.type_of(), truncate(&shown, 80))))
            }
        }
    }

    /// The bound on the steps the expression takes with the lists written in it alone (the
    /// inputs taken as empty): what can be checked when the package loads.
    pub fn static_steps(&self) -> u64 {
        budget::steps(self.program.expression(), 0)
    }

    fn execute(&self, scope: &Scope, budget: u64) -> Result<cel::Value, EvalError> {
        let input_len = budget::input_len(scope, self.uses.params, self.uses.vars, self.uses.tasks);
        let steps = budget::steps(self.program.expression(), input_len);
        if steps > budget {
            return Err(self.error(over_budget(steps, budget)));
        }
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

/// The reason an expression over its work budget is refused, naming the budget.
pub(crate) fn over_budget(steps: u64, budget: u64) -> String {
    format!(
        "it may take up to {steps} evaluation steps with the lists it reads, over the budget expression_steps = \
         {budget} ([limits]); iterate over shorter lists or nest fewer comprehensions"
    )
}

/// The standard CEL environment, built once: building it registers every standard function.
fn stdlib() -> Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(cel::Env::stdlib())).clone()
}

/// `text` cut to `max_chars` characters, with `…` when something was cut.
fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
