//! Generated inputs for the package loader, CEL expressions and `{{ }}` templates: arbitrary
//! TOML-ish text and structured random packages never panic, every load error names a line and
//! column inside the text, and random expressions and templates compile and evaluate (or fail)
//! without a panic, within a bound.

use std::path::Path;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use proptest::prelude::*;
use switchyard_package::expr::{Expression, Map, Scope, TaskFacts};
use switchyard_package::load::load_package_text;
use switchyard_package::{LoadError, Template};

/// Cases per property: the whole suite stays around a minute in CI.
const CASES: u32 = 256;

/// The longest one evaluation may take: far above any sane expression's cost on a loaded
/// machine, far below a hang.
const EVALUATION_BOUND: Duration = Duration::from_secs(5);

/// Pieces of package text, valid and not, that random texts are made of.
const TOML_PIECES: &[&str] = &[
    "[package]\n",
    "name = \"p\"\n",
    "[[tasks]]\n",
    "[[tasks.tasks]]\n",
    "kind = \"process\"\n",
    "kind = \"sleep\"\n",
    "kind = \"sequence\"\n",
    "kind = \"foreach\"\n",
    "kind = \"for\"\n",
    "kind = \"package\"\n",
    "kind = \"agent_job\"\n",
    "kind = \"nope\"\n",
    "command = [\"true\"]\n",
    "command = []\n",
    "duration = \"0s\"\n",
    "duration = \"x\"\n",
    "after = [\"a\"]\n",
    "after = [{ task = \"b\", on = \"failure\", when = \"params.x\" }]\n",
    "after = [{ task = 3 }]\n",
    "join = \"any\"\n",
    "max_errors = -1\n",
    "max_errors = 99999999999999999999\n",
    "force_result = \"failure\"\n",
    "items = [1, 2]\n",
    "var = \"v\"\n",
    "init = \"i = 0\"\n",
    "condition = \"vars.i < 3\"\n",
    "assign = \"i = vars.i + 1\"\n",
    "path = \"../x.toml\"\n",
    "job = \"j\"\n",
    "pool = \"etl\"\n",
    "[parameters]\n",
    "x = 1\n",
    "timeout = \"1s\"\n",
    "name = \"a\"\n",
    "name = \"b\"\n",
    "name = \"a/b\"\n",
    "{{ params.x }}",
    "\"{{\"",
    "= =\n",
    "[\n",
    "]\n",
    "\"\n",
    "'''\n",
    "\u{0}",
    "é",
    "\t",
    "# comment\n",
    "tasks = [{ name = \"i\", kind = \"sleep\", duration = \"0s\" }]\n",
    "max_concurrent = 0\n",
    "disabled = \"yes\"\n",
    "when = \"1 +\"\n",
    "env = { A = \"{{ 1 / 0 }}\" }\n",
];

fn toml_ish() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOML_PIECES), 0..40).prop_map(|pieces| pieces.concat())
}

/// Loads `text` and checks what a load may say: never a panic, errors placed in the text.
fn check_load(text: &str) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("p.toml");
    let lines = text.split('\n').count();
    match load_package_text(&path, text) {
        Ok(_) => {}
        Err(LoadError::Invalid(diagnostics)) => {
            prop_assert!(diagnostics.has_errors(), "refused without an error: {diagnostics}");
            for d in diagnostics.errors() {
                // A child package's errors name the child's file; this text names no file that exists.
                prop_assert_eq!(d.file.as_path(), Path::new(&path), "{}", d);
                prop_assert!(
                    d.line >= 1 && d.line <= lines,
                    "line {} outside the text's {} lines: {}",
                    d.line,
                    lines,
                    d
                );
                prop_assert!(d.column >= 1, "{}", d);
                prop_assert!(!d.message.is_empty(), "{}", d);
            }
        }
        Err(other) => prop_assert!(false, "a text in memory can only be invalid, got {other}"),
    }
    Ok(())
}

