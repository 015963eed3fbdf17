//! Precedence constraints: reading `after`, resolving names among siblings, duplicate names
//! and cycles.

use std::collections::HashMap;
use std::ops::Range;

use toml::de::DeValue;

use super::reader::{Fields, Reader, Value};
use super::tasks::RawTask;
use crate::expr::Expression;
use crate::model::{Constraint, ConstraintValue, EvalOp, Task};

/// A constraint as written, before its task name is resolved.
pub(crate) struct RawConstraint {
    pub task: String,
    pub span: Range<usize>,
    pub path: String,
    pub on: ConstraintValue,
    pub when: Option<Expression>,
    pub eval: EvalOp,
}

/// Reads `after = ["A", { task = "B", on = "failure", when = "...", eval = "or" }]`.
pub(crate) fn read_constraints(reader: &mut Reader<'_>, value: &Value<'_>, path: &str) -> Vec<RawConstraint> {
    let Some(items) = reader.array(value, path) else { return Vec::new() };
    items.iter().enumerate().filter_map(|(i, item)| read_constraint(reader, item, &format!("{path}[{i}]"))).collect()
}

fn read_constraint(reader: &mut Reader<'_>, item: &Value<'_>, path: &str) -> Option<RawConstraint> {
    reader.constraint_spans.insert(path.to_string(), item.span());
    if let DeValue::String(name) = item.get_ref() {
        return Some(RawConstraint {
            task: name.to_string(),
            span: item.span(),
            path: path.to_string(),
            on: ConstraintValue::Success,
            when: None,
            eval: EvalOp::Constraint,
        });
    }
    let Some(table) = item.get_ref().as_table() else {
        reader.error(
            &item.span(),
            path,
            format!("expected a task name or a table {{ task, on, when, eval }}, found {}", item.get_ref().type_str()),
        );
        return None;
    };
    let mut f = Fields::new(table, item.span(), path);
    let task = f.require(reader, "task", "the name of an earlier task in this container");
    let task = task.and_then(|v| reader.non_empty_string(v, &f.path_of("task")));
    let on_value = f.take("on");
    let on = match on_value {
        None => Some(ConstraintValue::Success),
        Some(v) => match reader.string(v, &f.path_of("on")).as_deref() {
            Some("success") => Some(ConstraintValue::Success),
            Some("failure") => Some(ConstraintValue::Failure),
            Some("completion") => Some(ConstraintValue::Completion),
            Some(other) => {
                reader.error(
                    &v.span(),
                    &f.path_of("on"),
                    format!("unknown value \"{other}\" (expected success, failure or completion)"),
                );
                None
            }
            None => None,
        },
    };
    let when_value = f.take("when");
    let when = when_value.and_then(|v| reader.expression(v, &f.path_of("when")));
    let eval = match f.take("eval") {
        None => Some(match (on_value.is_some(), when_value.is_some()) {
            (false, true) => EvalOp::Expression,
            (true, true) => EvalOp::And,
            _ => EvalOp::Constraint,
        }),
        Some(v) => {
            let eval = match reader.string(v, &f.path_of("eval")).as_deref() {
                Some("constraint") => Some(EvalOp::Constraint),
                Some("expression") => Some(EvalOp::Expression),
                Some("and") => Some(EvalOp::And),
                Some("or") => Some(EvalOp::Or),
                Some(other) => {
                    reader.error(
                        &v.span(),
                        &f.path_of("eval"),
                        format!("unknown value \"{other}\" (expected constraint, expression, and or or)"),
                    );
                    None
                }
                None => None,
            };
            match eval {
                Some(EvalOp::Constraint) if when_value.is_some() => {
                    reader.error(
                        &v.span(),
                        &f.path_of("eval"),
                        "eval = \"constraint\" would ignore `when`: use \"and\" or \"or\", or drop `when`",
                    );
                    None
                }
                Some(op @ (EvalOp::Expression | EvalOp::And | EvalOp::Or)) if when_value.is_none() => {
                    let name = match op {
                        EvalOp::Expression => "expression",
                        EvalOp::And => "and",
                        _ => "or",
                    };
                    reader.error(
                        &v.span(),
                        &f.path_of("eval"),
                        format!("eval = \"{name}\" needs an expression in `when`"),
                    );
                    None
                }
                other => other,
            }
        }
    };
    f.finish(reader, "in a constraint (expected task, on, when, eval)");
    Some(RawConstraint { task: task?, span: item.span(), path: path.to_string(), on: on?, when, eval: eval? })
}

