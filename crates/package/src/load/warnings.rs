//! Warnings for packages that load but probably do not do what their author meant.

use super::reader::Reader;
use crate::model::{ConstraintValue, EvalOp, Package, Task, TaskResult};

/// Warns where a handled failure (a failure or completion constraint) still fails an
/// enclosing container or the package because its max_errors is 1.
pub(crate) fn warn(reader: &mut Reader<'_>, package: &Package) {
    let mut found = Vec::new();
    let package_label = format!("the package \"{}\"", package.name);
    let mut stack = vec![(package_label, package.max_errors, false)];
    walk(&package.tasks, "tasks", &mut stack, &mut found);
    for (path, message) in found {
        let span = reader.constraint_spans.get(&path).cloned().unwrap_or(0..0);
        reader.warning(&span, &path, message);
    }
}

/// (label, max_errors, masks errors) for each enclosing container, outermost first.
type Enclosing = Vec<(String, u32, bool)>;

fn walk(tasks: &[Task], path: &str, stack: &mut Enclosing, found: &mut Vec<(String, String)>) {
    for (i, task) in tasks.iter().enumerate() {
        let task_path = format!("{path}[{i}]");
        for (j, c) in task.after.iter().enumerate() {
            let handles_failure =
                matches!(c.on, ConstraintValue::Failure | ConstraintValue::Completion) && c.eval != EvalOp::Expression;
            let source = &tasks[c.index];
            let can_fail =
                !source.disabled && !matches!(source.force_result, Some(TaskResult::Success | TaskResult::Completion));
            if handles_failure && can_fail {
                let failing: Vec<&str> = stack
                    .iter()
                    .rev()
                    .take_while(|(_, _, masks)| !masks)
                    .filter(|(_, max, _)| *max == 1)
                    .map(|(label, _, _)| label.as_str())
                    .collect();
                if !failing.is_empty() {
                    found.push((
                        format!("{task_path}.after[{j}]"),
                        format!(
                            "a failure of \"{}\" runs this task, but it still fails {} because max_errors is 1; raise max_errors (0 = unlimited) if the failure path should recover",
                            source.name,
                            failing.join(" and ")
                        ),
                    ));
                }
            }
        }
        if let Some(children) = task.kind.children() {
            // A container whose result is forced to success keeps its errors from its parents.
            let masks = matches!(task.force_result, Some(TaskResult::Success | TaskResult::Completion));
            stack.push((format!("container \"{}\"", task.name), task.max_errors, masks));
            walk(children, &format!("{task_path}.tasks"), stack, found);
            stack.pop();
        }
    }
}
