//! Unit tests of expressions: compiling, evaluating, the limits, and assignments.

use indexmap::IndexMap;
use serde_json::Value as Json;
use serde_json::json;

use super::{
    EvalError, Expression, MAX_DEPTH, MAX_SOURCE_LEN, Map, Scope, SyntaxError, TaskFacts, is_assignment,
    parse_assignments, string_literal_end,
};

struct Fixture {
    params: Map,
    vars: Map,
    tasks: IndexMap<String, TaskFacts>,
}

impl Fixture {
    fn new() -> Self {
        let mut params = Map::new();
        params.insert("run_date".into(), json!("2024-05-01"));
        params.insert("retries".into(), json!(3));
        params.insert("big".into(), json!(u64::MAX));
        let mut vars = Map::new();
        vars.insert("file".into(), json!("a.csv"));
        vars.insert("i".into(), json!(2));
        vars.insert("list".into(), json!([1, "two", null, {"k": true}]));
        let mut tasks = IndexMap::new();
        let load = TaskFacts {
            result: "success".into(),
            exit_code: Some(0),
            duration_ms: 1500,
            output: "loaded 10 rows".into(),
        };
        tasks.insert("Load".to_string(), load);
        let skipped = TaskFacts { result: "not_run".into(), ..TaskFacts::default() };
        tasks.insert("Skipped".to_string(), skipped);
        Fixture { params, vars, tasks }
    }

    fn scope(&self) -> Scope<'_> {
        Scope { params: &self.params, vars: &self.vars, tasks: &self.tasks }
    }

    fn eval(&self, source: &str) -> Result<Json, EvalError> {
        Expression::compile(source).unwrap().evaluate(&self.scope())
    }

    fn eval_bool(&self, source: &str) -> Result<bool, EvalError> {
        Expression::compile(source).unwrap().evaluate_bool(&self.scope())
    }
}

#[test]
fn expression_is_send_sync_clone() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    assert_traits::<Expression>();
    assert_traits::<SyntaxError>();
    assert_traits::<EvalError>();
}

