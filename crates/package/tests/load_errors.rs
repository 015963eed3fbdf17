//! Load errors and warnings: every problem of a package file is reported with the file, the
//! line and column, the field path and a message, and all of a file's problems come together.

use std::path::{Path, PathBuf};
use std::time::Duration;

use switchyard_package::model::{
    AgentTarget, ConstraintValue, EvalOp, ForeachItems, Isolation, Join, OnParentEnd, ParamValue, TaskKind,
    TransactionOption,
};
use switchyard_package::{Diagnostic, LoadError, Loaded, Severity, load_package};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Writes `text` as `name` in `dir` and returns its path.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write package file");
    path
}

/// A fresh folder holding `p.toml` with `text`; the folder lives as long as the returned guard.
fn package(text: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = write(dir.path(), "p.toml", text);
    (dir, path)
}

/// Loads `path`, which must fail validation, and returns its diagnostics.
fn invalid(path: &Path) -> Vec<Diagnostic> {
    match load_package(path) {
        Err(LoadError::Invalid(diagnostics)) => diagnostics.0,
        Err(other) => panic!("expected LoadError::Invalid, got {other:?}"),
        Ok(loaded) => panic!("expected errors, but the package loaded (warnings: {:?})", loaded.warnings),
    }
}

/// Loads `path`, which must load, and returns the result.
fn valid(path: &Path) -> Loaded {
    match load_package(path) {
        Ok(loaded) => loaded,
        Err(LoadError::Invalid(diagnostics)) => panic!("expected the package to load, got:\n{diagnostics}"),
        Err(other) => panic!("expected the package to load, got {other:?}"),
    }
}

/// The diagnostics of `p.toml` holding `text`, which must fail validation.
fn errors_of(text: &str) -> Vec<Diagnostic> {
    let (_dir, path) = package(text);
    invalid(&path)
}

/// The 1-based line and character column of byte `offset` of `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The position of `needle`, which must occur exactly once in `text`.
fn at(text: &str, needle: &str) -> (usize, usize) {
    at_in(text, needle, needle)
}

/// The position of `part` within the only occurrence of `needle` in `text`.
fn at_in(text: &str, needle: &str, part: &str) -> (usize, usize) {
    let mut found = text.match_indices(needle);
    let (start, _) = found.next().unwrap_or_else(|| panic!("{needle:?} is not in the package text"));
    assert!(found.next().is_none(), "{needle:?} occurs more than once in the package text");
    let within = needle.find(part).unwrap_or_else(|| panic!("{part:?} is not in {needle:?}"));
    position(text, start + within)
}

/// The position of the `n`th (0-based) occurrence of `needle` in `text`.
fn at_nth(text: &str, needle: &str, n: usize) -> (usize, usize) {
    let (start, _) =
        text.match_indices(needle).nth(n).unwrap_or_else(|| panic!("{needle:?} does not occur {} times", n + 1));
    position(text, start)
}

fn listing(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(|d| format!("  {d}\n")).collect()
}

/// Asserts that an error at `(line, column)` with field path `path` has a message containing
/// `message`, and returns it.
fn expect<'d>(
    diagnostics: &'d [Diagnostic],
    (line, column): (usize, usize),
    path: &str,
    message: &str,
) -> &'d Diagnostic {
    diagnostics
        .iter()
        .find(|d| {
            d.severity == Severity::Error
                && d.line == line
                && d.column == column
                && d.path == path
                && d.message.contains(message)
        })
        .unwrap_or_else(|| panic!("no error at {line}:{column}: {path}: …{message}…\namong:\n{}", listing(diagnostics)))
}

/// Like [`expect`], and the diagnostic must be the only one.
fn expect_only(diagnostics: &[Diagnostic], at: (usize, usize), path: &str, message: &str) {
    expect(diagnostics, at, path, message);
    assert_eq!(diagnostics.len(), 1, "expected exactly one diagnostic, got:\n{}", listing(diagnostics));
}

/// Like [`expect_only`], for the only diagnostic of `p.toml` holding `text`, also checking the file.
fn only_error(text: &str, at: (usize, usize), path: &str, message: &str) {
    let diagnostics = errors_of(text);
    expect_only(&diagnostics, at, path, message);
    assert_eq!(diagnostics[0].file.file_name().and_then(|f| f.to_str()), Some("p.toml"));
}

// ---------------------------------------------------------------------------------------------
// Kinds and features that do not exist (yet)

