//! Transactions (DESIGN.md §3) through `switchyard run` as a user calls it, asserted from the
//! databases themselves: the A-F example of the SSIS documentation, rollback scope, a
//! NotSupported container inside a transaction, isolation, timeouts canceled on the server, and
//! (PostgreSQL) two-phase commit and the recovery of what a killed run left prepared. The same
//! scenarios run on SQLite and on a throwaway PostgreSQL server.

use std::path::{Path, PathBuf};

use serde_json::Value;
use switchyard_tests::{
    COMMAND_DEADLINE, CommandOutput, PostgresServer, RunningProcess, Workspace, example, switchyard_command,
};

/// Where a scenario's databases live.
enum Backend {
    /// One SQLite file per database name, in the test's folder.
    Sqlite(PathBuf),
    /// One PostgreSQL database per name, on the test's server.
    Postgres(PostgresServer),
}

impl Backend {
    fn sqlite(workspace: &Workspace) -> Backend {
        Backend::Sqlite(workspace.root().to_path_buf())
    }

    /// A server for `test`, or None when PostgreSQL may be skipped and cannot start.
    fn postgres(test: &str, databases: &[&str]) -> Option<Backend> {
        let server = PostgresServer::for_test(test)?;
        for name in databases {
            server.create_database(name);
        }
        Some(Backend::Postgres(server))
    }

    fn url(&self, database: &str) -> String {
        match self {
            Backend::Sqlite(dir) => format!("sqlite://{}", dir.join(format!("{database}.db")).display()),
            Backend::Postgres(server) => server.url(database),
        }
    }

    /// The first column of every row `sql` returns on `database`, as text, sorted.
    fn column(&self, database: &str, sql: &str) -> Vec<String> {
        let mut values: Vec<String> = match self {
            Backend::Sqlite(dir) => {
                let path = dir.join(format!("{database}.db"));
                let connection = rusqlite::Connection::open(&path).expect("the test database opens");
                let mut statement = connection.prepare(sql).expect("the test query prepares");
                statement
                    .query_map([], |row| row.get::<_, rusqlite::types::Value>(0))
                    .expect("the test query runs")
                    .map(|v| match v.expect("a row") {
                        rusqlite::types::Value::Text(t) => t,
                        other => format!("{other:?}"),
                    })
                    .collect()
            }
            Backend::Postgres(server) => {
                server.psql(database, sql).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
            }
        };
        values.sort();
        values
    }
}

/// `switchyard run PACKAGE --json --set ...` with `SWITCHYARD_DATA_DIR=data` and `env`.
pub(crate) fn run(package: &Path, data: &Path, sets: &[String], env: &[(&str, &str)]) -> CommandOutput {
    let mut args = vec!["run".to_string(), package.display().to_string(), "--json".to_string()];
    for set in sets {
        args.push("--set".into());
        args.push(set.clone());
    }
    let mut command = switchyard_command(args);
    command.env("SWITCHYARD_DATA_DIR", data);
    for (k, v) in env {
        command.env(k, v);
    }
    RunningProcess::spawn(&mut command).wait(COMMAND_DEADLINE)
}

fn json(output: &CommandOutput) -> Value {
    serde_json::from_str(&output.stdout).unwrap_or_else(|e| panic!("--json prints JSON ({e})\n{output}"))
}

fn task_message(result: &Value, path: &str) -> String {
    let task = result["tasks"].as_array().into_iter().flatten().find(|t| t["path"] == path);
    task.and_then(|t| t["message"].as_str()).unwrap_or_else(|| panic!("no task {path} in {result:#}")).to_string()
}

// ---------------------------------------------------------------------------------------------
// The A-F example

