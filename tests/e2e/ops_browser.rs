//! A real browser against a real coordinator and agents (issue 14 item 9): headless Chromium,
//! driven through chromedriver with fantoccini, sees the dashboard list the agents, a running
//! execution's page follow it to its final status by itself (server-sent events, no reload), and
//! the timeline draw every child. Screenshots go to `target/browser/` to look at.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;
use switchyard_tests::{Workspace, eventually_async, workspace_root};

use crate::agent::{WAIT, gated_job, open_gate};
use crate::coordinator::{AGENTS, Cluster};
use crate::ops_http::FAILING_JOB;

/// How long chromedriver may take to say which port it listens on.
const DRIVER_START: Duration = Duration::from_secs(30);

/// Three waited children held by a gate, and a fire-and-forget child that fails.
const PACKAGE: &str = r#"
[package]
name = "browser"

[[tasks]]
name = "Extract"
kind = "agent_job"
pool = "etl"
job = "hold"
wait = true

[[tasks]]
name = "Transform"
kind = "agent_job"
pool = "etl"
job = "hold"
wait = true

[[tasks]]
name = "Load"
kind = "agent_job"
pool = "etl"
job = "hold"
wait = true

[[tasks]]
name = "Notify"
kind = "agent_job"
pool = "etl"
job = "fails"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_sees_the_agents_a_live_execution_reach_its_end_and_every_child() {
    let ws = Workspace::new();
    let gate = ws.path("GO");
    let mut setup = Cluster::setup(ws)
        .job("hold.toml", &gated_job("hold", &gate, "concurrency = \"allow\"\nmax_running = 4"))
        .job("fails.toml", FAILING_JOB)
        .coordinator_setting("http", "\"127.0.0.1:0\"");
    for agent in AGENTS {
        setup = setup.agent_setting(agent, "http", "\"127.0.0.1:0\"");
    }
    let cluster = setup.start().await;
    let base = format!("http://{}", cluster.coordinator.http_address().await);
    let driver = ChromeDriver::start();
    let browser = driver.connect().await;

    browser.goto(&format!("{base}/")).await.expect("open the dashboard");
    let rows = browser.find_all(Locator::Css("#agents tr[data-agent]")).await.expect("the agents' rows");
    let mut listed = Vec::new();
    for row in rows {
        listed.push(row.attr("data-agent").await.expect("read a row").unwrap_or_default());
    }
    assert_eq!(listed, AGENTS, "the dashboard lists every agent");
    screenshot(&browser, "dashboard").await;

    let package = cluster.package("browser.toml", PACKAGE);
    let id = cluster.detach(&package).await;
    browser.goto(&format!("{base}/executions/{id}")).await.expect("open the execution's page");
    assert_eq!(text_of(&browser, "#status").await, "running");
    // Set on this page only: a reload would lose it, so it proves the page updated in place.
    browser.execute("window.stillTheSamePage = true; return null;", vec![]).await.expect("mark the page");
    eventually_async(WAIT, "the three held children to show as running", || async {
        let running = browser.find_all(Locator::Css("svg.gantt rect.bar.running")).await.ok()?;
        (running.len() >= 3).then_some(())
    })
    .await;
    screenshot(&browser, "execution-running").await;

    open_gate(&gate);
    let status = eventually_async(WAIT, "the page to show the execution's final status by itself", || async {
        let status = browser.find(Locator::Css("#status")).await.ok()?.text().await.ok()?;
        (status != "running").then_some(status)
    })
    .await;
    assert_eq!(status, "succeeded", "the fire-and-forget child's failure does not fail its parent");
    let same = browser.execute("return window.stillTheSamePage === true;", vec![]).await.expect("read the mark");
    assert_eq!(same, json!(true), "the page updated without a reload");

    // Every child (each task's one attempt) has a bar; the fire-and-forget one is red.
    let report = cluster.report(&id).await;
    assert_eq!(report.children.len(), 4, "{report:?}");
    let child_bars = eventually_async(WAIT, "every child's outcome to be drawn", || async {
        let succeeded = browser.find_all(Locator::Css("svg.gantt rect.bar.succeeded")).await.ok()?.len();
        let failed = browser.find_all(Locator::Css("svg.gantt rect.bar.failed")).await.ok()?.len();
        (succeeded == 3 && failed == 1).then_some(succeeded + failed)
    })
    .await;
    assert_eq!(child_bars, report.children.len());
    let labels = browser.find(Locator::Css("svg.gantt")).await.expect("the timeline").text().await.expect("its text");
    for task in ["Extract", "Transform", "Load", "Notify"] {
        assert!(labels.matches(task).count() >= 2, "{task} has a task row and a child row: {labels}");
    }
    screenshot(&browser, "execution-ended").await;
    browser.close().await.expect("close the browser");
}

/// A chromedriver process on a port it picks, in its own process group so the browsers it
/// starts end with it.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    fn start() -> Self {
        let mut child = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver is needed for the browser test ({e}): install Debian's `chromium` and \
                     `chromium-driver` packages (.ci/run does)"
                )
            });
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, ports) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.split("started successfully on port ").nth(1) {
                    let _ = sender.send(port.trim_end_matches('.').trim().parse::<u16>().ok());
                }
            }
        });
        let port = ports.recv_timeout(DRIVER_START).ok().flatten().unwrap_or_else(|| {
            let _ = child.kill();
            panic!("chromedriver did not say which port it listens on within {DRIVER_START:?}")
        });
        ChromeDriver { child, port }
    }

    /// A headless Chromium session.
    async fn connect(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                            "--window-size=1400,1000"]}),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| panic!("cannot start a headless Chromium session through chromedriver: {e}"))
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

async fn text_of(browser: &Client, css: &str) -> String {
    let element = browser.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css} on the page: {e}"));
    element.text().await.unwrap_or_else(|e| panic!("cannot read {css}: {e}"))
}

/// Saves the page as `target/browser/NAME.png`.
async fn screenshot(browser: &Client, name: &str) {
    let folder: PathBuf = workspace_root().join("target").join("browser");
    std::fs::create_dir_all(&folder).unwrap_or_else(|e| panic!("cannot create {}: {e}", folder.display()));
    let png = browser.screenshot().await.unwrap_or_else(|e| panic!("cannot take a screenshot of {name}: {e}"));
    let path = folder.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    eprintln!("screenshot: {}", path.display());
}
