//! Precedence constraints at run time: whether one constraint holds once its task has ended,
//! and whether a task's constraints together let it run.

use crate::expr::Scope;
use crate::model::{Constraint, ConstraintValue, EvalOp, Join, TaskResult};

/// What one constraint says once its precedence task has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConstraintState {
    /// It holds.
    Holds,
    /// It does not hold.
    Fails,
    /// Its expression could not be evaluated: the constrained task fails.
    Error(String),
}

/// Evaluates a constraint on a task that ended with `result`. A task that never ran (or was
/// canceled) satisfies no constraint, whatever its expression says. The expression is only
/// evaluated when it can change the outcome.
#[cfg(test)]
pub(crate) fn evaluate(constraint: &Constraint, result: TaskResult, scope: &dyn Fn() -> ScopeValue) -> ConstraintState {
    evaluate_with(constraint, result, || match &constraint.when {
        Some(e) => e.evaluate_bool(&scope().scope()).map_err(|err| err.to_string()),
        None => Ok(true),
    })
}

/// Whether deciding `constraint` on a task that ended with `result` evaluates its `when`.
pub(crate) fn wants_expression(constraint: &Constraint, result: TaskResult) -> bool {
    if constraint.when.is_none() || matches!(result, TaskResult::NotRun | TaskResult::Canceled) {
        return false;
    }
    match constraint.eval {
        EvalOp::Constraint => false,
        EvalOp::Expression => true,
        EvalOp::And => value_holds(constraint, result),
        EvalOp::Or => !value_holds(constraint, result),
    }
}

fn value_holds(constraint: &Constraint, result: TaskResult) -> bool {
    match constraint.on {
        ConstraintValue::Success => result == TaskResult::Success,
        ConstraintValue::Failure => result == TaskResult::Failure,
        ConstraintValue::Completion => true,
    }
}

/// [`evaluate`] with the expression's value given by `expression` (called at most once, only
/// when [`wants_expression`] says so).
pub(crate) fn evaluate_with(
    constraint: &Constraint,
    result: TaskResult,
    expression: impl FnOnce() -> Result<bool, String>,
) -> ConstraintState {
    if matches!(result, TaskResult::NotRun | TaskResult::Canceled) {
        return ConstraintState::Fails;
    }
    let value_holds = value_holds(constraint, result);
    let holds = match constraint.eval {
        EvalOp::Constraint => Ok(value_holds),
        EvalOp::Expression => expression(),
        EvalOp::And => {
            if value_holds {
                expression()
            } else {
                Ok(false)
            }
        }
        EvalOp::Or => {
            if value_holds {
                Ok(true)
            } else {
                expression()
            }
        }
    };
    match holds {
        Ok(true) => ConstraintState::Holds,
        Ok(false) => ConstraintState::Fails,
        Err(reason) => ConstraintState::Error(format!("precedence constraint on \"{}\": {reason}", constraint.task)),
    }
}

/// The owned data an expression scope borrows.
pub(crate) struct ScopeValue {
    pub params: std::sync::Arc<crate::expr::Map>,
    pub vars: std::sync::Arc<crate::expr::Map>,
    pub tasks: indexmap::IndexMap<String, crate::expr::TaskFacts>,
}

impl ScopeValue {
    /// The scope expressions see.
    pub fn scope(&self) -> Scope<'_> {
        Scope { params: &self.params, vars: &self.vars, tasks: &self.tasks }
    }
}

/// What a task's constraints decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Not yet known: some constraints wait for their tasks.
    Wait,
    /// Run the task.
    Run,
    /// Do not run it.
    NotRun,
    /// An expression failed: the task fails without running.
    Fail(String),
}

/// Collects the states of one task's constraints and decides once, as early as possible.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    join: Join,
    total: usize,
    holding: usize,
    failing: usize,
    decided: bool,
}

impl Gate {
    /// A gate for `total` constraints combined by `join`.
    pub fn new(join: Join, total: usize) -> Self {
        Self { join, total, holding: 0, failing: 0, decided: false }
    }

    /// True once a decision other than Wait was returned.
    pub fn decided(&self) -> bool {
        self.decided
    }