#[test]
fn accesses_params_vars_and_tasks() {
    let f = Fixture::new();
    assert_eq!(f.eval("params.run_date").unwrap(), json!("2024-05-01"));
    assert_eq!(f.eval("vars.file").unwrap(), json!("a.csv"));
    assert_eq!(f.eval("params.retries + vars.i").unwrap(), json!(5));
    assert_eq!(f.eval("params.big").unwrap(), json!(u64::MAX));
    assert_eq!(f.eval("vars.list").unwrap(), json!([1, "two", null, {"k": true}]));
    assert_eq!(f.eval("tasks.Load.exit_code").unwrap(), json!(0));
    assert_eq!(f.eval("tasks.Skipped.exit_code").unwrap(), json!(null));
    assert_eq!(f.eval("tasks['Load'].duration_ms").unwrap(), json!(1500));
    assert_eq!(f.eval("tasks.Load.output").unwrap(), json!("loaded 10 rows"));
    assert!(f.eval_bool(r#"tasks["Load"].result == "success""#).unwrap());
    assert!(!f.eval_bool("tasks.Skipped.result == 'success'").unwrap());
    assert!(f.eval_bool("tasks.Load.output.contains('10') && vars.i > 1").unwrap());
    assert!(f.eval_bool("'Load' in tasks && !('Nope' in tasks)").unwrap());
    assert!(f.eval_bool("has(vars.file) && !has(vars.missing)").unwrap());
    assert!(f.eval_bool("tasks.all(t, t != '')").unwrap());
    assert_eq!(f.eval("{'b': 1, 'a': [1.5]}").unwrap(), json!({"a": [1.5], "b": 1}));
    assert_eq!(f.eval("duration('1500ms')").unwrap(), json!("1.5s"));
    let ts = f.eval("timestamp('2024-05-01T10:00:00+02:00')").unwrap();
    assert_eq!(ts, json!("2024-05-01T08:00:00Z"));
    assert_eq!(f.eval("b'hi'").unwrap(), json!("hi"));
}

#[test]
fn evaluates_many_times_without_recompiling() {
    let f = Fixture::new();
    let expr = Expression::compile("vars.i * 2").unwrap();
    let copy = expr.clone();
    for _ in 0..3 {
        assert_eq!(copy.evaluate(&f.scope()).unwrap(), json!(4));
    }
    assert_eq!(expr.source(), "vars.i * 2");
    assert_eq!(format!("{expr:?}"), r#"Expression("vars.i * 2")"#);
}

#[test]
fn evaluate_bool_rejects_other_types() {
    let f = Fixture::new();
    let err = f.eval_bool("1 + 2").unwrap_err();
    assert_eq!(err.expression, "1 + 2");
    assert_eq!(err.reason, "expected a bool result, got int 3");
    let err = f.eval_bool("vars.file").unwrap_err();
    assert!(err.reason.contains("got string \"a.csv\""), "{err}");
    let err = f.eval_bool("tasks.Skipped.exit_code").unwrap_err();
    assert!(err.reason.contains("got null"), "{err}");
}

#[test]
fn unknown_names_fail_with_the_expression_text() {
    let f = Fixture::new();
    let err = f.eval("vars.nope == 1").unwrap_err();
    assert!(err.reason.contains("nope"), "{err}");
    assert!(err.to_string().starts_with("expression `vars.nope == 1` failed:"), "{err}");
    let err = f.eval("tasks.Missing.result").unwrap_err();
    assert!(err.to_string().contains("`tasks.Missing.result`"), "{err}");
    assert!(err.reason.contains("Missing"), "{err}");
    let err = f.eval("foo + 1").unwrap_err();
    assert!(err.reason.contains("foo"), "{err}");
    let err = f.eval("1 / 0").unwrap_err();
    assert!(err.reason.contains("zero"), "{err}");
    let err = f.eval("1.0 / 0.0").unwrap_err();
    assert!(err.reason.contains("not a finite number"), "{err}");
}

#[test]
fn syntax_error_positions_are_one_based() {
    let err = Expression::compile("((").unwrap_err();
    assert_eq!((err.line, err.column), (1, 3));
    let err = Expression::compile("a ===").unwrap_err();
    assert_eq!((err.line, err.column), (1, 5));
    let err = Expression::compile("}}").unwrap_err();
    assert_eq!((err.line, err.column), (1, 1));
    let err = Expression::compile("vars.a &&\n  && vars.b").unwrap_err();
    assert_eq!((err.line, err.column), (2, 3));
    assert!(err.message.contains("syntax error"), "{err}");
    assert!(err.to_string().ends_with("at line 2, column 3 of the expression"), "{err}");
    // Columns count characters, not bytes.
    let err = Expression::compile("'é' + )").unwrap_err();
    assert_eq!((err.line, err.column), (1, 7));
    assert_eq!(err.byte_offset_in("'é' + )"), 7);
    let err = Expression::compile("  \n ").unwrap_err();
    assert_eq!(err, SyntaxError::new(1, 1, "empty expression"));
}

#[test]
fn limits_are_syntax_errors_not_crashes() {
    for source in [
        "(".repeat(5000),
        "[".repeat(200) + &"]".repeat(200),
        "-(".repeat(60) + "1" + &")".repeat(60),
        "size(".repeat(100) + &")".repeat(100),
        vec!["1"; 200].join(" + "),
        "vars".to_string() + &".a".repeat(5000),
        "x".repeat(MAX_SOURCE_LEN + 1),
    ] {
        assert!(Expression::compile(&source).is_err(), "{}", &source[..20]);
    }
    let f = Fixture::new();
    let deepest = vec!["1"; MAX_DEPTH].join(" + ");
    assert_eq!(f.eval(&deepest).unwrap(), json!(MAX_DEPTH));
    let err = Expression::compile(&vec!["1"; MAX_DEPTH + 1].join(" + ")).unwrap_err();
    assert!(err.message.contains("levels deep"), "{err}");
    let nested = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    assert!(f.eval(&nested).is_ok());
    // `&&` chains are balanced by the parser, so long ones are fine.
    assert!(f.eval_bool(&vec!["true"; 500].join(" && ")).unwrap());
}

#[test]
fn deepest_accepted_expressions_evaluate() {
    // The interpreter recurses on the caller's stack: the deepest expressions accepted
    // must evaluate on a 2 MiB test thread, unoptimised.
    let f = Fixture::new();
    let shapes: [(&str, &str, &str); 6] = [
        ("[1].all(x, ", "true", ")"),
        ("{'a': ", "1", "}"),
        ("size(", "'x'", ")"),
        ("(true ? ", "1", " : 2)"),
        ("-(", "1", ")"),
        ("[vars.i].map(y, ", "[y]", ")"),
    ];
    for (open, inner, close) in shapes {
        let mut accepted = 0;
        for n in 1..=MAX_DEPTH {
            let source = open.repeat(n) + inner + &close.repeat(n);
            let Ok(expr) = Expression::compile(&source) else {
                break;
            };
            accepted = n;
            let _ = expr.evaluate(&f.scope());
        }
        assert!(accepted >= 4, "{open}: {accepted}");
    }
}

#[test]
fn nasty_inputs_do_not_panic() {
    let f = Fixture::new();
    for source in [
        "((",
        "a ===",
        "'unterminated",
        "}}",
        "{{",
        "é + ",
        "🎉🎉",
        "\u{0}",
        "\"abc",
        "'''",
        "r'",
        "b'\\xzz'",
        "x ? y",
        "a[",
        "has(a)",
        "9999999999999999999999",
        "1.0.0",
        "..",
        "-9223372036854775808 / -1",
        "vars.i = 1",
        "params.x ==",
        "\\",
        "@#$`",
        ";",
        "timestamp('bad')",
        "[1][5]",
        "int(1e300)",
        "'(' .matches('(')",
        "{'a':1,'a':2}",
    ] {
        if let Ok(expr) = Expression::compile(source) {
            let _ = expr.evaluate(&f.scope());
            let _ = expr.evaluate_bool(&f.scope());
        }
    }
}

#[test]
fn parses_assignments() {
    let f = Fixture::new();
    let list = parse_assignments("i = 0").unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].var, "i");
    assert_eq!(list[0].value.source(), "0");
    let list = parse_assignments("vars.i = vars.i + 1").unwrap();
    assert_eq!(list[0].var, "i");
    assert_eq!(list[0].value.evaluate(&f.scope()).unwrap(), json!(3));
    let list = parse_assignments("i = 0; total = 10;").unwrap();
    let names: Vec<_> = list.iter().map(|a| a.var.as_str()).collect();
    assert_eq!(names, ["i", "total"]);
    let list = parse_assignments("done = vars.i == 2 || vars.i != 3 && 1 <= 2 && 2 >= 1").unwrap();
    assert_eq!(list[0].var, "done");
    assert_eq!(list[0].value.evaluate(&f.scope()).unwrap(), json!(true));
    let list = parse_assignments("s = 'a;b = c' + \"=;\"; t = [1, 2]").unwrap();
    assert_eq!(list[0].value.evaluate(&f.scope()).unwrap(), json!("a;b = c=;"));
    assert_eq!(list[1].value.source(), "[1, 2]");
}

#[test]
fn assignment_errors_have_positions_in_the_whole_source() {
    let err = parse_assignments("i == 0").unwrap_err();
    assert!(err.message.contains("no `=`"), "{err}");
    assert_eq!((err.line, err.column), (1, 1));
    let err = parse_assignments("i = 0;  2x = 1").unwrap_err();
    assert!(err.message.contains("`2x` is not a variable name"), "{err}");
    assert_eq!((err.line, err.column), (1, 9));
    let err = parse_assignments("params.x = 1").unwrap_err();
    assert!(err.message.contains("not a variable name"), "{err}");
    let err = parse_assignments("i = 0; j = (1 +").unwrap_err();
    assert_eq!((err.line, err.column), (1, 16));
    let err = parse_assignments("i = 0;\nj = }").unwrap_err();
    assert_eq!((err.line, err.column), (2, 5));
    let err = parse_assignments("i =").unwrap_err();
    assert!(err.message.contains("missing expression"), "{err}");
    let err = parse_assignments(" = 1").unwrap_err();
    assert!(err.message.contains("missing variable name"), "{err}");
    assert!(parse_assignments(" ; ").is_err());
    assert!(parse_assignments("vars = 1").is_err());
}

#[test]
fn recognises_assignments() {
    assert!(is_assignment("i = 0"));
    assert!(is_assignment("  vars.i=vars.i + 1"));
    assert!(is_assignment("total = 1; i = 2"));
    assert!(!is_assignment("i == 0"));
    assert!(!is_assignment("vars.i > 0"));
    assert!(!is_assignment("params.x = 1"));
    assert!(!is_assignment("2 = 1"));
    assert!(!is_assignment(""));
}

#[test]
fn string_literals_are_skipped() {
    let end = |s: &str| string_literal_end(s, s.find(['\'', '"']).unwrap());
    assert_eq!(end("'a\\'b' x"), Some(6));
    assert_eq!(end("r'a\\' x"), Some(5));
    assert_eq!(end("'''a'b''' x"), Some(9));
    assert_eq!(end("\"a\nb\""), None);
    assert_eq!(end("'open"), None);
}

#[test]
fn a_nested_comprehension_over_a_long_parameter_list_is_refused_naming_the_budget() {
    let e =
        Expression::compile("params.xs.all(a, params.xs.all(b, params.xs.all(c, a + b + c >= 0)))").expect("compiles");
    let mut params = Map::new();
    params.insert("xs".into(), serde_json::json!((0..500).collect::<Vec<i64>>()));
    let vars = Map::new();
    let tasks = indexmap::IndexMap::new();
    let scope = Scope { params: &params, vars: &vars, tasks: &tasks };
    let error = e.evaluate_bool(&scope).expect_err("over the budget").to_string();
    assert!(error.contains("over the budget expression_steps = 1000000"), "{error}");
    // The same expression over a short list runs.
    params.insert("xs".into(), serde_json::json!([1, 2, 3]));
    let scope = Scope { params: &params, vars: &vars, tasks: &tasks };
    assert!(e.evaluate_bool(&scope).expect("runs"));
}
