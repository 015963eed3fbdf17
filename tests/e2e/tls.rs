//! Mutual TLS and roles (DESIGN.md §11) with real processes: certificates from `switchyard certs
//! init`, agents that serve only clients their CA signed by their roles, a TLS cluster run end to
//! end through the CLI's `--ca/--cert/--key`, certificates reloaded on SIGHUP while work runs,
//! and plain text refused on a non-loopback address.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use switchyard_proto::agent_client::AgentClient;
use switchyard_proto::{GetRunRequest, ListJobsRequest, RunEventKind, RunStatus, WatchRunsRequest};
use switchyard_tests::{
    AgentProcess, CoordinatorProcess, RunningProcess, Workspace, agent_bin, eventually_async, switchyard_async,
    switchyard_command,
};
use switchyard_tls::{Connector, Role, Tls, TlsFiles, peer_from_certificate};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::agent::{WAIT, gated_job, next_event, open_gate, quick_job, start_request};

/// `switchyard certs init DIR --agent NAME...`, expecting success.
async fn certs_init(dir: &Path, agents: &[&str]) {
    let mut args = vec!["certs".to_string(), "init".to_string(), dir.to_string_lossy().into_owned()];
    for agent in agents {
        args.extend(["--agent".to_string(), agent.to_string()]);
    }
    switchyard_async(args).await.assert_exit(0);
}

/// The files `certs init` wrote for `stem` (`operator`, `agent-server-a`), trusting `ca_dir`'s CA.
fn files(ca_dir: &Path, cert_dir: &Path, stem: &str) -> TlsFiles {
    TlsFiles {
        ca: ca_dir.join("ca.pem"),
        cert: cert_dir.join(format!("{stem}.pem")),
        key: cert_dir.join(format!("{stem}-key.pem")),
    }
}

fn tls(dir: &Path, stem: &str) -> Arc<Tls> {
    Tls::load(&files(dir, dir, stem)).expect("the certs init files load")
}

fn endpoint(address: &str) -> Endpoint {
    Endpoint::from_shared(address.to_string()).expect("a valid URI").connect_timeout(Duration::from_secs(5))
}

/// A client of the agent over mutual TLS with `tls`.
async fn agent_client(agent: &AgentProcess, tls: &Arc<Tls>) -> Result<AgentClient<Channel>, String> {
    let channel = switchyard_tls::connect(endpoint(&format!("https://{}", agent.address())), Some(tls))
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(AgentClient::new(channel))
}

/// Whether ListJobs over a new connection made by `connect` answers.
async fn lists_jobs(channel: Result<Channel, tonic::transport::Error>) -> Result<(), String> {
    let mut client = AgentClient::new(channel.map_err(|e| format!("connect: {e:?}"))?);
    client.list_jobs(ListJobsRequest {}).await.map(|_| ()).map_err(|e| format!("{e:?}"))
}

