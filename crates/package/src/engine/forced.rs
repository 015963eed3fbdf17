//! ForceExecutionResult as SSIS applies it: a forced result replaces what constraints and the
//! task's record see, but it does not take back errors already raised, and a forced success or
//! completion is ignored once the executable's own errors reach its MaximumErrorCount.
//!
//! Sources: a task's errors (OnError events) are counted by the task and by every enclosing
//! container whatever the task's event handlers do (cnblogs.com/rav009/p/5131091.html); and
//! "Attempts to force the task to have a status of Success will be ignored if
//! MaximumErrorCount is reached" (developerdotstar.com/community/node/328). Both are quoted in
//! `ssis-semantics.md` §4.1 and issue 13 item 7.

use crate::model::{Task, TaskResult};

/// A task's result and the errors it raises in its container, after force_result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forced {
    /// The result constraints and the record see.
    pub result: TaskResult,
    /// Errors counted by the enclosing container (and, through it, every container above).
    pub errors_up: u32,
    /// What force_result did, for the task's message; `None` when it did nothing.
    pub note: Option<String>,
}

/// Applies `task.force_result` to a task that ended with `raw`. `inner_errors` are the errors
/// counted inside a container (0 for a leaf task).
pub(crate) fn apply(task: &Task, raw: TaskResult, inner_errors: u32) -> Forced {
    let is_container = task.kind.children().is_some();
    // The errors the executable itself counts: a failed leaf raises one; a container counts what
    // its tasks raised, and a container that failed without any (fail_parent_on_failure, a
    // failed loop enumerator) still raises one.
    let own_errors = match (is_container, raw) {
        (true, TaskResult::Failure) => inner_errors.max(1),
        (true, _) => inner_errors,
        (false, TaskResult::Failure) => 1,
        (false, _) => 0,
    };
    let ended = matches!(raw, TaskResult::Success | TaskResult::Failure | TaskResult::Completion);
    let (result, note) = match task.force_result {
        Some(forced) if ended && forced != raw => {
            let limit_reached = task.max_errors > 0 && own_errors >= task.max_errors;
            if forced != TaskResult::Failure && limit_reached {
                let note = format!(
                    "force_result = \"{forced}\" ignored: its {own_errors} error(s) reached max_errors = {}, as SSIS ignores a forced success once MaximumErrorCount is reached",
                    task.max_errors
                );
                (raw, Some(note))
            } else {
                (forced, Some(format!("result {raw} forced to {forced}")))
            }
        }
        _ => (raw, None),
    };
    // Errors raised stay raised: a forced success does not take them back from the parents.
    // A forced failure raises one error of its own when nothing inside raised one.
    let errors_up = if result == TaskResult::Failure { own_errors.max(1) } else { own_errors };
    Forced { result, errors_up, note }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Container, Join, SleepTask, TaskKind};

    fn task(force: Option<TaskResult>, max_errors: u32) -> Task {
        leaf_or_container(force, max_errors, TaskKind::Sleep(SleepTask { duration: std::time::Duration::ZERO }))
    }

    fn container(force: Option<TaskResult>, max_errors: u32) -> Task {
        leaf_or_container(force, max_errors, TaskKind::Sequence(Container::default()))
    }

    fn leaf_or_container(force: Option<TaskResult>, max_errors: u32, kind: TaskKind) -> Task {
        Task {
            name: "T".into(),
            description: None,
            kind,
            after: Vec::new(),
            join: Join::All,
            disabled: false,
            max_errors,
            fail_parent_on_failure: false,
            fail_package_on_failure: false,
            force_result: force,
            timeout: None,
            transaction: crate::model::TransactionOption::Supported,
            isolation: Default::default(),
        }
    }

    #[test]
    fn a_failure_forced_to_success_keeps_its_error_for_the_parents() {
        let forced = apply(&task(Some(TaskResult::Success), 0), TaskResult::Failure, 0);
        assert_eq!((forced.result, forced.errors_up), (TaskResult::Success, 1));
    }

    #[test]
    fn a_forced_success_is_ignored_once_the_tasks_own_max_errors_is_reached() {
        let forced = apply(&task(Some(TaskResult::Success), 1), TaskResult::Failure, 0);
        assert_eq!((forced.result, forced.errors_up), (TaskResult::Failure, 1));
        assert!(forced.note.is_some_and(|n| n.contains("ignored")));
        let container = apply(&container(Some(TaskResult::Completion), 3), TaskResult::Success, 2);
        assert_eq!((container.result, container.errors_up), (TaskResult::Completion, 2), "2 < 3: forced");
    }

    #[test]
    fn a_forced_failure_always_applies_and_raises_one_error() {
        let forced = apply(&task(Some(TaskResult::Failure), 1), TaskResult::Success, 0);
        assert_eq!((forced.result, forced.errors_up), (TaskResult::Failure, 1));
        let canceled = apply(&task(Some(TaskResult::Failure), 1), TaskResult::Canceled, 0);
        assert_eq!((canceled.result, canceled.note), (TaskResult::Canceled, None), "canceled is never forced");
    }
}
