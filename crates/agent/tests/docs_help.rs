//! docs/agent-config.md shows `switchyard-agent --help` exactly as the binary prints it, so the
//! flags cannot drift from the documentation. `SWITCHYARD_BLESS_DOCS=1 cargo test -p
//! switchyard-agent --test docs_help` rewrites the block.

use std::path::PathBuf;
use std::process::Command;

const BEGIN: &str = "<!-- agent-help:begin -->\n";
const END: &str = "<!-- agent-help:end -->";

#[test]
fn docs_show_the_agents_help() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard-agent"))
        .arg("--help")
        .env_remove("RUST_LOG")
        .output()
        .expect("run switchyard-agent --help");
    assert!(output.status.success(), "switchyard-agent --help failed: {output:?}");
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    let help: Vec<&str> = help.lines().map(str::trim_end).collect();
    let block = format!("```text\n{}\n```\n", help.join("\n").trim_end());

    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/agent-config.md");
    let page = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let start = page.find(BEGIN).expect("docs/agent-config.md has the agent-help:begin marker") + BEGIN.len();
    let end = start + page[start..].find(END).expect("docs/agent-config.md has the agent-help:end marker");
    if page[start..end] == block {
        return;
    }
    if std::env::var_os("SWITCHYARD_BLESS_DOCS").is_some_and(|v| v == "1") {
        let updated = format!("{}{block}{}", &page[..start], &page[end..]);
        std::fs::write(&path, updated).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    panic!(
        "the help in docs/agent-config.md differs from `switchyard-agent --help`; run \
         `SWITCHYARD_BLESS_DOCS=1 cargo test -p switchyard-agent --test docs_help` to regenerate it"
    );
}