/// The CLI's TLS flags for `stem`'s certificate.
fn cli_flags(dir: &Path, stem: &str) -> Vec<String> {
    let path = |name: String| dir.join(name).to_string_lossy().into_owned();
    vec![
        "--ca".into(),
        path("ca.pem".into()),
        "--cert".into(),
        path(format!("{stem}.pem")),
        "--key".into(),
        path(format!("{stem}-key.pem")),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn certs_init_writes_exactly_the_files_with_private_keys_0600() {
    let ws = Workspace::new();
    let dir = ws.path("certs");
    certs_init(&dir, &["server-a", "server-b"]).await;

    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("certs dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    let mut expected: Vec<String> = ["ca", "coordinator", "agent-server-a", "agent-server-b", "operator", "reader"]
        .iter()
        .flat_map(|stem| [format!("{stem}.pem"), format!("{stem}-key.pem")])
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    for name in names.iter().filter(|n| n.ends_with("-key.pem")) {
        let mode = std::fs::metadata(dir.join(name)).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    for (stem, role) in [
        ("coordinator", Role::Coordinator),
        ("agent-server-a", Role::Agent),
        ("operator", Role::Operator),
        ("reader", Role::Reader),
    ] {
        let der = CertificateDer::from_pem_file(dir.join(format!("{stem}.pem"))).expect("pem");
        assert_eq!(peer_from_certificate(der.as_ref()).role, Some(role), "{stem}");
    }
    // Never over an existing set.
    let again = switchyard_async(["certs", "init", dir.to_str().expect("utf-8"), "--agent", "server-a"]).await;
    again.assert_exit(1);
    assert!(again.stderr.contains("never overwrites"), "{again}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_agent_serves_only_clients_its_ca_signed_by_their_roles() {
    let ws = Workspace::new();
    let (ours, theirs) = (ws.path("ours"), ws.path("theirs"));
    certs_init(&ours, &["server-a"]).await;
    certs_init(&theirs, &["server-a"]).await;
    let agent = AgentProcess::setup_named(&ws, "server-a")
        .setting("name", "\"server-a\"")
        .job("hello.toml", &quick_job("hello", ""))
        .tls(&ours, "agent-server-a")
        .start()
        .await;
    let https = format!("https://{}", agent.address());

    let plain = lists_jobs(endpoint(&format!("http://{}", agent.address())).connect().await).await;
    assert!(plain.is_err(), "a plain-text client was served");
    let mut no_certificate =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots(&ours))
            .with_no_client_auth();
    no_certificate.alpn_protocols = vec![b"h2".to_vec()];
    let anonymous = lists_jobs(
        endpoint(&https).connect_with_connector(Connector::with_client_config(Arc::new(no_certificate))).await,
    )
    .await;
    assert!(anonymous.is_err(), "a client without a certificate was served");
    let stranger = Tls::load(&files(&ours, &theirs, "operator")).expect("loads");
    let other_ca = lists_jobs(switchyard_tls::connect(endpoint(&https), Some(&stranger)).await).await;
    assert!(other_ca.is_err(), "a certificate of another CA was served");

    let mut reader = agent_client(&agent, &tls(&ours, "reader")).await.expect("a reader connects");
    let jobs = reader.list_jobs(ListJobsRequest {}).await.expect("a reader lists jobs").into_inner().jobs;
    assert!(jobs.iter().any(|j| j.name == "hello"), "{jobs:?}");
    let refused = reader.start_job(start_request("hello", "reader")).await.expect_err("a reader starts a job");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().starts_with("StartJob needs the role coordinator or operator;")
            && refused.message().contains("CN=reader"),
        "{refused:?}"
    );
    let mut operator = agent_client(&agent, &tls(&ours, "operator")).await.expect("an operator connects");
    operator.start_job(start_request("hello", "operator")).await.expect("an operator starts a job");
    let log = agent.stderr_so_far();
    assert!(log.contains("TLS handshake refused"), "{log}");
    assert!(log.contains("call refused") && log.contains("CN=reader"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_cluster_runs_a_parent_package_with_an_agent_job_through_the_cli() {
    let ws = Workspace::new();
    let certs = ws.path("certs");
    certs_init(&certs, &["server-a", "server-b"]).await;
    let job = "name = \"greet\"\n\n[[steps]]\nname = \"greet\"\ncommand = [\"true\"]\n";
    let server_a = AgentProcess::setup_named(&ws, "server-a")
        .setting("name", "\"server-a\"")
        .setting("labels", "[\"etl\"]")
        .job("greet.toml", job)
        .tls(&certs, "agent-server-a")
        .start()
        .await;
    // server-a is listed by host:port, which means https with [tls].
    let coordinator = CoordinatorProcess::setup(&ws)
        .agent_at("server-a", &server_a.address().to_string(), None)
        .tls(&certs)
        .start()
        .await;
    // server-b registers itself over TLS with its agent certificate.
    let _server_b = AgentProcess::setup_named(&ws, "server-b")
        .setting("name", "\"server-b\"")
        .setting("labels", "[\"etl\"]")
        .setting("coordinator", &format!("\"{}\"", coordinator.address()))
        .job("greet.toml", job)
        .tls(&certs, "agent-server-b")
        .start()
        .await;
    let address = coordinator.address().to_string();
    let cli = |stem: &str, args: &[&str]| {
        let mut all = cli_flags(&certs, stem);
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend(["--coordinator".to_string(), address.clone()]);
        switchyard_async(all)
    };
    eventually_async(WAIT, "both agents up over TLS", || async {
        let out = cli("reader", &["agents", "--json"]).await;
        (out.status.code() == Some(0) && out.stdout.matches("\"up\"").count() == 2).then_some(())
    })
    .await;

    let parent = ws.write(
        "parent.toml",
        "[package]\nname = \"parent\"\n\n[[tasks]]\nname = \"Greet\"\nkind = \"agent_job\"\npool = \"etl\"\n\
         job = \"greet\"\nwait = true\n",
    );
    let parent = parent.to_string_lossy().into_owned();
    let ran = cli("operator", &["run", &parent, "--json"]).await;
    ran.assert_exit(0);
    assert!(ran.stdout.contains("\"status\": \"succeeded\""), "{ran}");

    let refused = cli("reader", &["run", &parent, "--json"]).await;
    refused.assert_exit(1);
    assert!(refused.stderr.contains("StartExecution needs the role operator"), "{refused}");
    let plain = switchyard_async(["agents", "--coordinator", &address]).await;
    assert_ne!(plain.status.code(), Some(0), "a plain-text CLI was served\n{plain}");
}

/// The demo's parent package (examples/demo/parent.toml) over a TLS cluster of the demo's three
/// agents, each with the demo's jobs and packages: every child is placed over https.
#[tokio::test(flavor = "multi_thread")]
async fn a_tls_cluster_runs_the_demos_parent_package_end_to_end() {
    let ws = Workspace::new();
    let certs = ws.path("certs");
    let names = ["server-a", "server-b", "server-c"];
    certs_init(&certs, &names).await;
    let demo = switchyard_tests::example("demo");
    let mut agents = Vec::new();
    for name in names {
        let mut setup = AgentProcess::setup_named(&ws, name)
            .setting("name", &format!("\"{name}\""))
            .setting("labels", "[\"etl\"]")
            .tls(&certs, &format!("agent-{name}"));
        for (folder, kind) in [("jobs", true), ("packages", false)] {
            for entry in std::fs::read_dir(demo.join(folder)).expect("the demo's files") {
                let path = entry.expect("an entry").path();
                let file = path.file_name().expect("a name").to_string_lossy().into_owned();
                let text = std::fs::read_to_string(&path).expect("readable");
                setup = if kind { setup.job(&file, &text) } else { setup.package(&file, &text) };
            }
        }
        agents.push(setup.start().await);
    }
    let mut coordinator = CoordinatorProcess::setup(&ws).tls(&certs);
    for (name, agent) in names.iter().zip(&agents) {
        coordinator = coordinator.agent_at(name, &agent.address().to_string(), None);
    }
    let coordinator = coordinator.start().await;
    let address = coordinator.address().to_string();
    eventually_async(WAIT, "the three agents up over TLS", || async {
        let mut args = cli_flags(&certs, "reader");
        args.extend(["agents".into(), "--json".into(), "--coordinator".into(), address.clone()]);
        let out = switchyard_async(args).await;
        (out.status.code() == Some(0) && out.stdout.matches("\"up\"").count() == 3).then_some(())
    })
    .await;

    let parent = demo.join("parent.toml").to_string_lossy().into_owned();
    let mut args = cli_flags(&certs, "operator");
    args.extend(["run".into(), parent, "--json".into(), "--coordinator".into(), address]);
    let ran = switchyard_async(args).await;
    ran.assert_exit(0);
    let report = crate::run_cli::single_json_object(&ran.stdout);
    assert_eq!(report["status"], "succeeded", "{report:#}");
    let customers = crate::coordinator::only_child(&report, "Load customers");
    assert_eq!((customers["agent"].as_str(), customers["status"].as_str()), (Some("server-a"), Some("succeeded")));
    let children = report["children"].as_array().expect("children");
    let regions: Vec<_> = children.iter().filter(|c| c["job"] == "load_region").collect();
    assert_eq!(regions.len(), 4, "one child per region: {report:#}");
    for child in regions {
        assert_eq!(child["status"], "succeeded", "{report:#}");
        assert!(names.contains(&child["agent"].as_str().unwrap_or_default()), "{report:#}");
    }
    assert_eq!(crate::run_cli::task(&report, "Publish")["result"], "success", "{report:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_reload_on_sighup_without_dropping_running_work_or_open_streams() {
    let ws = Workspace::new();
    let (old, new, live) = (ws.path("old"), ws.path("new"), ws.path("live"));
    certs_init(&old, &["server-a"]).await;
    certs_init(&new, &["server-a"]).await;
    copy_set(&old, &live);
    let gate = ws.path("gate");
    let agent = AgentProcess::setup_named(&ws, "server-a")
        .setting("name", "\"server-a\"")
        .job("gated.toml", &gated_job("gated", &gate, ""))
        .tls(&live, "agent-server-a")
        .start()
        .await;
    let mut client = agent_client(&agent, &tls(&old, "operator")).await.expect("connects with the old set");
    let started = client.start_job(start_request("gated", "operator")).await.expect("started").into_inner();
    let request = WatchRunsRequest {
        after_sequence: started.sequence.saturating_sub(1),
        incarnation: started.incarnation.clone(),
        kinds: Vec::new(),
    };
    let mut stream = client.watch_runs(request).await.expect("watch").into_inner();
    assert_eq!(next_event(&mut stream).await.kind(), RunEventKind::Accepted);

    copy_set(&new, &live);
    kill(Pid::from_raw(agent.pid() as i32), Signal::SIGHUP).expect("SIGHUP");
    let fresh = tls(&new, "operator");
    let https = format!("https://{}", agent.address());
    eventually_async(WAIT, "a new connection to see the new certificate", || async {
        lists_jobs(switchyard_tls::connect(endpoint(&https), Some(&fresh)).await).await.ok()
    })
    .await;
    let stale = lists_jobs(switchyard_tls::connect(endpoint(&https), Some(&tls(&old, "operator"))).await).await;
    assert!(stale.is_err(), "a new connection with the old CA's certificate was served");

    open_gate(&gate);
    let finished = loop {
        let event = next_event(&mut stream).await;
        if event.kind() == RunEventKind::Finished {
            break event;
        }
    };
    assert_eq!((finished.run_id.as_str(), finished.status()), (started.run_id.as_str(), RunStatus::Succeeded));
    let run = client.get_run(GetRunRequest { run_id: started.run_id.clone(), ..Default::default() }).await;
    assert_eq!(run.expect("the old connection still answers").into_inner().status(), RunStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_text_on_a_non_loopback_address_is_refused_at_start_up() {
    let ws = Workspace::new();
    let config = ws.write("agent/agent.toml", "name = \"server-a\"\nlisten = \"0.0.0.0:0\"\ndata_dir = \"data\"\n");
    let agent = RunningProcess::spawn(std::process::Command::new(agent_bin()).arg("--config").arg(&config));
    let out = tokio::task::spawn_blocking(move || agent.wait(WAIT)).await.expect("joined");
    assert_ne!(out.status.code(), Some(0), "{out}");
    assert!(out.stderr.contains("insecure = true") && out.stderr.contains("[tls]"), "{out}");

    let data = ws.path("coordinator");
    let mut serve = switchyard_command(["serve", "--listen", "0.0.0.0:0", "--data-dir"]);
    serve.arg(&data);
    let coordinator = RunningProcess::spawn(&mut serve);
    let out = tokio::task::spawn_blocking(move || coordinator.wait(WAIT)).await.expect("joined");
    out.assert_exit(1);
    assert!(out.stderr.contains("insecure = true") && out.stderr.contains("[tls]"), "{out}");
}

/// The CA of a `certs init` set, as the roots a client trusts.
fn roots(dir: &Path) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(dir.join("ca.pem")).expect("ca.pem")).expect("a CA certificate");
    roots
}

/// Copies a `certs init` set's files into `to` (over the files there), as an operator rotating
/// certificates does before SIGHUP.
fn copy_set(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("live dir");
    for entry in std::fs::read_dir(from).expect("set") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}