/// Resolves the constraints of one container's tasks and checks names and cycles.
pub(crate) fn resolve_container(reader: &mut Reader<'_>, raw: Vec<RawTask>) -> Vec<Task> {
    let mut index: HashMap<String, usize> = HashMap::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        if let Some(&first) = index.get(&r.task.name) {
            let (line, _) = reader.map.position(raw[first].name_span.start);
            reader.error(
                &r.name_span,
                &format!("{}.name", r.path),
                format!("duplicate task name \"{}\" in this container (first used at line {line})", r.task.name),
            );
        } else {
            index.insert(r.task.name.clone(), i);
        }
    }
    let mut tasks = Vec::with_capacity(raw.len());
    // Where each resolved constraint was written (span and field path), parallel to `after`.
    let mut written = Vec::with_capacity(raw.len());
    for r in raw {
        let mut task = r.task;
        let mut spans = Vec::with_capacity(r.constraints.len());
        for c in r.constraints {
            match index.get(&c.task) {
                Some(&i) => {
                    spans.push((c.span, c.path));
                    task.after.push(Constraint { task: c.task, index: i, on: c.on, when: c.when, eval: c.eval })
                }
                None => reader.error(&c.span, &c.path, format!("no task named \"{}\" in this container", c.task)),
            }
        }
        tasks.push(task);
        written.push(spans);
    }
    report_cycles(reader, &tasks, &written);
    tasks
}

/// Kahn's algorithm; whatever cannot be ordered lies on or behind a cycle, which is named at
/// the constraint of its first task (in file order) that closes it.
fn report_cycles(reader: &mut Reader<'_>, tasks: &[Task], written: &[Vec<(Range<usize>, String)>]) {
    let n = tasks.len();
    let mut indegree = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, t) in tasks.iter().enumerate() {
        for c in &t.after {
            indegree[i] += 1;
            dependents[c.index].push(i);
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut ordered = 0;
    while let Some(i) = ready.pop() {
        ordered += 1;
        for &d in &dependents[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.push(d);
            }
        }
    }
    if ordered == n {
        return;
    }
    // Walk predecessors among the unordered tasks until one repeats: that loop is a cycle.
    let mut reported = vec![false; n];
    for start in 0..n {
        if indegree[start] == 0 || reported[start] {
            continue;
        }
        let mut seen: Vec<usize> = Vec::new();
        let mut at = start;
        while !seen.contains(&at) {
            seen.push(at);
            let Some(next) = tasks[at].after.iter().map(|c| c.index).find(|&p| indegree[p] > 0) else { break };
            at = next;
        }
        let Some(pos) = seen.iter().position(|&s| s == at) else { continue };
        let mut cycle: Vec<usize> = seen[pos..].to_vec();
        if cycle.iter().any(|&c| reported[c]) {
            continue;
        }
        cycle.reverse();
        for &c in &cycle {
            reported[c] = true;
        }
        let first = *cycle.iter().min().expect("a cycle has at least one task");
        let rotate = cycle.iter().position(|&c| c == first).expect("first is in the cycle");
        cycle.rotate_left(rotate);
        let mut names: Vec<String> = cycle.iter().map(|&c| format!("\"{}\"", tasks[c].name)).collect();
        names.push(format!("\"{}\"", tasks[first].name));
        // In file order each task of the cycle waits on the one before it: `first` on the last.
        let last = *cycle.last().expect("a cycle has at least one task");
        let closing = tasks[first].after.iter().position(|c| c.index == last).expect("first waits on last");
        let (span, path) = &written[first][closing];
        reader.error(span, path, format!("precedence constraints form a cycle: {}", names.join(" -> ")));
    }
}
