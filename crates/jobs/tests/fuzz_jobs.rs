//! Generated job files: arbitrary TOML-ish text and structured random jobs never panic the job
//! loader, and every problem it reports names a line and column inside the text and a field.

use proptest::prelude::*;
use switchyard_jobs::{JobError, parse_job};

/// Cases per property: the whole suite stays around a minute in CI.
const CASES: u32 = 256;

const JOB_PIECES: &[&str] = &[
    "name = \"j\"\n",
    "name = \"../j\"\n",
    "name = 3\n",
    "description = \"d\"\n",
    "concurrency = \"queue\"\n",
    "concurrency = \"allow\"\n",
    "concurrency = \"never\"\n",
    "max_queue = 0\n",
    "max_running = 99999999999\n",
    "timeout = \"0s\"\n",
    "timeout = \"1s\"\n",
    "[[steps]]\n",
    "name = \"s\"\n",
    "name = \"t\"\n",
    "command = [\"true\"]\n",
    "command = []\n",
    "command = [\"\"]\n",
    "package = \"p.toml\"\n",
    "package = \"/etc/x.toml\"\n",
    "params = { a = 1, b = [1.5, nan] }\n",
    "env = { \"A=B\" = \"x\" }\n",
    "dir = \"..\"\n",
    "success_codes = [0, 2147483648]\n",
    "on_success = \"step:t\"\n",
    "on_failure = \"step:zz\"\n",
    "on_success = \"jump\"\n",
    "retry_attempts = -1\n",
    "retry_interval = \"forever\"\n",
    "bogus = 1\n",
    "steps = 1\n",
    "[\n",
    "\"\n",
    "=\n",
    "é",
    "\u{0}",
    "\t",
    "# c\n",
    "[steps]\n",
    "'''\n",
];

fn toml_ish() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(JOB_PIECES), 0..40).prop_map(|pieces| pieces.concat())
}

fn structured_job() -> impl Strategy<Value = String> {
    let field = prop::sample::select(vec![
        "package",
        "params",
        "command",
        "env",
        "dir",
        "success_codes",
        "on_success",
        "on_failure",
        "retry_attempts",
        "retry_interval",
        "timeout",
        "unknown",
    ]);
    let value = prop::sample::select(vec![
        "\"next\"",
        "\"quit_success\"",
        "\"step:s0\"",
        "\"step:s9\"",
        "\"5s\"",
        "\"p.toml\"",
        "[\"true\"]",
        "[0]",
        "{ A = \"1\" }",
        "0",
        "-5",
        "true",
        "[]",
        "{}",
        "1e400",
    ]);
    let step = prop::collection::vec((field, value), 0..5);
    (prop::collection::vec(step, 0..5), prop::sample::select(vec!["forbid", "queue", "allow", "x"])).prop_map(
        |(steps, concurrency)| {
            let mut text = format!("name = \"j\"\nconcurrency = \"{concurrency}\"\n");
            for (i, fields) in steps.iter().enumerate() {
                text.push_str(&format!("\n[[steps]]\nname = \"s{i}\"\n"));
                for (field, value) in fields {
                    text.push_str(&format!("{field} = {value}\n"));
                }
            }
            text
        },
    )
}

fn check(text: &str) -> Result<(), TestCaseError> {
    let lines = text.split('\n').count();
    if let Err(errors) = parse_job(text, "job.toml") {
        prop_assert!(!errors.is_empty(), "refused without an error");
        for JobError { origin, line, column, message, .. } in &errors {
            prop_assert_eq!(origin.as_str(), "job.toml");
            prop_assert!(*line >= 1 && *line <= lines, "line {} outside the text's {} lines: {}", line, lines, message);
            prop_assert!(*column >= 1, "{}", message);
            prop_assert!(!message.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_toml_ish_job_text_never_panics_and_errors_name_a_line(text in toml_ish()) {
        check(&text)?;
    }

    #[test]
    fn arbitrary_text_never_panics_the_job_loader(text in "\\PC{0,200}") {
        check(&text)?;
    }

    #[test]
    fn structured_random_jobs_never_panic_and_errors_name_a_line(text in structured_job()) {
        check(&text)?;
    }
}