#[test]
fn unknown_task_kind_is_named_with_its_position() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "Beam up"
kind = "teleport"
"#;
    only_error(text, at(text, r#""teleport""#), "tasks[0].kind", "unknown task kind `teleport` (expected process,");
}

#[test]
fn sql_task_errors_name_the_field_and_the_connections_there_are() {
    let text = r#"[package]
name = "p"

[connections.warehouse]
url = "sqlite://warehouse.db"

[connections.bad]
url = "mysql://db/x"

[[tasks]]
name = "Unknown connection"
kind = "sql"
connection = "wharehouse"
statement = "select 1"

[[tasks]]
name = "Both"
kind = "sql"
connection = "warehouse"
statement = "select 1"
file = "q.sql"

[[tasks]]
name = "Neither"
kind = "sql"
connection = "warehouse"
result = "not an identifier"
"#;
    let diagnostics = errors_of(text);
    expect(
        &diagnostics,
        at(text, r#""mysql://db/x""#),
        "connections.bad.url",
        "unsupported connection url \"mysql://db/x\"",
    );
    expect(
        &diagnostics,
        at(text, r#""wharehouse""#),
        "tasks[0].connection",
        "no connection named \"wharehouse\" (connections: warehouse, bad)",
    );
    expect(&diagnostics, at_nth(text, "[[tasks]]", 1), "tasks[1]", "give either `statement` or `file`, not both");
    expect(&diagnostics, at_nth(text, "[[tasks]]", 2), "tasks[2]", "missing required field `statement`");
    expect(&diagnostics, at(text, r#""not an identifier""#), "tasks[2].result", "must be an identifier");
    assert_eq!(diagnostics.len(), 5, "{}", listing(&diagnostics));
}

#[test]
fn sql_task_reads_its_statement_file_and_a_missing_file_is_an_error_at_file() {
    let dir = TempDir::new().expect("temp dir");
    write(dir.path(), "load.sql", "INSERT INTO t VALUES (1);\nINSERT INTO t VALUES (2);\n");
    let text = r#"[package]
name = "p"

[connections.db]
url = "sqlite://db.sqlite"

[[tasks]]
name = "Load"
kind = "sql"
connection = "db"
file = "load.sql"
bind = []
timeout = "5s"
transaction = "required"
isolation = "read_committed"

[[tasks]]
name = "Missing"
kind = "sql"
connection = "db"
file = "missing.sql"
"#;
    let path = write(dir.path(), "p.toml", text);
    let diagnostics = invalid(&path);
    assert_eq!(diagnostics.len(), 1, "{}", listing(&diagnostics));
    assert_eq!(diagnostics[0].path, "tasks[1].file");
    assert!(diagnostics[0].message.contains("cannot read SQL file") && diagnostics[0].message.contains("missing.sql"));

    let path = write(dir.path(), "ok.toml", &text[..text.find("[[tasks]]\nname = \"Missing\"").expect("second task")]);
    let loaded = valid(&path);
    let task = &loaded.package.tasks[0];
    let TaskKind::Sql(sql) = &task.kind else { panic!("Load is a sql task") };
    assert!(sql.statement.text.contains("VALUES (2)"));
    assert_eq!(task.transaction, TransactionOption::Required);
    assert_eq!(task.isolation, Isolation::ReadCommitted);
}

#[test]
fn transaction_and_isolation_values_are_checked() {
    let text = r#"[package]
name = "p"
transaction = "mandatory"
isolation = "snapshot"

[[tasks]]
name = "A"
kind = "sleep"
duration = "1s"
transaction = "not_supported"
"#;
    let diagnostics = errors_of(text);
    expect(
        &diagnostics,
        at(text, r#""mandatory""#),
        "package.transaction",
        "unknown transaction option \"mandatory\" (expected required, supported or not_supported)",
    );
    expect(
        &diagnostics,
        at(text, r#""snapshot""#),
        "package.isolation",
        "unknown isolation \"snapshot\" (expected read_uncommitted, read_committed, repeatable_read, serializable)",
    );
    assert_eq!(diagnostics.len(), 2, "{}", listing(&diagnostics));
}

#[test]
fn a_transaction_mixing_sqlite_with_another_database_through_a_child_package_is_refused() {
    let dir = TempDir::new().expect("temp dir");
    write(
        dir.path(),
        "child.toml",
        "[package]\nname = \"child\"\n\n[connections.remote]\nurl = \"postgres://etl@db:5432/w\"\n\n[[tasks]]\nname = \"R\"\nkind = \"sql\"\nconnection = \"remote\"\nstatement = \"select 1\"\n",
    );
    let parent = "[package]\nname = \"parent\"\n\n[connections.local]\nurl = \"sqlite://l.db\"\n\n[[tasks]]\nname = \"Tx\"\nkind = \"sequence\"\ntransaction = \"required\"\n\n[[tasks.tasks]]\nname = \"L\"\nkind = \"sql\"\nconnection = \"local\"\nstatement = \"select 1\"\n\n[[tasks.tasks]]\nname = \"Child\"\nkind = \"package\"\npath = \"child.toml\"\n";
    let path = write(dir.path(), "parent.toml", parent);
    let diagnostics = invalid(&path);
    assert_eq!(diagnostics.len(), 1, "{}", listing(&diagnostics));
    assert_eq!(diagnostics[0].path, "tasks[0].tasks[1].path");
    assert!(
        diagnostics[0]
            .message
            .contains("the transaction started by \"Tx\" (tasks[0]) would mix SQLite connection \"local\""),
        "{}",
        diagnostics[0].message
    );
    // The child not joining (the task does not) makes it two transactions: fine.
    let path = write(
        dir.path(),
        "apart.toml",
        &parent.replace("path = \"child.toml\"\n", "path = \"child.toml\"\ntransaction = \"not_supported\"\n"),
    );
    valid(&path);
}

#[test]
fn checkpoint_loads_with_its_file_and_usage() {
    let (_dir, path) =
        package("[package]\nname = \"p\"\ncheckpoint = { file = \"state/p.ckpt\", usage = \"if_exists\" }\n");
    let checkpoint = valid(&path).package.checkpoint.clone().expect("checkpoint read");
    assert_eq!(checkpoint.file, PathBuf::from("state/p.ckpt"));
    assert_eq!(checkpoint.usage, switchyard_package::model::CheckpointUsage::IfExists);
    let (_dir, path) = package("[package]\nname = \"p\"\ncheckpoint = { file = \"p.ckpt\" }\n");
    let usage = valid(&path).package.checkpoint.clone().expect("checkpoint read").usage;
    assert_eq!(usage, switchyard_package::model::CheckpointUsage::Never, "SSIS's default usage");
}

#[test]
fn a_bad_checkpoint_names_the_field_and_what_is_expected() {
    let text = r#"[package]
name = "p"
checkpoint = { usage = "sometimes", every = 3 }
"#;
    let diagnostics = errors_of(text);
    expect(&diagnostics, at(text, r#""sometimes""#), "package.checkpoint.usage", "expected never, if_exists, always");
    expect(&diagnostics, at(text, "every"), "package.checkpoint.every", "expected file, usage");
    expect(&diagnostics, at(text, "{ usage"), "package.checkpoint", "missing required field `file`");
    assert_eq!(diagnostics.len(), 3, "{}", listing(&diagnostics));
}

// ---------------------------------------------------------------------------------------------
// Names and constraints

#[test]
fn duplicate_task_name_in_one_container_is_reported_at_the_second_naming_the_first_line() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "Load"
kind = "sleep"
duration = "1s"

[[tasks]]
name = "Load"
kind = "sleep"
duration = "2s"
"#;
    let first_line = at_nth(text, r#""Load""#, 0).0;
    only_error(
        text,
        at_nth(text, r#""Load""#, 1),
        "tasks[1].name",
        &format!("duplicate task name \"Load\" in this container (first used at line {first_line})"),
    );
}

#[test]
fn the_same_task_name_in_different_containers_is_fine() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "Load"
kind = "sleep"
duration = "1s"

[[tasks]]
name = "Again"
kind = "sequence"
after = ["Load"]

  [[tasks.tasks]]
  name = "Load"
  kind = "sleep"
  duration = "1s"

  [[tasks.tasks]]
  name = "Again"
  kind = "sleep"
  duration = "1s"
  after = ["Load"]
"#;
    let (_dir, path) = package(text);
    let loaded = valid(&path);
    let tasks = &loaded.package.tasks;
    assert_eq!(tasks[1].after[0].index, 0);
    let inner = tasks[1].kind.children().expect("a sequence has children");
    assert_eq!(inner[0].name, "Load");
    assert_eq!(inner[1].after[0].task, "Load");
    assert_eq!(inner[1].after[0].index, 0);
}

#[test]
fn constraint_on_an_unknown_task_is_an_error_at_the_constraint() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "Load orders"
kind = "sleep"
duration = "1s"

[[tasks]]
name = "Report"
kind = "sleep"
duration = "1s"
after = ["Load orders", "Load ordrs"]
"#;
    only_error(
        text,
        at(text, r#""Load ordrs""#),
        "tasks[1].after[1]",
        "no task named \"Load ordrs\" in this container",
    );
}

#[test]
fn constraint_on_a_task_that_exists_only_in_another_container_is_an_error() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "Outer"
kind = "sleep"
duration = "1s"

[[tasks]]
name = "Group"
kind = "sequence"

  [[tasks.tasks]]
  name = "Inner"
  kind = "sleep"
  duration = "1s"

  [[tasks.tasks]]
  name = "Inner 2"
  kind = "sleep"
  duration = "1s"
  after = [{ task = "Outer", on = "completion" }]

[[tasks]]
name = "Last"
kind = "sleep"
duration = "1s"
after = ["Inner"]
"#;
    let diagnostics = errors_of(text);
    expect(
        &diagnostics,
        at(text, r#"{ task = "Outer""#),
        "tasks[1].tasks[1].after[0]",
        "no task named \"Outer\" in this container",
    );
    expect(
        &diagnostics,
        at_in(text, r#"["Inner"]"#, r#""Inner""#),
        "tasks[2].after[0]",
        "no task named \"Inner\" in this container",
    );
    assert_eq!(diagnostics.len(), 2, "{}", listing(&diagnostics));
}

#[test]
fn constraint_on_a_sibling_with_errors_is_not_reported_as_naming_no_task() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "Extract"
kind = "sleep"
duration = "soon"

[[tasks]]
name = "Query"
kind = "spreadsheet"

[[tasks]]
name = "Load"
kind = "sleep"
duration = "1s"
after = ["Extract", "Query"]
"#;
    let diagnostics = errors_of(text);
    expect(&diagnostics, at(text, r#""soon""#), "tasks[0].duration", "invalid duration");
    expect(&diagnostics, at(text, r#""spreadsheet""#), "tasks[1].kind", "unknown task kind");
    assert_eq!(diagnostics.len(), 2, "{}", listing(&diagnostics));
}

#[test]
fn cycle_of_three_tasks_names_the_tasks_in_order() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "A"
kind = "sleep"
duration = "1s"
after = ["C"]

[[tasks]]
name = "B"
kind = "sleep"
duration = "1s"
after = ["A"]

[[tasks]]
name = "C"
kind = "sleep"
duration = "1s"
after = ["B"]
"#;
    only_error(
        text,
        at_in(text, r#"["C"]"#, r#""C""#),
        "tasks[0].after[0]",
        r#"precedence constraints form a cycle: "A" -> "B" -> "C" -> "A""#,
    );
}

#[test]
fn task_waiting_on_itself_is_a_cycle() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "First"
kind = "sleep"
duration = "1s"

[[tasks]]
name = "Loop"
kind = "sleep"
duration = "1s"
after = ["First", { task = "Loop", on = "success" }]
"#;
    only_error(
        text,
        at(text, r#"{ task = "Loop""#),
        "tasks[1].after[1]",
        r#"precedence constraints form a cycle: "Loop" -> "Loop""#,
    );
}

// ---------------------------------------------------------------------------------------------
// Expressions and templates

#[test]
fn bad_cel_expression_in_when_is_reported_with_the_expression() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "A"
kind = "sleep"
duration = "1s"

[[tasks]]
name = "B"
kind = "sleep"
duration = "1s"
after = [{ task = "A", when = 'tasks["A"].exit_code ==' }]
"#;
    only_error(
        text,
        at(text, r#"'tasks["A"]"#),
        "tasks[1].after[0].when",
        r#"bad expression `tasks["A"].exit_code ==`: "#,
    );
}

#[test]
fn bad_template_in_a_command_argument_points_into_the_string() {
    // An unclosed `{{` is reported exactly where it opens.
    let text = r#"[package]
name = "p"

[[tasks]]
name = "A"
kind = "process"
command = ["load.sh", "--date={{ params.run_date"]
"#;
    only_error(text, at_in(text, r#""--date={{ params"#, "{{"), "tasks[0].command[1]", "bad template: unclosed `{{`");

    // A bad expression is reported inside the expression, between the braces.
    let text = r#"[package]
name = "p"

[[tasks]]
name = "A"
kind = "process"
command = ["load.sh", "{{ params. }}"]
"#;
    let diagnostics = errors_of(text);
    assert_eq!(diagnostics.len(), 1, "{}", listing(&diagnostics));
    let d = &diagnostics[0];
    assert_eq!((d.path.as_str(), d.severity), ("tasks[0].command[1]", Severity::Error));
    assert!(d.message.contains("bad template: invalid expression `params.`"), "{d}");
    let (line, open) = at_in(text, r#""{{ params. }}""#, "params");
    let (_, close) = at_in(text, r#""{{ params. }}""#, "}}");
    assert_eq!(d.line, line, "{d}");
    assert!((open..=close).contains(&d.column), "column {} is not within the expression: {d}", d.column);
}

#[test]
fn bad_template_in_a_multi_line_string_points_past_the_triple_quote() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "A"
kind = "process"
command = ["""echo {{ x"""]
"#;
    only_error(text, at_in(text, r#""""echo {{ x"#, "{{"), "tasks[0].command[0]", "unclosed `{{`");

    // A multi-line literal string drops the newline right after its opening quotes.
    let text = r#"[package]
name = "p"

[[tasks]]
name = "A"
kind = "process"
command = ["sh", '''
echo {{ y''']
"#;
    only_error(text, at(text, "{{ y"), "tasks[0].command[1]", "unclosed `{{`");
}

// ---------------------------------------------------------------------------------------------
// Numbers

#[test]
fn max_concurrent_zero_and_minus_two_are_refused() {
    for value in ["0", "-2"] {
        let text = format!("[package]\nname = \"p\"\nmax_concurrent = {value}\n");
        only_error(
            &text,
            at_in(&text, &format!("= {value}"), value),
            "package.max_concurrent",
            &format!("{value} is not allowed: use a number of tasks (1 or more) or -1"),
        );
    }
}

#[test]
fn max_concurrent_minus_one_and_four_are_accepted() {
    for value in [-1, 4] {
        let (_dir, path) = package(&format!("[package]\nname = \"p\"\nmax_concurrent = {value}\n"));
        let loaded = valid(&path);
        assert_eq!(loaded.package.max_concurrent, value);
        assert!(loaded.warnings.0.is_empty(), "{}", loaded.warnings);
    }
}

#[test]
fn max_errors_minus_one_is_refused() {
    let text = r#"[package]
name = "p"
max_errors = -1

[[tasks]]
name = "Group"
kind = "sequence"
max_errors = -1
"#;
    let diagnostics = errors_of(text);
    expect(&diagnostics, at_nth(text, "-1", 0), "package.max_errors", "-1 is out of range (0 to 4294967295)");
    expect(&diagnostics, at_nth(text, "-1", 1), "tasks[0].max_errors", "-1 is out of range (0 to 4294967295)");
    assert_eq!(diagnostics.len(), 2, "{}", listing(&diagnostics));
}

// ---------------------------------------------------------------------------------------------
// Missing required fields: reported at the table's header

#[test]
fn task_without_a_name_is_reported_at_its_header() {
    let text = r#"[package]
name = "p"

[[tasks]]
kind = "sleep"
duration = "1s"
"#;
    only_error(text, at(text, "[[tasks]]"), "tasks[0]", "missing required field `name`");
}

#[test]
fn task_without_a_kind_is_reported_at_its_header() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "A"

[[tasks]]
name = "B"
kind = "sequence"

  [[tasks.tasks]]
  name = "C"
"#;
    let diagnostics = errors_of(text);
    expect(
        &diagnostics,
        at_nth(text, "[[tasks]]", 0),
        "tasks[0]",
        "missing required field `kind` (process, sleep, package,",
    );
    expect(&diagnostics, at(text, "[[tasks.tasks]]"), "tasks[1].tasks[0]", "missing required field `kind`");
    assert_eq!(diagnostics.len(), 2, "{}", listing(&diagnostics));
}

#[test]
fn process_without_a_command_is_reported() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "A"
kind = "process"
dir = "/tmp"
"#;
    only_error(text, at(text, "[[tasks]]"), "tasks[0]", "missing required field `command`");
}

#[test]
fn sleep_without_a_duration_is_reported() {
    // An inline task table is reported at its opening brace.
    let text = r#"tasks = [{ name = "Nap", kind = "sleep" }]

[package]
name = "p"
"#;
    only_error(text, at(text, "{ name"), "tasks[0]", "missing required field `duration`");
}

#[test]
fn agent_job_without_agent_or_pool_is_reported() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "Job"
kind = "agent_job"
job = "load"
"#;
    only_error(text, at(text, "[[tasks]]"), "tasks[0]", "missing required field `agent` (a fixed agent) or `pool`");
}

#[test]
fn agent_job_with_both_agent_and_pool_is_reported() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "Job"
kind = "agent_job"
agent = "server-a"
pool = "etl"
job = "load"
"#;
    only_error(text, at(text, "[[tasks]]"), "tasks[0]", "give either `agent` or `pool`, not both");
}

#[test]
fn foreach_without_items_or_files_is_reported() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "Each"
kind = "foreach"

  [[tasks.tasks]]
  name = "Nap"
  kind = "sleep"
  duration = "1s"
"#;
    only_error(text, at(text, "[[tasks]]"), "tasks[0]", "missing required field `items` (a list) or `files` (a glob)");
}

// ---------------------------------------------------------------------------------------------
// Unknown fields

#[test]
fn unknown_top_level_field_is_reported() {
    let text = r#"[package]
name = "p"

[extras]
colour = "blue"
"#;
    only_error(text, at(text, "extras"), "extras", "unknown field `extras` at the top of a package");
}

#[test]
fn unknown_field_in_the_package_header_is_reported() {
    let text = r#"[package]
name = "p"
owner = "ops"
"#;
    only_error(text, at(text, "owner"), "package.owner", "unknown field `owner` in [package]");
}

#[test]
fn unknown_task_field_says_for_which_kind() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "A"
kind = "sleep"
duration = "1s"
colour = "blue"
"#;
    only_error(text, at(text, "colour"), "tasks[0].colour", "unknown field `colour` for a `sleep` task");
}

#[test]
fn unknown_constraint_field_is_reported() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "A"
kind = "sleep"
duration = "1s"

[[tasks]]
name = "B"
kind = "sleep"
duration = "1s"
after = [{ task = "A", weight = 2 }]
"#;
    only_error(text, at(text, "weight"), "tasks[1].after[0].weight", "unknown field `weight` in a constraint");
}

// ---------------------------------------------------------------------------------------------
// Wrong values

#[test]
fn wrong_type_names_what_was_expected_and_found() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "A"
kind = "sleep"
duration = "1s"
disabled = "yes"
"#;
    only_error(text, at(text, r#""yes""#), "tasks[0].disabled", "expected true or false, found string");
}

#[test]
fn bad_duration_is_quoted_with_examples() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "A"
kind = "sleep"
duration = "1s"
timeout = "5 parsecs"
"#;
    only_error(text, at(text, r#""5 parsecs""#), "tasks[0].timeout", "invalid duration \"5 parsecs\"");
}

#[test]
fn bad_join_is_reported() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "A"
kind = "sleep"
duration = "1s"
join = "some"
"#;
    only_error(text, at(text, r#""some""#), "tasks[0].join", "unknown join \"some\" (expected \"all\" or \"any\")");
}

#[test]
fn bad_on_is_reported() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "A"
kind = "sleep"
duration = "1s"

[[tasks]]
name = "B"
kind = "sleep"
duration = "1s"
after = [{ task = "A", on = "sometimes" }]
"#;
    only_error(
        text,
        at(text, r#""sometimes""#),
        "tasks[1].after[0].on",
        "unknown value \"sometimes\" (expected success, failure or completion)",
    );
}

#[test]
fn eval_and_without_when_is_reported() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "A"
kind = "sleep"
duration = "1s"

[[tasks]]
name = "B"
kind = "sleep"
duration = "1s"
after = [{ task = "A", on = "failure", eval = "and" }]
"#;
    only_error(text, at(text, r#""and""#), "tasks[1].after[0].eval", "eval = \"and\" needs an expression in `when`");
}

#[test]
fn invalid_toml_syntax_reports_a_position() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "A"
kind = "sleep"
duration = 
"#;
    let diagnostics = errors_of(text);
    assert_eq!(diagnostics.len(), 1, "{}", listing(&diagnostics));
    let d = &diagnostics[0];
    assert!(d.message.starts_with("invalid TOML: "), "{d}");
    assert_eq!(d.path, "");
    assert_eq!(d.line, at(text, "duration").0, "{d}");
    assert!(d.column > "duration =".len(), "{d}");

    let text = "[package]\nname = \"p\nmax_errors = 1\n";
    let diagnostics = errors_of(text);
    assert_eq!(diagnostics.len(), 1, "{}", listing(&diagnostics));
    assert_eq!(diagnostics[0].line, 2, "{}", diagnostics[0]);
    assert!(diagnostics[0].message.starts_with("invalid TOML: "), "{}", diagnostics[0]);
}

#[test]
fn all_errors_of_a_file_are_reported_together_sorted_by_line() {
    let text = r#"[package]
name = "p"
max_concurrent = 0
owner = "ops"

[[tasks]]
name = "A"
kind = "sleep"
duration = "forever"

[[tasks]]
name = "B"
kind = "teleport"

[[tasks]]
name = "C"
kind = "process"
command = ["echo", "{{ params.x"]
disabled = "no"
after = ["Nobody"]

[[tasks]]
name = "C"
kind = "sleep"
duration = "1s"
"#;
    let diagnostics = errors_of(text);
    let expected = [
        (at(text, "0\n"), "package.max_concurrent", "0 is not allowed"),
        (at(text, "owner"), "package.owner", "unknown field `owner`"),
        (at(text, r#""forever""#), "tasks[0].duration", "invalid duration \"forever\""),
        (at(text, r#""teleport""#), "tasks[1].kind", "unknown task kind `teleport`"),
        (at_in(text, r#""{{ params.x"#, "{{"), "tasks[2].command[1]", "unclosed `{{`"),
        (at(text, r#""no""#), "tasks[2].disabled", "expected true or false"),
        (at(text, r#""Nobody""#), "tasks[2].after[0]", "no task named \"Nobody\""),
        (at_nth(text, r#""C""#, 1), "tasks[3].name", "duplicate task name \"C\""),
    ];
    for (position, path, message) in expected {
        expect(&diagnostics, position, path, message);
    }
    assert_eq!(diagnostics.len(), expected.len(), "{}", listing(&diagnostics));
    let lines: Vec<usize> = diagnostics.iter().map(|d| d.line).collect();
    let expected_lines: Vec<usize> = expected.iter().map(|((line, _), _, _)| *line).collect();
    assert_eq!(lines, expected_lines, "diagnostics out of order:\n{}", listing(&diagnostics));
}

// ---------------------------------------------------------------------------------------------
// Child packages

#[test]
fn child_package_errors_are_reported_against_the_child_file_and_at_the_parents_path() {
    let dir = tempfile::tempdir().unwrap();
    let child_text = r#"[package]
name = "child"

[[tasks]]
name = "Nap"
kind = "sleep"
duration = "a while"
"#;
    let parent_text = r#"[package]
name = "parent"

[[tasks]]
name = "Run child"
kind = "package"
path = "child.toml"
"#;
    let child = write(dir.path(), "child.toml", child_text);
    let parent = write(dir.path(), "parent.toml", parent_text);
    let diagnostics = invalid(&parent);

    let in_child = expect(&diagnostics, at(child_text, r#""a while""#), "tasks[0].duration", "invalid duration");
    assert_eq!(in_child.file, child);
    assert!(in_child.to_string().starts_with(&format!("{}:", child.display())), "{in_child}");
    let in_parent = expect(
        &diagnostics,
        at(parent_text, r#""child.toml""#),
        "tasks[0].path",
        "child package \"child.toml\" has errors",
    );
    assert_eq!(in_parent.file, parent);
    assert_eq!(diagnostics.len(), 2, "{}", listing(&diagnostics));
}

#[test]
fn missing_child_package_file_is_an_error_at_path() {
    let text = r#"[package]
name = "parent"

[[tasks]]
name = "Run child"
kind = "package"
path = "missing.toml"
"#;
    only_error(text, at(text, r#""missing.toml""#), "tasks[0].path", "missing.toml not found");
}

#[test]
fn child_package_referencing_its_parent_is_reported_as_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let parent_text = r#"[package]
name = "parent"

[[tasks]]
name = "Run child"
kind = "package"
path = "child.toml"
"#;
    let child_text = r#"[package]
name = "child"

[[tasks]]
name = "Run parent"
kind = "package"
path = "parent.toml"
"#;
    let parent = write(dir.path(), "parent.toml", parent_text);
    let child = write(dir.path(), "child.toml", child_text);
    let diagnostics = invalid(&parent);

    let cycle = expect(
        &diagnostics,
        at(child_text, r#""parent.toml""#),
        "tasks[0].path",
        "child packages form a cycle: parent.toml -> child.toml -> parent.toml",
    );
    assert_eq!(cycle.file, child);
    let in_parent = expect(&diagnostics, at(parent_text, r#""child.toml""#), "tasks[0].path", "has errors");
    assert_eq!(in_parent.file, parent);
    assert_eq!(diagnostics.len(), 2, "{}", listing(&diagnostics));

    // A package that runs itself is a cycle too.
    let text = parent_text.replace("child.toml", "self.toml");
    let own = write(dir.path(), "self.toml", &text);
    let diagnostics = invalid(&own);
    expect_only(
        &diagnostics,
        at(&text, r#""self.toml""#),
        "tasks[0].path",
        "child packages form a cycle: self.toml -> self.toml",
    );
}

#[test]
fn parameter_the_child_does_not_declare_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "child.toml", "[package]\nname = \"child\"\n\n[parameters]\nrun_date = \"2026-01-01\"\n");
    let text = r#"[package]
name = "parent"

[[tasks]]
name = "Run child"
kind = "package"
path = "child.toml"
params = { run_date = "{{ params.day }}", region = "eu" }

[parameters]
day = "2026-11-21"
"#;
    let parent = write(dir.path(), "parent.toml", text);
    let diagnostics = invalid(&parent);
    expect_only(
        &diagnostics,
        at(text, "region"),
        "tasks[0].params.region",
        "child package \"child\" has no parameter `region` (it has: run_date)",
    );
}

// ---------------------------------------------------------------------------------------------
// Warnings

const FAILURE_PATH: &str = r#"[package]
name = "p"

[[tasks]]
name = "Extract"
kind = "process"
command = ["false"]

[[tasks]]
name = "Alert"
kind = "process"
command = ["echo", "extract failed"]
after = [{ task = "Extract", on = "failure" }]
"#;

#[test]
fn failure_constraint_at_the_default_max_errors_loads_with_a_warning_at_the_constraint() {
    let (_dir, path) = package(FAILURE_PATH);
    let loaded = valid(&path);
    let warnings = &loaded.warnings.0;
    assert_eq!(warnings.len(), 1, "{}", listing(warnings));
    let w = &warnings[0];
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!((w.line, w.column), at(FAILURE_PATH, r#"{ task = "Extract""#), "{w}");
    assert_eq!(w.path, "tasks[1].after[0]");
    assert!(w.message.contains("a failure of \"Extract\" runs this task"), "{w}");
    assert!(w.message.contains("max_errors is 1"), "{w}");
    assert!(w.to_string().contains(": warning: tasks[1].after[0]: "), "{w}");
}

/// A container forced to success still hands its errors to the package (engine/forced.rs, as
/// SSIS counts them in every parent), so it no longer hides the warning.
#[test]
fn a_container_forced_to_success_does_not_hide_the_warning() {
    let text = r#"[package]
name = "p"

[[tasks]]
name = "Stage"
kind = "sequence"
max_errors = 0
force_result = "success"

  [[tasks.tasks]]
  name = "Extract"
  kind = "process"
  command = ["false"]

  [[tasks.tasks]]
  name = "Alert"
  kind = "process"
  command = ["true"]
  after = [{ task = "Extract", on = "failure" }]
"#;
    let (_dir, path) = package(text);
    let loaded = valid(&path);
    let warnings = &loaded.warnings.0;
    assert_eq!(warnings.len(), 1, "{}", listing(warnings));
    assert!(warnings[0].message.contains("still fails the package \"p\""), "{}", warnings[0]);
}

#[test]
fn failure_constraint_with_max_errors_two_loads_without_a_warning() {
    let text = FAILURE_PATH.replace("name = \"p\"\n", "name = \"p\"\nmax_errors = 2\n");
    let (_dir, path) = package(&text);
    let loaded = valid(&path);
    assert!(loaded.warnings.0.is_empty(), "{}", loaded.warnings);
    assert_eq!(loaded.package.max_errors, 2);
}

// ---------------------------------------------------------------------------------------------
// A valid package

#[test]
fn valid_package_with_every_kind_loads_into_the_model() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "child.toml", "[package]\nname = \"child\"\n\n[parameters]\nday = \"\"\n");
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let text = r#"[package]
name = "everything"
description = "one of each"

[parameters]
run_date = "2026-11-21"
limit = 3

[[tasks]]
name = "Run"
kind = "process"
command = ["sh", "-c", "echo {{ params.run_date }}"]
env = { REGION = "eu" }
timeout = "30s"

[[tasks]]
name = "Nap"
kind = "sleep"
duration = "1500ms"
after = ["Run"]

[[tasks]]
name = "Child"
kind = "package"
path = "child.toml"
params = { day = "{{ params.run_date }}" }
after = [{ task = "Nap", on = "success" }]

[[tasks]]
name = "Job"
kind = "agent_job"
pool = "etl"
job = "load_orders"
after = ["Child", { task = "Run", when = "tasks['Run'].exit_code == 0" }]
join = "any"

[[tasks]]
name = "Group"
kind = "sequence"
max_errors = 0

  [[tasks.tasks]]
  name = "Inner"
  kind = "agent_job"
  agent = "server-a"
  job = "refresh"
  wait = true
  retries = 2
  on_parent_end = "abandon"

[[tasks]]
name = "Each item"
kind = "foreach"
items = ["a", "b", "{{ params.run_date }}"]

  [[tasks.tasks]]
  name = "Echo"
  kind = "process"
  command = ["echo", "{{ vars.item }}"]

[[tasks]]
name = "Each file"
kind = "foreach"
files = "in/*.csv"
var = "file"
parallel = 4

  [[tasks.tasks]]
  name = "Load"
  kind = "process"
  command = ["load.sh", "{{ vars.file }}"]

[[tasks]]
name = "Count"
kind = "for"
init = "i = 0"
condition = "vars.i < params.limit"
assign = "i = vars.i + 1"

  [[tasks.tasks]]
  name = "Tick"
  kind = "sleep"
  duration = "10ms"
"#;
    let path = write(dir.path(), "everything.toml", text);
    let loaded = valid(&path);
    assert!(loaded.warnings.0.is_empty(), "{}", loaded.warnings);
    let p = &loaded.package;
    assert_eq!(p.name, "everything");
    assert_eq!(p.description.as_deref(), Some("one of each"));
    assert_eq!((p.max_concurrent, p.max_errors), (-1, 1));
    assert_eq!(p.file, path);
    assert_eq!(p.dir, dir.path());
    assert_eq!(p.parameters.keys().collect::<Vec<_>>(), ["run_date", "limit"]);
    assert_eq!(p.parameters["limit"], serde_json::json!(3));
    let names: Vec<&str> = p.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Run", "Nap", "Child", "Job", "Group", "Each item", "Each file", "Count"]);
    let kinds: Vec<&str> = p.tasks.iter().map(|t| t.kind.name()).collect();
    assert_eq!(kinds, ["process", "sleep", "package", "agent_job", "sequence", "foreach", "foreach", "for"]);
    for task in &p.tasks {
        assert_eq!(task.max_errors, if task.name == "Group" { 0 } else { 1 }, "{}", task.name);
        assert!(!task.disabled && !task.fail_parent_on_failure && !task.fail_package_on_failure);
        assert!(task.force_result.is_none());
    }

    let TaskKind::Process(run) = &p.tasks[0].kind else { panic!("Run is a process") };
    let command: Vec<&str> = run.command.iter().map(|t| t.source()).collect();
    assert_eq!(command, ["sh", "-c", "echo {{ params.run_date }}"]);
    assert_eq!(run.command[0].literal(), Some("sh"));
    assert!(run.command[2].literal().is_none());
    assert_eq!(run.env.len(), 1);
    assert_eq!((run.env[0].0.as_str(), run.env[0].1.source()), ("REGION", "eu"));
    assert!(run.dir.is_none());
    assert_eq!(run.success_codes, [0]);
    assert_eq!(p.tasks[0].timeout, Some(Duration::from_secs(30)));
    assert_eq!(p.tasks[0].join, Join::All);

    let TaskKind::Sleep(nap) = &p.tasks[1].kind else { panic!("Nap is a sleep") };
    assert_eq!(nap.duration, Duration::from_millis(1500));
    let after = &p.tasks[1].after;
    assert_eq!(after.len(), 1);
    assert_eq!((after[0].task.as_str(), after[0].index), ("Run", 0));
    assert_eq!((after[0].on, after[0].eval), (ConstraintValue::Success, EvalOp::Constraint));
    assert!(after[0].when.is_none());

    let TaskKind::Package(child) = &p.tasks[2].kind else { panic!("Child is a package task") };
    assert_eq!(child.path.literal(), Some("child.toml"));
    assert_eq!(child.child.as_ref().map(|c| c.name.as_str()), Some("child"));
    assert!(matches!(&child.params["day"], ParamValue::Template(t) if t.source() == "{{ params.run_date }}"));
    assert_eq!((p.tasks[2].after[0].on, p.tasks[2].after[0].eval), (ConstraintValue::Success, EvalOp::Constraint));

    let job_task = &p.tasks[3];
    let TaskKind::AgentJob(job) = &job_task.kind else { panic!("Job is an agent_job") };
    assert_eq!(job.target, AgentTarget::Pool("etl".into()));
    assert_eq!(job.job, "load_orders");
    assert!(job.params.is_empty());
    assert!(!job.wait);
    assert_eq!(job.retries, 0);
    assert_eq!(job.retry_backoff, Duration::from_millis(200));
    assert_eq!(job.crash_limit, 3);
    assert_eq!(job.queue_timeout, Duration::from_secs(600));
    assert_eq!(job.on_parent_end, OnParentEnd::Cancel);
    assert_eq!(job_task.join, Join::Any);
    assert_eq!(job_task.after.len(), 2);
    assert_eq!((job_task.after[1].task.as_str(), job_task.after[1].index), ("Run", 0));
    assert_eq!(job_task.after[1].eval, EvalOp::Expression);
    assert_eq!(job_task.after[1].when.as_ref().map(|w| w.source()), Some("tasks['Run'].exit_code == 0"));

    let TaskKind::Sequence(group) = &p.tasks[4].kind else { panic!("Group is a sequence") };
    assert_eq!(group.tasks.len(), 1);
    let TaskKind::AgentJob(inner) = &group.tasks[0].kind else { panic!("Inner is an agent_job") };
    assert_eq!(inner.target, AgentTarget::Agent("server-a".into()));
    assert!(inner.wait);
    assert_eq!(inner.retries, 2);
    assert_eq!(inner.on_parent_end, OnParentEnd::Abandon);
    assert_eq!(group.tasks[0].max_errors, 1);

    let TaskKind::Foreach(items) = &p.tasks[5].kind else { panic!("Each item is a foreach") };
    assert_eq!((items.var.as_str(), items.parallel), ("item", 1));
    let ForeachItems::List(list) = &items.items else { panic!("an inline list") };
    assert_eq!(list.len(), 3);
    assert!(matches!(&list[0], ParamValue::Literal(v) if v == "a"));
    assert!(matches!(&list[2], ParamValue::Template(_)));
    assert_eq!(items.body.tasks[0].name, "Echo");

    let TaskKind::Foreach(files) = &p.tasks[6].kind else { panic!("Each file is a foreach") };
    assert_eq!((files.var.as_str(), files.parallel), ("file", 4));
    assert!(matches!(&files.items, ForeachItems::Files(glob) if glob.source() == "in/*.csv"));
    assert_eq!(files.body.tasks[0].name, "Load");

    let TaskKind::For(count) = &p.tasks[7].kind else { panic!("Count is a for loop") };
    assert_eq!(count.init.len(), 1);
    assert_eq!((count.init[0].var.as_str(), count.init[0].value.source()), ("i", "0"));
    assert_eq!(count.condition.source(), "vars.i < params.limit");
    assert_eq!(count.assign[0].var, "i");
    assert_eq!(count.assign[0].value.source(), "vars.i + 1");
    assert_eq!(count.body.tasks[0].name, "Tick");
}

/// Issue 12: a package nested 1,000 deep yielded 921 identical "recursion limit" lines at 1:1.
#[test]
fn a_package_nested_past_the_parsers_limit_is_one_error_saying_what_to_do() {
    let mut text = String::from("[package]\nname = \"deep\"\n");
    let mut header = String::from("tasks");
    for i in 0..1000 {
        text.push_str(&format!("[[{header}]]\nname = \"c{i}\"\nkind = \"sequence\"\n"));
        header.push_str(".tasks");
    }
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].message.contains("nested too deeply"), "{errors:#?}");
}
