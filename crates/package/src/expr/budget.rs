//! The work budget of an evaluation: an upper bound on the steps an expression can take, from
//! its tree and the sizes of the lists and maps it reads, checked before it runs.
//!
//! The `cel` interpreter cannot be interrupted and does not count steps, so the bound is
//! computed beforehand: each node costs a step, and a comprehension (`all`, `exists`, `map`,
//! `filter`, ...) costs its body once per element of what it iterates. The length of a literal
//! list is known when the package loads (so a nested comprehension over literal lists is refused
//! there); the length of what `params`, `vars` and `tasks` hold is known when it is evaluated,
//! bounded by the longest list or map found in them. `cel` builds `map` and `filter` results in
//! place (no copy per step), so their cost is linear in the elements, as counted here.

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use serde_json::Value as Json;

use super::bindings::Scope;

/// The default budget of one evaluation, in steps (DESIGN.md §11; `[limits] expression_steps`).
pub const DEFAULT_STEPS: u64 = 1_000_000;

/// An upper bound on one node: the steps it takes and the length of any list or map in its value.
#[derive(Debug, Clone, Copy)]
struct Bound {
    steps: u64,
    len: u64,
}

/// The bound on the steps `root` takes when every list or map it reads from the scope is at
/// most `input_len` long.
pub(super) fn steps(root: &IdedExpr, input_len: u64) -> u64 {
    let mut vars = Vec::new();
    bound(root, &mut vars, input_len).steps
}

/// The length of the longest list or map anywhere in what an expression can read of `scope`.
pub(super) fn input_len(scope: &Scope<'_>, params: bool, vars: bool, tasks: bool) -> u64 {
    let mut longest = 0usize;
    if params {
        longest = longest.max(scope.params.len());
        scope.params.values().for_each(|v| longest = longest.max(longest_in(v)));
    }
    if vars {
        longest = longest.max(scope.vars.len());
        scope.vars.values().for_each(|v| longest = longest.max(longest_in(v)));
    }
    if tasks {
        // Each task is a map of its four facts.
        longest = longest.max(scope.tasks.len()).max(4);
    }
    longest as u64
}

/// The length of the longest list or map in `value`; iterative, so deep values cannot overflow.
fn longest_in(value: &Json) -> usize {
    let mut longest = 0;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Json::Array(items) => {
                longest = longest.max(items.len());
                stack.extend(items);
            }
            Json::Object(map) => {
                longest = longest.max(map.len());
                stack.extend(map.values());
            }
            _ => {}
        }
    }
    longest
}

/// Functions whose result holds no list or map (so nothing further can iterate over it).
const SCALAR_RESULTS: &[&str] = &[
    "_&&_",
    "_||_",
    "!_",
    "-_",
    "_==_",
    "_!=_",
    "_<_",
    "_<=_",
    "_>_",
    "_>=_",
    "@in",
    "_-_",
    "_*_",
    "_/_",
    "_%_",
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "has",
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "timestamp",
    "duration",
    "type",
    "@not_strictly_false",
];

/// The bound of `node`; `vars` holds the length bounds of comprehension variables in scope.
/// Recursion is bounded by the expression depth limit checked at compile time.
fn bound(node: &IdedExpr, vars: &mut Vec<(String, u64)>, input_len: u64) -> Bound {
    match &node.expr {
        Expr::Literal(_) | Expr::Unspecified => Bound { steps: 1, len: 0 },
        Expr::Ident(name) => {
            let len = vars.iter().rev().find(|(n, _)| n == name).map_or(input_len, |(_, len)| *len);
            Bound { steps: 1, len }
        }
        Expr::Select(select) => {
            let operand = bound(&select.operand, vars, input_len);
            Bound { steps: operand.steps.saturating_add(1), len: operand.len }
        }
        Expr::List(list) => {
            let mut out = Bound { steps: 1, len: list.elements.len() as u64 };
            for element in &list.elements {
                let b = bound(element, vars, input_len);
                out.steps = out.steps.saturating_add(b.steps).saturating_add(1);
                out.len = out.len.max(b.len);
            }
            out
        }
        Expr::Map(map) => entries(&map.entries, vars, input_len),
        Expr::Struct(s) => entries(&s.entries, vars, input_len),
        Expr::Call(call) => {
            let mut steps = 1u64;
            let mut sum = 0u64;
            let mut lens = Vec::with_capacity(call.args.len() + 1);
            for child in call.target.iter().map(|t| &**t).chain(call.args.iter()) {
                let b = bound(child, vars, input_len);
                steps = steps.saturating_add(b.steps);
                sum = sum.saturating_add(b.len);
                lens.push(b.len);
            }
            let name = call.func_name.as_str();
            // Comparing, searching and concatenating touch every element of their operands.
            if matches!(name, "_==_" | "_!=_" | "@in" | "_+_") {
                steps = steps.saturating_add(sum);
            }
            let len = match name {
                "_[_]" => lens.first().copied().unwrap_or(0),
                "_?_:_" => lens.iter().skip(1).copied().max().unwrap_or(0),
                _ if SCALAR_RESULTS.contains(&name) => 0,
                _ => sum,
            };
            Bound { steps, len }
        }
        Expr::Comprehension(c) => {
            let range = bound(&c.iter_range, vars, input_len);
            let init = bound(&c.accu_init, vars, input_len);
            let n = range.len;
            let pushed = vars.len();
            vars.push((c.iter_var.clone(), range.len));
            if let Some(second) = &c.iter_var2 {
                vars.push((second.clone(), range.len));
            }
            vars.push((c.accu_var.clone(), init.len.max(n)));
            let step = bound(&c.loop_step, vars, input_len);
            let cond = bound(&c.loop_cond, vars, input_len);
            if let Some(accu) = vars.last_mut() {
                accu.1 = init.len.max(n).max(step.len);
            }
            let result = bound(&c.result, vars, input_len);
            vars.truncate(pushed);
            let per_item = step.steps.saturating_add(cond.steps);
            let steps = range
                .steps
                .saturating_add(init.steps)
                .saturating_add(n.saturating_mul(per_item))
                .saturating_add(result.steps)
                .saturating_add(1);
            Bound { steps, len: result.len }
        }
    }
}

fn entries(entries: &[cel::common::ast::IdedEntryExpr], vars: &mut Vec<(String, u64)>, input_len: u64) -> Bound {
    let mut out = Bound { steps: 1, len: entries.len() as u64 };
    for entry in entries {
        let parts: Vec<&IdedExpr> = match &entry.expr {
            EntryExpr::MapEntry(e) => vec![&e.key, &e.value],
            EntryExpr::StructField(f) => vec![&f.value],
        };
        for part in parts {
            let b = bound(part, vars, input_len);
            out.steps = out.steps.saturating_add(b.steps).saturating_add(1);
            out.len = out.len.max(b.len);
        }
    }
    out
}
