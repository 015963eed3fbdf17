//! Tests of job definition reading.

use super::*;

const TWO_STEPS: &str = r#"name = "load_customers"
description = "nightly load"

[[steps]]
name = "extract"
command = ["extract.sh", "--all"]

[[steps]]
name = "load"
package = "load_customers.toml"
params = { region = "emea", batch = 5 }
"#;

fn errors_of(text: &str) -> Vec<JobError> {
    match parse_job(text, "job.toml") {
        Ok(job) => panic!("expected errors, got {job:?}"),
        Err(errors) => errors,
    }
}

/// The single error of `text`, checked to name `field` at `line`.
fn one_error(text: &str, field: &str, line: usize) -> JobError {
    let errors = errors_of(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = errors.into_iter().next().expect("one error");
    assert_eq!((e.field.as_str(), e.line), (field, line), "{e}");
    e
}

fn job_with_step(step: &str) -> String {
    format!("name = \"j\"\n[[steps]]\nname = \"s\"\n{step}\n")
}

#[test]
fn defaults_follow_ssms() {
    let job = parse_job(TWO_STEPS, "job.toml").expect("valid");
    assert_eq!(job.name, "load_customers");
    assert_eq!(job.description.as_deref(), Some("nightly load"));
    assert_eq!(job.concurrency, Concurrency::Forbid);
    assert_eq!(job.timeout, None);
    let [extract, load] = &job.steps[..] else { panic!("two steps") };
    assert_eq!((extract.id, load.id), (1, 2));
    assert_eq!(extract.on_success, StepAction::Next);
    assert_eq!(extract.on_failure, StepAction::QuitFailure);
    assert_eq!(load.on_success, StepAction::QuitSuccess, "next on the last step quits with success");
    assert_eq!(load.on_failure, StepAction::QuitFailure);
    assert_eq!((extract.retry_attempts, extract.retry_interval), (0, Duration::ZERO));
    assert_eq!(
        extract.work,
        StepWork::Command {
            argv: vec!["extract.sh".into(), "--all".into()],
            env: vec![],
            dir: None,
            success_codes: vec![0]
        }
    );
    let StepWork::Package { path, params } = &load.work else { panic!("package step") };
    assert_eq!(path, "load_customers.toml");
    assert_eq!(params.get("region"), Some(&serde_json::json!("emea")));
    assert_eq!(params.get("batch"), Some(&serde_json::json!(5)));
}

#[test]
fn explicit_next_on_the_last_step_quits() {
    let text = job_with_step("command = [\"true\"]\non_success = \"next\"\non_failure = \"next\"");
    let job = parse_job(&text, "job.toml").expect("valid");
    assert_eq!(job.steps[0].on_success, StepAction::QuitSuccess);
    assert_eq!(job.steps[0].on_failure, StepAction::QuitFailure);
}

#[test]
fn every_field_is_read() {
    let text = r#"name = "j"
concurrency = "queue"
max_queue = 3
timeout = "10m"
[[steps]]
name = "a"
command = ["prog", "arg"]
env = { K = "v", L = "w" }
dir = "work/here"
success_codes = [0, 3]
on_success = "step:b"
on_failure = "step:a"
retry_attempts = 2
retry_interval = "5s"
timeout = "1m"
[[steps]]
name = "b"
package = "sub/b.toml"
on_failure = "quit_success"
"#;
    let job = parse_job(text, "job.toml").expect("valid");
    assert_eq!(job.concurrency, Concurrency::Queue { max_queue: 3 });
    assert_eq!(job.timeout, Some(Duration::from_secs(600)));
    let a = &job.steps[0];
    assert_eq!(a.on_success, StepAction::GoTo(1));
    assert_eq!(a.on_failure, StepAction::GoTo(0), "a step may jump to itself");
    assert_eq!(
        (a.retry_attempts, a.retry_interval, a.timeout),
        (2, Duration::from_secs(5), Some(Duration::from_secs(60)))
    );
    assert_eq!(
        a.work,
        StepWork::Command {
            argv: vec!["prog".into(), "arg".into()],
            env: vec![("K".into(), "v".into()), ("L".into(), "w".into())],
            dir: Some("work/here".into()),
            success_codes: vec![0, 3]
        }
    );
    assert_eq!(job.steps[1].on_failure, StepAction::QuitSuccess);
}

#[test]
fn concurrency_modes() {
    let base = "[[steps]]\nname = \"s\"\ncommand = [\"true\"]\n";
    let parse = |head: &str| parse_job(&format!("name = \"j\"\n{head}\n{base}"), "job.toml").map(|j| j.concurrency);
    assert_eq!(parse("concurrency = \"queue\""), Ok(Concurrency::Queue { max_queue: DEFAULT_MAX_QUEUE }));
    assert_eq!(parse("concurrency = \"allow\"\nmax_running = 4"), Ok(Concurrency::Allow { max_running: 4 }));
    assert_eq!(Concurrency::Allow { max_running: 4 }.name(), "allow");
    let e = parse("concurrency = \"allow\"").expect_err("max_running is required");
    assert_eq!((e[0].field.as_str(), e[0].line), ("max_running", 2));
    let e = parse("concurrency = \"sometimes\"").expect_err("bad mode");
    assert_eq!((e[0].field.as_str(), e[0].line), ("concurrency", 2));
    let e = parse("max_queue = 5").expect_err("max_queue with forbid");
    assert_eq!((e[0].field.as_str(), e[0].line), ("max_queue", 2));
    assert!(e[0].message.contains("concurrency = \"queue\""), "{}", e[0]);
    let e = parse("concurrency = \"queue\"\nmax_running = 2").expect_err("max_running with queue");
    assert_eq!((e[0].field.as_str(), e[0].line), ("max_running", 3));
    let e = parse("concurrency = \"queue\"\nmax_queue = 0").expect_err("an empty queue");
    assert_eq!((e[0].field.as_str(), e[0].line), ("max_queue", 3));
}

#[test]
fn unknown_fields_are_named() {
    let e = one_error("name = \"j\"\nretries = 3\n[[steps]]\nname = \"s\"\ncommand = [\"true\"]\n", "retries", 2);
    assert!(e.message.contains("unknown field `retries`"), "{e}");
    let e = one_error(&job_with_step("command = [\"true\"]\nretry = 1"), "steps[0].retry", 5);
    assert!(e.message.contains("retry_attempts"), "the message lists the known fields: {e}");
}

#[test]
fn missing_name_and_unsafe_name() {
    one_error("[[steps]]\nname = \"s\"\ncommand = [\"true\"]\n", "name", 1);
    let e = one_error("name = \"../etc\"\n[[steps]]\nname = \"s\"\ncommand = [\"true\"]\n", "name", 1);
    assert_eq!(e.column, 8);
    one_error("name = \"-rf\"\n[[steps]]\nname = \"s\"\ncommand = [\"true\"]\n", "name", 1);
}

#[test]
fn a_job_needs_steps() {
    one_error("name = \"j\"\n", "steps", 1);
    one_error("name = \"j\"\nsteps = []\n", "steps", 2);
}

#[test]
fn step_errors_name_their_field_and_line() {
    let e = one_error(&job_with_step(""), "steps[0]", 2);
    assert!(e.message.contains("`package`") && e.message.contains("`command`"), "{e}");
    one_error(&job_with_step("package = \"p.toml\"\ncommand = [\"x\"]"), "steps[0].command", 5);
    one_error(&job_with_step("command = []"), "steps[0].command", 4);
    one_error(&job_with_step("command = [\"\"]"), "steps[0].command", 4);
    one_error(&job_with_step("command = \"prog arg\""), "steps[0].command", 4);
    one_error(&job_with_step("command = [\"x\"]\non_success = \"jump\""), "steps[0].on_success", 5);
    one_error(&job_with_step("command = [\"x\"]\non_failure = \"step:nope\""), "steps[0].on_failure", 5);
    let e = one_error(&job_with_step("command = [\"x\"]\nretry_attempts = -1"), "steps[0].retry_attempts", 5);
    assert!(e.message.contains("negative"), "{e}");
    let e =
        one_error(&job_with_step("command = [\"x\"]\nretry_interval = \"5 parsecs\""), "steps[0].retry_interval", 5);
    assert!(e.message.contains("invalid duration"), "{e}");
    one_error(&job_with_step("command = [\"x\"]\ntimeout = \"0s\""), "steps[0].timeout", 5);
    one_error(&job_with_step("command = [\"x\"]\nparams = { a = 1 }"), "steps[0].params", 5);
    one_error(&job_with_step("package = \"p.toml\"\nenv = { A = \"1\" }"), "steps[0].env", 5);
    one_error(&job_with_step("package = \"p.toml\"\ndir = \"x\""), "steps[0].dir", 5);
    one_error(&job_with_step("package = \"p.toml\"\nsuccess_codes = [1]"), "steps[0].success_codes", 5);
    one_error(&job_with_step("command = [\"x\"]\ndir = \"../up\""), "steps[0].dir", 5);
    one_error(&job_with_step("command = [\"x\"]\nsuccess_codes = [4294967296]"), "steps[0].success_codes[0]", 5);
    one_error("name = \"j\"\ntimeout = \"soon\"\n[[steps]]\nname = \"s\"\ncommand = [\"x\"]\n", "timeout", 2);
}

#[test]
fn package_path_traversal_is_refused() {
    let e = one_error(&job_with_step("package = \"../secret.toml\""), "steps[0].package", 4);
    assert!(e.message.contains("path traversal is not allowed"), "{e}");
    assert_eq!(e.to_string(), format!("job.toml:4:11: steps[0].package: {}", e.message));
}

#[test]
fn duplicate_step_names_are_refused_at_the_second() {
    let text = "name = \"j\"\n[[steps]]\nname = \"s\"\ncommand = [\"x\"]\n[[steps]]\nname = \"s\"\ncommand = [\"y\"]\n";
    let e = one_error(text, "steps[1].name", 6);
    assert!(e.message.contains("duplicate step name `s`"), "{e}");
}

#[test]
fn all_errors_come_together_in_order() {
    let text = "name = \"bad name\"\nfoo = 1\n[[steps]]\nname = \"s\"\n\
                [[steps]]\nname = \"t\"\ncommand = [\"x\"]\non_success = \"step:u\"\n";
    let errors = errors_of(text);
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["name", "foo", "steps[0]", "steps[1].on_success"]);
}

