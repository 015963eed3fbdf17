//! Loop containers: `foreach` (items or files, a loop variable, N iterations at once) and
//! `for` (init, condition, assign). Each iteration's tasks are listed as `Loop[i]/Task`.

use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use super::RunShared;
use super::graph::{GraphOutcome, run_graph};
use super::kinds::{KindOutcome, LazyScope};
use super::scope::Frame;
use super::task::inner_not_run_records;
use crate::expr::{Assignment, Map};
use crate::model::{ForTask, ForeachItems, ForeachTask, Task};

/// Runs a `foreach` loop.
pub(crate) async fn run_foreach(
    shared: &Arc<RunShared>,
    task: &Task,
    foreach: &ForeachTask,
    path: &str,
    frame: &Frame,
    cancel: &CancellationToken,
) -> KindOutcome {
    let items = match enumerate(shared, foreach, frame) {
        Ok(items) => items,
        Err(e) => return KindOutcome::failure(e),
    };
    if items.is_empty() {
        return KindOutcome {
            records: inner_not_run_records(task, path),
            ..KindOutcome::new(crate::model::TaskResult::Success, "no items: ran no iteration")
        };
    }
    let total = items.len();
    let parallel = foreach.parallel.max(1) as usize;
    let mut outcomes: Vec<Option<GraphOutcome>> = (0..total).map(|_| None).collect();
    let mut running = FuturesUnordered::new();
    let mut next = 0;
    let mut errors = 0;
    loop {
        while running.len() < parallel && next < total && !stop(cancel, task.max_errors, errors) {
            let mut vars: Map = (*frame.vars).clone();
            vars.insert(foreach.var.clone(), items[next].clone());
            let iteration = frame.with_vars(vars);
            let prefix = format!("{path}[{next}]/");
            let index = next;
            running
                .push(async move { (index, run_graph(shared, &foreach.body.tasks, iteration, &prefix, cancel).await) });
            next += 1;
        }
        match running.next().await {
            Some((index, outcome)) => {
                errors += outcome.errors;
                outcomes[index] = Some(outcome);
            }
            None => break,
        }
    }
    let mut merged = GraphOutcome::default();
    outcomes.into_iter().flatten().for_each(|o| merged.absorb(o));
    KindOutcome::container(merged, task.max_errors, cancel, format!("{next} of {total} iteration(s) ran"))
}

/// Runs a `for` loop.
pub(crate) async fn run_for(
    shared: &Arc<RunShared>,
    task: &Task,
    for_loop: &ForTask,
    path: &str,
    frame: &Frame,
    cancel: &CancellationToken,
) -> KindOutcome {
    let mut vars: Map = (*frame.vars).clone();
    if let Err(e) = assign(shared, frame, &mut vars, &for_loop.init) {
        return KindOutcome::failure(format!("init: {e}"));
    }
    let mut merged = GraphOutcome::default();
    let mut iteration = 0usize;
    loop {
        if stop(cancel, task.max_errors, merged.errors) {
            break;
        }
        let current = frame.with_vars(vars.clone());
        let value = current.value(&shared.params);
        let holds = super::budget::evaluate_bool(shared, &for_loop.condition, value).await;
        match holds {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let failed = KindOutcome::failure(format!("condition after {iteration} iteration(s): {e}"));
                return KindOutcome {
                    inner_errors: merged.errors,
                    records: merged.records,
                    children: merged.children,
                    ..failed
                };
            }
        }
        let prefix = format!("{path}[{iteration}]/");
        merged.absorb(run_graph(shared, &for_loop.body.tasks, current, &prefix, cancel).await);
        iteration += 1;
        if let Err(e) = assign(shared, frame, &mut vars, &for_loop.assign) {
            let failed = KindOutcome::failure(format!("assign after {iteration} iteration(s): {e}"));
            return KindOutcome {
                inner_errors: merged.errors,
                records: merged.records,
                children: merged.children,
                ..failed
            };
        }
    }
    if iteration == 0 && !cancel.is_cancelled() {
        merged.records = inner_not_run_records(task, path);
    }
    KindOutcome::container(merged, task.max_errors, cancel, format!("{iteration} iteration(s) ran"))
}

/// A loop starts no further iteration once canceled or once its errors reach max_errors.
fn stop(cancel: &CancellationToken, max_errors: u32, errors: u32) -> bool {
    cancel.is_cancelled() || (max_errors > 0 && errors >= max_errors)
}

/// Evaluates assignments in order, each seeing the variables set before it.
fn assign(shared: &RunShared, frame: &Frame, vars: &mut Map, assignments: &[Assignment]) -> Result<(), String> {
    for a in assignments {
        let current = frame.with_vars(vars.clone());
        let value = current.value(&shared.params);
        let v = a.value.evaluate(&value.scope()).map_err(|e| e.to_string())?;
        vars.insert(a.var.clone(), v);
    }
    Ok(())
}

/// The items of a `foreach` loop.
fn enumerate(shared: &RunShared, foreach: &ForeachTask, frame: &Frame) -> Result<Vec<serde_json::Value>, String> {
    let mut scope = LazyScope::new(shared, frame);
    match &foreach.items {
        ForeachItems::List(values) => {
            values.iter().enumerate().map(|(i, v)| scope.param(v).map_err(|e| format!("items[{i}]: {e}"))).collect()
        }
        ForeachItems::Expression(template) => {
            match scope.param(&crate::model::ParamValue::Template(template.clone()))? {
                serde_json::Value::Array(items) => Ok(items),
                other => Err(format!("items: `{}` gave {other}, not a list", template.source())),
            }
        }
        ForeachItems::Files(pattern) => {
            let pattern = scope.render(pattern)?;
            let full = if std::path::Path::new(&pattern).is_absolute() {
                pattern.clone()
            } else {
                shared.package.dir.join(&pattern).to_string_lossy().into_owned()
            };
            let paths = glob::glob(&full).map_err(|e| format!("files: bad glob \"{pattern}\": {e}"))?;
            let mut files = Vec::new();
            for entry in paths {
                let path = entry.map_err(|e| format!("files: {e}"))?;
                files.push(path.to_string_lossy().into_owned());
            }
            files.sort();
            Ok(files.into_iter().map(serde_json::Value::String).collect())
        }
    }
}
