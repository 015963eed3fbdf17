//! Evaluating an expression off the threads that serve requests and watch agents: on a blocking
//! thread, within the run's work budget (`[limits] expression_steps`, checked before it runs) and
//! its wall-clock budget (`[limits] expression_time`), whose overrun fails the task naming it.

use super::RunShared;
use super::precedence::ScopeValue;
use crate::expr::Expression;

/// Evaluates `expression` to a bool against `value` on a blocking thread. The caller's future
/// can be dropped (a task timeout, a cancel) while it runs; the thread then ends on its own,
/// within the work budget.
pub(crate) async fn evaluate_bool(
    shared: &RunShared,
    expression: &Expression,
    value: ScopeValue,
) -> Result<bool, String> {
    let steps = shared.limits.expression_steps;
    let time = shared.limits.expression_time;
    let owned = expression.clone();
    let job = tokio::task::spawn_blocking(move || owned.evaluate_bool_within(&value.scope(), steps));
    match tokio::time::timeout(time, job).await {
        Ok(Ok(result)) => result.map_err(|e| e.to_string()),
        Ok(Err(join)) => Err(format!("expression `{}` failed: {join}", short(expression.source()))),
        Err(_) => Err(format!(
            "expression `{}` failed: it ran longer than the budget expression_time = {} ([limits])",
            short(expression.source()),
            humantime::format_duration(time)
        )),
    }
}

/// `text` cut to 200 characters for a message.
fn short(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