/// A random package: a few tasks of random kinds and random (often wrong) field values.
fn structured_package() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec!["a", "b", "c", "a/b", "", "x".repeat(200).leak() as &str]);
    let kind =
        prop::sample::select(vec!["process", "sleep", "sequence", "foreach", "for", "package", "agent_job", "sql"]);
    let value = prop::sample::select(vec![
        "\"0s\"",
        "\"-1s\"",
        "1",
        "-1",
        "true",
        "[]",
        "[\"true\"]",
        "{}",
        "\"a\"",
        "[\"a\", \"a\"]",
        "\"{{ 1 }}\"",
        "\"{{ x\"",
        "1.5",
        "nan",
    ]);
    let field = prop::sample::select(vec![
        "command",
        "duration",
        "after",
        "join",
        "max_errors",
        "force_result",
        "items",
        "files",
        "var",
        "parallel",
        "init",
        "condition",
        "assign",
        "path",
        "params",
        "job",
        "agent",
        "pool",
        "wait",
        "retries",
        "timeout",
        "disabled",
        "env",
        "dir",
        "success_codes",
        "bogus",
    ]);
    let task = (name, kind, prop::collection::vec((field, value), 0..5)).prop_map(|(name, kind, fields)| {
        let mut text = format!("[[tasks]]\nname = \"{name}\"\nkind = \"{kind}\"\n");
        for (field, value) in fields {
            text.push_str(&format!("{field} = {value}\n"));
        }
        text
    });
    (prop::collection::vec(task, 0..6), -2i64..3).prop_map(|(tasks, max_errors)| {
        format!("[package]\nname = \"p\"\nmax_errors = {max_errors}\n\n{}", tasks.join("\n"))
    })
}

/// Pieces of CEL, valid and not.
const CEL_PIECES: &[&str] = &[
    "params.x",
    "vars.i",
    "tasks['A'].result",
    "tasks[\"B\"].exit_code",
    "1",
    "-1",
    "9223372036854775807",
    "1.5",
    "'s'",
    "\"t\"",
    "true",
    "null",
    "[1, 2]",
    "{'a': 1}",
    " + ",
    " - ",
    " * ",
    " / ",
    " % ",
    " == ",
    " && ",
    " || ",
    " ? ",
    " : ",
    "!",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    "size(",
    "int(",
    "string(",
    ".map(x, x)",
    ".filter(x, true)",
    ".all(x, x)",
    ".exists(x, x)",
    "has(params.x)",
    " in ",
    "'\\'",
    "\u{1F600}",
    "}}",
    "{{",
    "matches(",
    "x",
    "0u",
    "b'a'",
    "duration('1s')",
    "timestamp('2020-01-01T00:00:00Z')",
];

fn cel_ish() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(CEL_PIECES), 0..24).prop_map(|pieces| pieces.concat())
}

fn scope_data() -> (Map, Map, IndexMap<String, TaskFacts>) {
    let mut params = Map::new();
    params.insert("x".into(), serde_json::json!(3));
    let mut vars = Map::new();
    vars.insert("i".into(), serde_json::json!([1, 2, 3]));
    let mut tasks = IndexMap::new();
    tasks.insert(
        "A".into(),
        TaskFacts { result: "success".into(), exit_code: Some(0), duration_ms: 1, output: "out".into() },
    );
    (params, vars, tasks)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_toml_ish_text_never_panics_the_loader_and_errors_name_a_line(text in toml_ish()) {
        check_load(&text)?;
    }

    #[test]
    fn arbitrary_bytes_as_text_never_panic_the_loader(text in "\\PC{0,200}") {
        check_load(&text)?;
    }

    #[test]
    fn structured_random_packages_never_panic_the_loader_and_errors_name_a_line(text in structured_package()) {
        check_load(&text)?;
    }

    #[test]
    fn random_expressions_compile_and_evaluate_without_panic_within_a_bound(source in cel_ish()) {
        let (params, vars, tasks) = scope_data();
        let scope = Scope { params: &params, vars: &vars, tasks: &tasks };
        if let Ok(expression) = Expression::compile(&source) {
            let started = Instant::now();
            let _ = expression.evaluate(&scope);
            let _ = expression.evaluate_bool(&scope);
            prop_assert!(started.elapsed() < EVALUATION_BOUND, "`{}` took {:?}", source, started.elapsed());
        }
    }

    #[test]
    fn random_templates_parse_and_render_without_panic(parts in prop::collection::vec((cel_ish(), "[a-z {}/]{0,6}"), 0..4)) {
        let text: String = parts.iter().map(|(expr, literal)| format!("{literal}{{{{ {expr} }}}}")).collect();
        let (params, vars, tasks) = scope_data();
        let scope = Scope { params: &params, vars: &vars, tasks: &tasks };
        match Template::parse(&text) {
            Ok(template) => {
                let started = Instant::now();
                let _ = template.render(&scope);
                let _ = template.render_value(&scope);
                prop_assert!(started.elapsed() < EVALUATION_BOUND, "`{}` took {:?}", text, started.elapsed());
            }
            Err(e) => prop_assert!(e.offset <= text.len(), "offset {} past the text: {}", e.offset, e),
        }
    }
}
