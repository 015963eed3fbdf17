//! Warnings for packages that load but probably do not do what their author meant.

use super::reader::Reader;
use crate::model::{ConstraintValue, EvalOp, Package, Task, TaskResult};

/// Warns where a handled failure (a failure or completion constraint) still fails an
/// enclosing container or the package because its max_errors is 1. A forced result does not
/// keep a failure's error from the containers above it (SSIS counts it anyway: engine/forced.rs).
pub(crate) fn warn(reader: &mut Reader<'_>, package: &Package) {
    let mut found = Vec::new();
    let package_label = format!("the package \"{}\"", package.name);
    let mut stack = vec![(package_label, package.max_errors)];
    walk(&package.tasks, "tasks", &mut stack, &mut found);
    for (path, message) in found {
        let span = reader.constraint_spans.get(&path).cloned().unwrap_or(0..0);
        reader.warning(&span, &path, message);
    }
}

/// (label, max_errors) for each enclosing container, outermost first.
type Enclosing = Vec<(String, u32)>;

fn walk(tasks: &[Task], path: &str, stack: &mut Enclosing, found: &mut Vec<(String, String)>) {
    for (i, task) in tasks.iter().enumerate() {
        let task_path = format!("{path}[{i}]");
        for (j, c) in task.after.iter().enumerate() {
            let handles_failure =
                matches!(c.on, ConstraintValue::Failure | ConstraintValue::Completion) && c.eval != EvalOp::Expression;
            let source = &tasks[c.index];
            // A forced success or completion holds (and the failure path never runs) unless the
            // source's own max_errors is reached by its failure.
            let forced_away = matches!(source.force_result, Some(TaskResult::Success | TaskResult::Completion))
                && source.max_errors != 1;
            let can_fail = !source.disabled && !forced_away;
            if handles_failure && can_fail {
                let failing: Vec<&str> =
                    stack.iter().rev().filter(|(_, max)| *max == 1).map(|(label, _)| label.as_str()).collect();
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
            stack.push((format!("container \"{}\"", task.name), task.max_errors));
            walk(children, &format!("{task_path}.tasks"), stack, found);
            stack.pop();
        }
    }
}
