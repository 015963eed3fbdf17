//! What only PostgreSQL shows: the isolation level a transaction starts with, two-phase commit
//! across two databases, and the recovery of a prepared transaction a killed run left behind;
//! and, on both databases, a timeout that cancels the statement on the server. `validate`
//! refuses a transaction that would mix SQLite with another connection.

use serde_json::Value;
use switchyard_tests::{CommandOutput, PostgresServer, Workspace, switchyard};

use crate::transactions::run;

fn message_of(output: &CommandOutput, path: &str) -> String {
    let result: Value = serde_json::from_str(&output.stdout).unwrap_or_else(|e| panic!("JSON ({e})\n{output}"));
    let task = result["tasks"].as_array().into_iter().flatten().find(|t| t["path"] == path);
    task.and_then(|t| t["message"].as_str()).unwrap_or_else(|| panic!("no task {path}\n{output}")).to_string()
}

const ISOLATION: &str = r#"
[package]
name = "isolation"
transaction = "required"
isolation = "read_committed"

[parameters]
db = ""

[connections.db]
url = "{{ params.db }}"

[[tasks]]
name = "Level"
kind = "sql"
connection = "db"
statement = "SHOW transaction_isolation"
result = "level"

# Joins the package's transaction: its own isolation does not apply (it starts nothing).
[[tasks]]
name = "Joined"
kind = "sql"
connection = "db"
statement = "SHOW transaction_isolation"
result = "joined"
transaction = "required"
isolation = "repeatable_read"
after = ["Level"]

# Starts a transaction of its own (outside the package's), with its own isolation.
[[tasks]]
name = "Own"
kind = "sequence"
transaction = "not_supported"
after = ["Joined"]

[[tasks.tasks]]
name = "Default level"
kind = "sql"
connection = "db"
statement = "SHOW transaction_isolation"
result = "own"
transaction = "required"

[[tasks]]
name = "Report"
kind = "process"
command = ["echo", "{{ vars.level }}|{{ vars.joined }}|{{ vars.own }}"]
after = ["Own"]
"#;

#[test]
fn isolation_applies_where_a_transaction_starts() {
    let Some(server) = PostgresServer::for_test("isolation_applies_where_a_transaction_starts") else { return };
    let workspace = Workspace::new();
    let package = workspace.write("isolation.toml", ISOLATION);
    let output = run(&package, &workspace.path("data"), &[format!("db={}", server.url("postgres"))], &[]);
    output.assert_exit(0);
    let result: Value = serde_json::from_str(&output.stdout).expect("JSON");
    let report = result["tasks"].as_array().into_iter().flatten().find(|t| t["path"] == "Report").expect("Report");
    // The package's level, the joiner's too (its own is ignored), and the default where a task
    // starts one of its own: serializable, as in SSIS.
    assert!(message_of(&output, "Level").contains("vars.level = \"read committed\""), "{output}");
    assert!(message_of(&output, "Joined").contains("vars.joined = \"read committed\""), "{output}");
    assert!(message_of(&output, "Own/Default level").contains("vars.own = \"serializable\""), "{output}");
    assert_eq!(report["result"], "success");
}

/// Writes the same row to two PostgreSQL databases in one transaction.
const TWO_DATABASES: &str = r#"
[package]
name = "two"
transaction = "required"

[parameters]
first = ""
second = ""
run = ""
fail = false

[connections.first]
url = "{{ params.first }}"

[connections.second]
url = "{{ params.second }}"

[[tasks]]
name = "First"
kind = "sql"
connection = "first"
statement = "INSERT INTO t (v) VALUES ($1)"
bind = ["{{ params.run }}"]

[[tasks]]
name = "Second"
kind = "sql"
connection = "second"
statement = "INSERT INTO t (v) VALUES ($1)"
bind = ["{{ params.run }}"]

[[tasks]]
name = "Break"
kind = "process"
command = ["false"]
after = [{ task = "First", when = "params.fail" }, { task = "Second", when = "params.fail" }]
"#;

fn two_databases(test: &str) -> Option<(PostgresServer, Workspace, std::path::PathBuf)> {
    let server = PostgresServer::for_test(test)?;
    for db in ["one", "two"] {
        server.create_database(db);
        server.psql(db, "CREATE TABLE t (v TEXT NOT NULL)");
    }
    let workspace = Workspace::new();
    let package = workspace.write("two.toml", TWO_DATABASES);
    Some((server, workspace, package))
}

fn sets(server: &PostgresServer, run: &str, fail: bool) -> Vec<String> {
    vec![
        format!("first={}", server.url("one")),
        format!("second={}", server.url("two")),
        format!("run={run}"),
        format!("fail={fail}"),
    ]
}

