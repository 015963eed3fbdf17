//! Secret parameters (DESIGN.md §11): declared `[parameters.NAME] secret = true`, required,
//! passed to tasks in clear, and shown as `***` in records, events, facts and errors.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use switchyard_package::engine::{
    AgentJobLauncher, AgentJobOutcome, AgentJobRequest, Event, ParameterError, RunOptions, bind_parameters, run_package,
};
use switchyard_package::{ExecutionStatus, TaskResult, load_package};

const SECRET: &str = "hunter2-s3cr3t";

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write package");
    path
}

fn load_error(text: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    match load_package(&write(dir.path(), "p.toml", text)) {
        Ok(_) => panic!("should not load:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_secret_is_declared_with_secret_true_and_has_no_value_in_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text =
        "[package]\nname = \"p\"\n[parameters]\nplain = \"x\"\nshape = { a = 1 }\n[parameters.token]\nsecret = true\n";
    let loaded = load_package(&write(dir.path(), "p.toml", text)).expect("loads");
    assert_eq!(loaded.package.secrets, ["token"]);
    assert!(loaded.package.parameters.get("token").is_some_and(|v| v.is_null()));
    assert_eq!(loaded.package.parameters["shape"], serde_json::json!({"a": 1}), "other tables stay defaults");

    let e = load_error("[package]\nname = \"p\"\n[parameters.token]\nsecret = false\n");
    assert!(e.contains("parameters.token.secret: only `secret = true`"), "{e}");
    let e = load_error("[package]\nname = \"p\"\n[parameters.token]\nsecret = true\nvalue = \"x\"\n");
    assert!(e.contains("parameters.token.value: a secret parameter has no value in the file"), "{e}");
    let e = load_error("[package]\nname = \"p\"\n[parameters.token]\nsecret = true\nkind = 1\n");
    assert!(e.contains("unknown field `kind` in a secret parameter"), "{e}");
}

#[test]
fn a_missing_secret_is_refused_naming_it_and_its_variable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = "[package]\nname = \"p\"\n[parameters.db_password]\nsecret = true\n";
    let package = load_package(&write(dir.path(), "p.toml", text)).expect("loads").package;
    let e = bind_parameters(&package, &[]).expect_err("missing secret");
    assert_eq!(e, ParameterError::MissingSecret { name: "db_password".into() });
    let message = e.to_string();
    assert!(message.contains("`db_password`") && message.contains("SWITCHYARD_PARAM_DB_PASSWORD"), "{message}");
    let bound = bind_parameters(&package, &[format!("db_password={SECRET}")]).expect("bound");
    assert_eq!(bound["db_password"], serde_json::json!(SECRET));
}

/// Records the requests an agent_job task makes, and fails them echoing the params.
struct Recorder(Mutex<Vec<(serde_json::Value, Vec<String>)>>);

impl AgentJobLauncher for Recorder {
    fn launch(&self, request: AgentJobRequest) -> Pin<Box<dyn Future<Output = AgentJobOutcome> + Send + 'static>> {
        let params = serde_json::to_value(&request.params).expect("json");
        self.0.lock().unwrap().push((params.clone(), request.secret_params.clone()));
        Box::pin(async move {
            AgentJobOutcome {
                result: TaskResult::Failure,
                message: format!("agent refused params {params}"),
                agent: None,
                children: Vec::new(),
            }
        })
    }
}

#[tokio::test]
async fn a_secret_reaches_the_task_and_is_masked_in_every_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "child.toml",
        "[package]\nname = \"child\"\n[parameters]\nplain = \"\"\n[[tasks]]\nname = \"Say\"\nkind = \"process\"\ncommand = [\"sh\", \"-c\", \"echo child got $0 >&2; exit 1\", \"{{ params.plain }}\"]\n",
    );
    let text = r#"[package]
name = "p"
max_errors = 0
[parameters.token]
secret = true

[[tasks]]
name = "Use"
kind = "process"
command = ["sh", "-c", "printf %s \"$0\" > got.txt; echo \"token is $0\"; echo \"bad $0\" >&2; exit 3", "{{ params.token }}"]

[[tasks]]
name = "Check"
kind = "process"
command = ["sh", "-c", "echo checked $0", "{{ tasks['Use'].output }}"]
after = [{ task = "Use", on = "completion", when = "tasks['Use'].output == 'token is ' + params.token" }]

[[tasks]]
name = "Child"
kind = "package"
path = "child.toml"
params = { plain = "{{ params.token }}" }

[[tasks]]
name = "Job"
kind = "agent_job"
agent = "a"
job = "j"
params = { auth = "Bearer {{ params.token }}", other = "x" }

[[tasks]]
name = "Broken"
kind = "process"
command = ["{{ params.token + int('x') }}"]
"#;
    let path = write(dir.path(), "p.toml", text);
    let package = load_package(&path).expect("loads").package;
    let parameters = bind_parameters(&package, &[format!("token={SECRET}")]).expect("bound");
    let observed: Arc<Mutex<Vec<Event>>> = Arc::default();
    let seen = observed.clone();
    let recorder = Arc::new(Recorder(Mutex::default()));
    let options = RunOptions {
        parameters,
        observer: Some(Arc::new(move |e: &Event| seen.lock().unwrap().push(e.clone()))),
        agent_jobs: Some(recorder.clone()),
        ..RunOptions::default()
    };
    let run = run_package(package, options).await;

    // The process got the value, and expressions saw the real output.
    assert_eq!(std::fs::read_to_string(dir.path().join("got.txt")).expect("written"), SECRET);
    let check = run.tasks.iter().find(|t| t.path == "Check").expect("Check");
    assert_eq!(check.result, TaskResult::Success, "{}", check.message);
    // The job got the value in clear, and is told which params hold a secret.
    let jobs = recorder.0.lock().unwrap().clone();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].0["auth"], format!("Bearer {SECRET}"));
    assert_eq!(jobs[0].1, ["auth"]);

    // Nothing recorded shows it.
    let report = serde_json::to_string(&run).expect("json");
    let events = serde_json::to_string(&run.events).expect("json");
    let live = serde_json::to_string(&*observed.lock().unwrap()).expect("json");
    for (what, text) in [("report", &report), ("events", &events), ("observed events", &live)] {
        assert!(!text.contains(SECRET), "{what} shows the secret: {text}");
    }
    assert_eq!(run.parameters["token"], "***");
    let message = |p: &str| run.tasks.iter().find(|t| t.path == p).map(|t| t.message.clone()).expect(p);
    assert!(message("Use").contains("stderr: bad ***"), "{}", message("Use"));
    assert!(message("Job").contains("Bearer ***"), "{}", message("Job"));
    assert_eq!(run.status, ExecutionStatus::Succeeded);
    let child = run.children.iter().find(|c| c.task == "Child").expect("child record");
    assert!(child.tasks.iter().any(|t| t.message.contains("child got ***")), "{:?}", child.tasks);
    assert!(events.contains(r#""output":"token is ***""#), "{events}");
}