#[test]
fn invalid_toml_is_reported_with_its_position() {
    let errors = errors_of("name = \"j\"\nsteps = [\n");
    assert!(errors[0].message.starts_with("invalid TOML"), "{:?}", errors[0]);
    assert_eq!(errors[0].field, "");
    assert!(!errors[0].to_string().contains(": :"), "{}", errors[0]);
}

#[test]
fn hash_is_of_the_text() {
    let a = parse_job(TWO_STEPS, "a.toml").expect("valid");
    let b = parse_job(TWO_STEPS, "b.toml").expect("valid");
    let c = parse_job(&format!("{TWO_STEPS}\n# changed\n"), "a.toml").expect("valid");
    assert_eq!(a.hash, b.hash);
    assert_ne!(a.hash, c.hash);
    assert_eq!(a.hash.len(), 64);
    assert_eq!(a.text, TWO_STEPS);
}

#[test]
fn load_jobs_dir_reads_every_toml_file_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("b.toml"), job_with_step("command = [\"x\"]").replace("\"j\"", "\"beta\""))
        .expect("write");
    std::fs::write(dir.path().join("a.toml"), TWO_STEPS).expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not a job").expect("write");
    let (jobs, errors) = load_jobs_dir(dir.path());
    assert!(errors.is_empty(), "{errors:?}");
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["load_customers", "beta"], "sorted by file, the name from the file's `name`");
}