#[test]
fn two_postgres_databases_commit_together_with_two_phase_commit() {
    let Some((server, workspace, package)) =
        two_databases("two_postgres_databases_commit_together_with_two_phase_commit")
    else {
        return;
    };
    let data = workspace.path("data");
    let output = run(&package, &data, &sets(&server, "ok", false), &[]);
    output.assert_exit(0);
    assert!(output.stderr.contains("with two-phase commit"), "{output}");
    for db in ["one", "two"] {
        assert_eq!(server.psql(db, "SELECT v FROM t"), "ok");
    }
    run(&package, &data, &sets(&server, "failed", true), &[]).assert_exit(1);
    for db in ["one", "two"] {
        assert_eq!(server.psql(db, "SELECT v FROM t"), "ok", "the failed run's writes rolled back on both");
    }
    assert_eq!(server.psql("postgres", "SELECT count(*) FROM pg_prepared_xacts"), "0");
}

#[test]
fn a_prepared_transaction_left_by_a_killed_run_is_resolved_by_the_next_run() {
    let name = "a_prepared_transaction_left_by_a_killed_run_is_resolved_by_the_next_run";
    let Some((server, workspace, package)) = two_databases(name) else { return };
    let data = workspace.path("data");
    // Killed between PREPARE TRANSACTION and COMMIT PREPARED.
    let killed =
        run(&package, &data, &sets(&server, "killed", false), &[("SWITCHYARD_FAULT_2PC", "abort_after_prepare")]);
    assert_eq!(killed.code, None, "the run was killed by a signal\n{killed}");
    assert_eq!(server.psql("postgres", "SELECT count(*) FROM pg_prepared_xacts"), "2", "{killed}");
    for db in ["one", "two"] {
        assert_eq!(server.psql(db, "SELECT count(*) FROM t"), "0", "prepared, not yet committed");
    }
    // The next run with the same data dir finishes the commit that was decided, and says so.
    let next = run(&package, &data, &sets(&server, "next", false), &[]);
    next.assert_exit(0);
    assert_eq!(next.stderr.matches("committed prepared transaction").count(), 2, "{next}");
    assert_eq!(server.psql("postgres", "SELECT count(*) FROM pg_prepared_xacts"), "0");
    for db in ["one", "two"] {
        assert_eq!(server.psql(db, "SELECT v FROM t ORDER BY v"), "killed\nnext");
    }
}

/// A statement that runs far longer than the task's timeout.
fn slow(statement: &str) -> String {
    format!(
        "[package]\nname = \"slow\"\n\n[parameters]\ndb = \"\"\n\n[connections.db]\nurl = \"{{{{ params.db }}}}\"\n\n[[tasks]]\nname = \"Slow\"\nkind = \"sql\"\nconnection = \"db\"\nstatement = \"{statement}\"\ntimeout = \"300ms\"\n"
    )
}

#[test]
fn a_timeout_cancels_the_statement_on_the_postgres_server() {
    let Some(server) = PostgresServer::for_test("a_timeout_cancels_the_statement_on_the_postgres_server") else {
        return;
    };
    let workspace = Workspace::new();
    let package = workspace.write("slow.toml", &slow("SELECT pg_sleep(60)"));
    let output = run(&package, &workspace.path("data"), &[format!("db={}", server.url("postgres"))], &[]);
    output.assert_exit(1);
    let message = message_of(&output, "Slow");
    assert!(message.contains("timed out") && message.contains("canceling statement due to user request"), "{message}");
    assert_eq!(
        server.psql("postgres", "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"),
        "0"
    );
}

#[test]
fn a_timeout_interrupts_the_statement_on_sqlite() {
    let workspace = Workspace::new();
    let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";
    let package = workspace.write("slow.toml", &slow(endless));
    let db = format!("db=sqlite://{}", workspace.path("slow.db").display());
    let output = run(&package, &workspace.path("data"), &[db], &[]);
    output.assert_exit(1);
    let message = message_of(&output, "Slow");
    assert!(message.contains("timed out") && message.contains("interrupted"), "{message}");
}

#[test]
fn validate_refuses_a_transaction_mixing_sqlite_with_another_connection() {
    let workspace = Workspace::new();
    let package = workspace.write(
        "mixed.toml",
        r#"[package]
name = "mixed"
transaction = "required"

[connections.local]
url = "sqlite://local.db"

[connections.warehouse]
url = "postgres://etl@db.example:5432/warehouse"

[[tasks]]
name = "Local"
kind = "sql"
connection = "local"
statement = "SELECT 1"

[[tasks]]
name = "Remote"
kind = "sql"
connection = "warehouse"
statement = "SELECT 1"

[[tasks]]
name = "Typo"
kind = "sql"
connection = "wharehouse"
statement = "SELECT 1"
transaction = "not_supported"
"#,
    );
    let output = switchyard(["validate".as_ref(), package.as_os_str()]);
    output.assert_exit(5);
    assert!(
        output.stdout.contains("mixed.toml:20:14: tasks[1].connection: the transaction started by package \"mixed\" would mix SQLite connection \"local\"")
            && output.stdout.contains("PostgreSQL connection \"warehouse\""),
        "{output}"
    );
    assert!(
        output.stdout.contains(
            "mixed.toml:26:14: tasks[2].connection: no connection named \"wharehouse\" (connections: local, warehouse)"
        ),
        "{output}"
    );
}