    /// Records one constraint's state; returns the decision if this settles it (only once).
    pub fn record(&mut self, state: ConstraintState) -> Decision {
        if self.decided {
            return Decision::Wait;
        }
        let decision = match state {
            ConstraintState::Error(message) => Decision::Fail(message),
            ConstraintState::Holds => {
                self.holding += 1;
                match self.join {
                    Join::Any => Decision::Run,
                    Join::All if self.holding == self.total => Decision::Run,
                    Join::All => Decision::Wait,
                }
            }
            ConstraintState::Fails => {
                self.failing += 1;
                match self.join {
                    Join::All => Decision::NotRun,
                    Join::Any if self.failing == self.total => Decision::NotRun,
                    Join::Any => Decision::Wait,
                }
            }
        };
        self.decided = decision != Decision::Wait;
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{Expression, Map, TaskFacts};
    use std::sync::Arc;

    fn constraint(on: ConstraintValue, when: Option<&str>, eval: EvalOp) -> Constraint {
        Constraint {
            task: "A".into(),
            index: 0,
            on,
            when: when.map(|w| Expression::compile(w).expect("valid test expression")),
            eval,
        }
    }

    fn no_scope() -> ScopeValue {
        ScopeValue { params: Arc::new(Map::new()), vars: Arc::new(Map::new()), tasks: Default::default() }
    }

    fn scope_with_flag(flag: bool) -> ScopeValue {
        let mut params = Map::new();
        params.insert("flag".into(), serde_json::Value::Bool(flag));
        let mut tasks = indexmap::IndexMap::new();
        tasks.insert(
            "A".into(),
            TaskFacts { result: "success".into(), exit_code: Some(0), duration_ms: 1, output: "ok".into() },
        );
        ScopeValue { params: Arc::new(params), vars: Arc::new(Map::new()), tasks }
    }

    use ConstraintState::{Fails, Holds};
    use ConstraintValue::{Completion, Failure, Success};
    use TaskResult as R;

    /// The value table of the SSIS precedence-constraint documentation.
    #[test]
    fn constraint_values_match_results_as_in_ssis() {
        let cases = [
            (Success, R::Success, Holds),
            (Success, R::Failure, Fails),
            (Failure, R::Failure, Holds),
            (Failure, R::Success, Fails),
            (Completion, R::Success, Holds),
            (Completion, R::Failure, Holds),
            (Completion, R::Completion, Holds),
            (Success, R::Completion, Fails),
            (Success, R::NotRun, Fails),
            (Completion, R::NotRun, Fails),
            (Completion, R::Canceled, Fails),
        ];
        for (on, result, expected) in cases {
            assert_eq!(
                evaluate(&constraint(on, None, EvalOp::Constraint), result, &no_scope),
                expected,
                "{on:?} after {result:?}"
            );
        }
    }

    #[test]
    fn eval_modes_combine_value_and_expression() {
        let cases = [
            (EvalOp::Expression, R::Failure, true, Holds),
            (EvalOp::Expression, R::Success, false, Fails),
            (EvalOp::And, R::Success, true, Holds),
            (EvalOp::And, R::Success, false, Fails),
            (EvalOp::And, R::Failure, true, Fails),
            (EvalOp::Or, R::Failure, true, Holds),
            (EvalOp::Or, R::Success, false, Holds),
            (EvalOp::Or, R::Failure, false, Fails),
        ];
        for (eval, result, flag, expected) in cases {
            let c = constraint(Success, Some("params.flag"), eval);
            assert_eq!(
                evaluate(&c, result, &|| scope_with_flag(flag)),
                expected,
                "{eval:?} after {result:?} with flag {flag}"
            );
        }
    }

    #[test]
    fn expressions_see_the_precedence_task_and_fail_with_their_text() {
        let c = constraint(Success, Some("tasks[\"A\"].output == \"ok\""), EvalOp::Expression);
        assert_eq!(evaluate(&c, R::Success, &|| scope_with_flag(true)), Holds);
        let bad = constraint(Success, Some("params.missing > 1"), EvalOp::Expression);
        match evaluate(&bad, R::Success, &no_scope) {
            ConstraintState::Error(m) => assert!(m.contains("params.missing > 1"), "{m}"),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn all_join_runs_when_every_constraint_holds_and_skips_at_the_first_that_fails() {
        let mut gate = Gate::new(Join::All, 3);
        assert_eq!(gate.record(Holds), Decision::Wait);
        assert_eq!(gate.record(Holds), Decision::Wait);
        assert_eq!(gate.record(Holds), Decision::Run);
        let mut gate = Gate::new(Join::All, 3);
        assert_eq!(gate.record(Holds), Decision::Wait);
        assert_eq!(gate.record(Fails), Decision::NotRun);
        assert!(gate.decided());
        assert_eq!(gate.record(Holds), Decision::Wait);
    }

    #[test]
    fn any_join_runs_at_the_first_that_holds_and_skips_when_all_fail() {
        let mut gate = Gate::new(Join::Any, 2);
        assert_eq!(gate.record(Fails), Decision::Wait);
        assert_eq!(gate.record(Holds), Decision::Run);
        let mut gate = Gate::new(Join::Any, 2);
        assert_eq!(gate.record(Fails), Decision::Wait);
        assert_eq!(gate.record(Fails), Decision::NotRun);
    }
}