/// Runs examples/transactions/a.toml failing `fail` (or nothing) on fresh databases, and returns
/// the packages whose writes stand in A's, C's and E's databases.
fn run_a_to_f(backend: &Backend, workspace: &Workspace, fail: &str) -> [Vec<String>; 3] {
    let names = ["a", "c", "e"];
    for name in names {
        if let Backend::Postgres(server) = backend {
            server.psql(name, "DROP TABLE IF EXISTS writes");
        } else {
            let _ = std::fs::remove_file(workspace.path(format!("{name}.db")));
        }
    }
    let sets = vec![
        format!("fail={fail}"),
        format!("db_a={}", backend.url("a")),
        format!("db_c={}", backend.url("c")),
        format!("db_e={}", backend.url("e")),
    ];
    let output = run(&example("transactions/a.toml"), &workspace.path("data"), &sets, &[]);
    output.assert_exit(if fail.is_empty() { 0 } else { 1 });
    names.map(|name| backend.column(name, "SELECT package FROM writes"))
}

/// The package failing, then the packages whose writes stand in A's, C's and E's databases.
type Standing = (&'static str, &'static [&'static str], &'static [&'static str], &'static [&'static str]);

fn a_to_f_shares_transactions_as_the_ssis_documentation_says(backend: &Backend, workspace: &Workspace) {
    let s = |list: &[&str]| list.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    // (package failing, A's database, C's database, E's database)
    let expected: [Standing; 7] = [
        ("", &["A", "B", "D"], &["C", "F"], &["E"]),
        // A, B and D share A's transaction: any of them failing rolls back all three (and
        // fails A); C's transaction committed on its own; E's write stands alone.
        ("A", &[], &["C", "F"], &["E"]),
        ("B", &[], &["C", "F"], &["E"]),
        ("D", &[], &["C", "F"], &["E"]),
        // E fails after its write, which was in no transaction: it stands; A's rolls back.
        ("E", &[], &["C", "F"], &["E"]),
        // C and F share C's transaction: either failing rolls both back, and fails A too.
        ("C", &[], &[], &["E"]),
        ("F", &[], &[], &["E"]),
    ];
    for (fail, a, c, e) in expected {
        let [in_a, in_c, in_e] = run_a_to_f(backend, workspace, fail);
        assert_eq!((in_a, in_c, in_e), (s(a), s(c), s(e)), "writes standing when package {fail:?} fails");
    }
}

#[test]
fn a_to_f_example_on_sqlite() {
    let workspace = Workspace::new();
    a_to_f_shares_transactions_as_the_ssis_documentation_says(&Backend::sqlite(&workspace), &workspace);
}

#[test]
fn a_to_f_example_on_postgres() {
    let Some(backend) = Backend::postgres("a_to_f_example_on_postgres", &["a", "c", "e"]) else { return };
    a_to_f_shares_transactions_as_the_ssis_documentation_says(&backend, &Workspace::new());
}

// ---------------------------------------------------------------------------------------------
// Rollback scope, and a NotSupported container inside a transaction

/// A package with `transaction` and four Supported sql tasks; the fourth fails.
fn four_writes(transaction: &str) -> String {
    let mut text = format!(
        "[package]\nname = \"four\"\ntransaction = \"{transaction}\"\n\n[parameters]\ndb = \"\"\n\n[connections.db]\nurl = \"{{{{ params.db }}}}\"\n"
    );
    let statements = [
        "INSERT INTO t (v) VALUES ('one')",
        "INSERT INTO t (v) VALUES ('two')",
        "INSERT INTO t (v) VALUES ('three')",
        // One statement writing two rows, the second refused: its own work is all undone.
        "INSERT INTO t (v) VALUES ('four'), (NULL)",
    ];
    for (i, statement) in statements.iter().enumerate() {
        text += &format!(
            "\n[[tasks]]\nname = \"Write {}\"\nkind = \"sql\"\nconnection = \"db\"\nstatement = \"{statement}\"\n",
            i + 1
        );
        if i > 0 {
            text += &format!("after = [\"Write {i}\"]\n");
        }
    }
    text
}

fn rollback_scope_follows_the_package_transaction(backend: &Backend, workspace: &Workspace) {
    let data = workspace.path("data");
    let prepare = |backend: &Backend| match backend {
        Backend::Postgres(server) => {
            server.psql("scope", "DROP TABLE IF EXISTS t; CREATE TABLE t (v TEXT NOT NULL)");
        }
        Backend::Sqlite(dir) => {
            let _ = std::fs::remove_file(dir.join("scope.db"));
            let connection = rusqlite::Connection::open(dir.join("scope.db")).expect("opens");
            connection.execute_batch("CREATE TABLE t (v TEXT NOT NULL)").expect("creates");
        }
    };
    let db = format!("db={}", backend.url("scope"));

    prepare(backend);
    let required = workspace.write("required.toml", &four_writes("required"));
    let output = run(&required, &data, std::slice::from_ref(&db), &[]);
    output.assert_exit(1);
    assert!(backend.column("scope", "SELECT v FROM t").is_empty(), "one failure undoes all four\n{output}");
    let message = task_message(&json(&output), "Write 4");
    assert!(message.contains("task \"Write 4\"") && message.contains("connection \"db\""), "{message}");
    assert!(message.to_lowercase().contains("null"), "the database's own message: {message}");

    prepare(backend);
    let not_supported = workspace.write("not_supported.toml", &four_writes("not_supported"));
    run(&not_supported, &data, &[db], &[]).assert_exit(1);
    assert_eq!(
        backend.column("scope", "SELECT v FROM t"),
        ["one", "three", "two"],
        "only the failing statement's work is missing"
    );
}

#[test]
fn rollback_scope_on_sqlite() {
    let workspace = Workspace::new();
    rollback_scope_follows_the_package_transaction(&Backend::sqlite(&workspace), &workspace);
}

#[test]
fn rollback_scope_on_postgres() {
    let Some(backend) = Backend::postgres("rollback_scope_on_postgres", &["scope"]) else { return };
    rollback_scope_follows_the_package_transaction(&backend, &Workspace::new());
}

/// A Required package writes to `outer`, a NotSupported container writes to `inner`, then the
/// package fails.
const NOT_SUPPORTED_INSIDE: &str = r#"
[package]
name = "nested"
transaction = "required"

[parameters]
outer = ""
inner = ""

[connections.outer]
url = "{{ params.outer }}"

[connections.inner]
url = "{{ params.inner }}"

[[tasks]]
name = "Outer write"
kind = "sql"
connection = "outer"
statement = "INSERT INTO t (v) VALUES ('outer')"

[[tasks]]
name = "Independent"
kind = "sequence"
transaction = "not_supported"
after = ["Outer write"]

[[tasks.tasks]]
name = "Inner write"
kind = "sql"
connection = "inner"
statement = "INSERT INTO t (v) VALUES ('inner')"

[[tasks]]
name = "Break"
kind = "process"
command = ["false"]
after = ["Independent"]
"#;

fn not_supported_container_commits_independently(backend: &Backend, workspace: &Workspace) {
    for name in ["txn_outer", "txn_inner"] {
        match backend {
            Backend::Postgres(server) => {
                server.psql(name, "CREATE TABLE t (v TEXT NOT NULL)");
            }
            Backend::Sqlite(dir) => {
                let connection = rusqlite::Connection::open(dir.join(format!("{name}.db"))).expect("opens");
                connection.execute_batch("CREATE TABLE t (v TEXT NOT NULL)").expect("creates");
            }
        }
    }
    let package = workspace.write("nested.toml", NOT_SUPPORTED_INSIDE);
    let sets = [format!("outer={}", backend.url("txn_outer")), format!("inner={}", backend.url("txn_inner"))];
    run(&package, &workspace.path("data"), &sets, &[]).assert_exit(1);
    assert!(backend.column("txn_outer", "SELECT v FROM t").is_empty(), "the package's transaction rolled back");
    assert_eq!(backend.column("txn_inner", "SELECT v FROM t"), ["inner"], "the container outside it committed");
}

#[test]
fn not_supported_container_inside_a_transaction_commits_independently_on_sqlite() {
    let workspace = Workspace::new();
    not_supported_container_commits_independently(&Backend::sqlite(&workspace), &workspace);
}

#[test]
fn not_supported_container_inside_a_transaction_commits_independently_on_postgres() {
    let name = "not_supported_container_inside_a_transaction_commits_independently_on_postgres";
    let Some(backend) = Backend::postgres(name, &["txn_outer", "txn_inner"]) else { return };
    not_supported_container_commits_independently(&backend, &Workspace::new());
}