#[test]
fn load_jobs_dir_refuses_a_second_job_of_the_same_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("a.toml"), TWO_STEPS).expect("write");
    std::fs::write(dir.path().join("b.toml"), format!("# copy\n{TWO_STEPS}")).expect("write");
    std::fs::write(dir.path().join("c.toml"), "name = \"broken\"\n").expect("write");
    let (jobs, errors) = load_jobs_dir(dir.path());
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].hash, parse_job(TWO_STEPS, "x").expect("valid").hash, "the first file wins");
    let found: Vec<(&str, &str, usize)> =
        errors.iter().map(|e| (e.origin.as_str(), e.field.as_str(), e.line)).collect();
    assert_eq!(found, [("b.toml", "name", 2), ("c.toml", "steps", 1)]);
    assert!(errors[0].message.contains("already defined in a.toml"), "{}", errors[0]);
}

#[test]
fn a_missing_jobs_dir_holds_no_jobs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (jobs, errors) = load_jobs_dir(&dir.path().join("nope"));
    assert!(jobs.is_empty() && errors.is_empty());
}

#[test]
fn safe_names() {
    for good in ["a", "load_customers", "x.toml", "A-1", "v1.2_3", &"n".repeat(128)] {
        assert!(is_safe_name(good), "{good}");
    }
    for bad in ["", ".hidden", "-rf", "a b", "a/b", "..", "é", "a:b", &"n".repeat(129)] {
        assert!(!is_safe_name(bad), "{bad}");
    }
}

#[test]
fn safe_relative_paths() {
    assert_eq!(safe_relative_path("a.toml"), Ok(PathBuf::from("a.toml")));
    assert_eq!(safe_relative_path("sub/a.toml"), Ok(PathBuf::from("sub").join("a.toml")));
    let refused = |path: &str, says: &str| {
        let e = safe_relative_path(path).expect_err(path);
        assert!(e.contains(says), "{path}: {e}");
    };
    refused("../a.toml", "path traversal is not allowed");
    refused("sub/../../a.toml", "path traversal is not allowed");
    refused("..\\a.toml", "path traversal is not allowed");
    refused("/etc/a.toml", "absolute");
    refused("sub\\a.toml", "backslash");
    refused("sub//a.toml", "empty component");
    refused("", "empty");
    refused("a.yaml", ".toml");
    refused("./a.toml", "not a safe name");
    refused("sub/.a.toml", "not a safe name");
}
