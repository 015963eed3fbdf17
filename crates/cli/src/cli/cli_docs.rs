//! docs/cli.md is generated from the clap definitions, so the reference cannot drift from the
//! command line: this test renders every command's help and compares it with the file.
//! `SWITCHYARD_BLESS_DOCS=1 cargo test -p switchyard-cli` rewrites the file.

use std::path::PathBuf;

use clap::CommandFactory;

use super::Args;

/// The variable that makes the test rewrite docs/cli.md instead of comparing.
const BLESS: &str = "SWITCHYARD_BLESS_DOCS";

/// docs/cli.md as the current clap definitions render it.
fn render() -> String {
    // Environment values shown in help would depend on the machine that runs the test.
    let mut root = hide_env_values(Args::command()).term_width(100);
    root.build();
    let mut out = String::new();
    out.push_str("<!-- Generated from the clap definitions in crates/cli by `SWITCHYARD_BLESS_DOCS=1 cargo test -p switchyard-cli`; do not edit by hand. -->\n");
    out.push_str("# `switchyard` command line\n\n");
    out.push_str(
        "Every command's `--help`, exactly as the binary prints it. Exit codes are in \
         [exit-codes.md](exit-codes.md); the agent binary `switchyard-agent` is described in \
         [agent-config.md](agent-config.md#command-line).\n\n",
    );
    let mut sections = Vec::new();
    collect(&root, &mut sections);
    out.push_str("## Commands\n\n");
    for (name, about, _) in &sections {
        let anchor = name.replace(' ', "-");
        out.push_str(&format!(
            "- [`{name}`](#{anchor}){}\n",
            about.as_deref().map(|a| format!(": {a}")).unwrap_or_default()
        ));
    }
    for (name, _, help) in &sections {
        out.push_str(&format!("\n## {name}\n\n```text\n{}\n```\n", help.trim_end()));
    }
    out
}

fn hide_env_values(command: clap::Command) -> clap::Command {
    let names: Vec<String> = command.get_subcommands().map(|s| s.get_name().to_string()).collect();
    let mut command = command.mut_args(|arg| arg.hide_env_values(true));
    for name in names {
        command = command.mut_subcommand(name, hide_env_values);
    }
    command
}

/// (full name, one-line about, long help) of `command` and its visible subcommands, depth first.
fn collect(command: &clap::Command, out: &mut Vec<(String, Option<String>, String)>) {
    let name = command.get_bin_name().unwrap_or(command.get_name()).to_string();
    let about = command.get_about().map(|a| a.to_string());
    let help = command.clone().render_long_help().to_string();
    let help: String = help.lines().map(str::trim_end).collect::<Vec<_>>().join("\n");
    out.push((name, about, help));
    for sub in command.get_subcommands() {
        if !sub.is_hide_set() && sub.get_name() != "help" {
            collect(sub, out);
        }
    }
}

#[test]
fn docs_cli_md_matches_the_command_line() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md");
    let expected = render();
    if std::env::var_os(BLESS).is_some_and(|v| v == "1") {
        std::fs::write(&path, &expected).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let found = std::fs::read_to_string(&path).unwrap_or_default();
    if found != expected {
        let line = found
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| found.lines().count().min(expected.lines().count()) + 1, |i| i + 1);
        panic!(
            "docs/cli.md is out of date with the clap definitions (first difference at line {line}); \
             run `{BLESS}=1 cargo test -p switchyard-cli` to regenerate docs/cli.md"
        );
    }
}
