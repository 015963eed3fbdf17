//! Managing a real agent over gRPC (DESIGN.md §4, §6): pushed packages and jobs are validated
//! before they are stored, fault injection needs the agent's consent, and the agent serves
//! health and server reflection for grpcurl and other clients.

use switchyard_proto::{
    FaultKind, GetLoadRequest, InjectFaultRequest, ListJobsRequest, PutPackageRequest, RunStatus, UpsertJobRequest,
};
use switchyard_tests::{AgentProcess, Workspace, within};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::{v1, v1alpha};

use crate::agent::{WAIT, run_status, start, wait_for_end};

const GREET_PACKAGE: &str = r#"[package]
name = "greet"

[parameters]
greeting = "hello"

[[tasks]]
name = "Greet"
kind = "process"
command = ["echo", "{{ params.greeting }}"]
"#;

const PUSHED_JOB: &str = r#"name = "pushed"

[[steps]]
name = "greet"
package = "etl/greet.toml"
params = { greeting = "hi" }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn put_package_refuses_path_traversal_and_a_pushed_job_runs_a_pushed_package() {
    let ws = Workspace::new();
    let agent = AgentProcess::setup(&ws).start().await;
    let mut client = agent.client().await;

    let traversal = PutPackageRequest { name: "../evil.toml".to_string(), content: GREET_PACKAGE.to_string() };
    let refused = client.put_package(traversal).await.expect_err("a path leaving the packages dir is refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("traversal"), "{refused:?}");
    for place in [agent.data_dir().join("evil.toml"), agent.folder().join("evil.toml")] {
        assert!(!place.exists(), "{} was written", place.display());
    }
    let invalid = PutPackageRequest { name: "broken.toml".to_string(), content: "[package]\nnme = 1\n".to_string() };
    let refused = client.put_package(invalid).await.expect_err("an invalid package is refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("content"), "{refused:?}");

    let package = PutPackageRequest { name: "etl/greet.toml".to_string(), content: GREET_PACKAGE.to_string() };
    let stored = client.put_package(package).await.expect("PutPackage").into_inner();
    let upserted = client
        .upsert_job(UpsertJobRequest { definition: PUSHED_JOB.to_string() })
        .await
        .expect("UpsertJob")
        .into_inner();
    let started = start(&mut client, "pushed", "deployer").await;
    let ended = wait_for_end(&client, &started.run_id).await;

    assert_eq!(stored.name, "etl/greet.toml");
    assert_eq!(stored.hash.len(), 64, "a SHA-256 in hex: {stored:?}");
    assert_eq!((upserted.name.as_str(), upserted.created), ("pushed", true), "{upserted:?}");
    let jobs = client.list_jobs(ListJobsRequest {}).await.expect("ListJobs").into_inner().jobs;
    let pushed = jobs.iter().find(|j| j.name == "pushed").expect("the pushed job is listed");
    assert_eq!((pushed.source.as_str(), pushed.hash.as_str()), ("pushed", upserted.hash.as_str()), "{pushed:?}");
    assert_eq!(run_status(&ended), RunStatus::Succeeded, "{ended:?}");
    assert_eq!(ended.job_hash, upserted.hash, "{ended:?}");
    assert!(ended.package_hashes.contains(&stored.hash), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_job_definition_is_refused_naming_the_field() {
    let ws = Workspace::new();
    let agent = AgentProcess::setup(&ws).start().await;
    let mut client = agent.client().await;

    let bad_policy = "name = \"bad\"\nconcurrency = \"sometimes\"\n\n[[steps]]\nname = \"s\"\ncommand = [\"true\"]\n";
    let missing_package = "name = \"orphan\"\n\n[[steps]]\nname = \"s\"\npackage = \"nowhere.toml\"\n";
    let bad_policy = client.upsert_job(UpsertJobRequest { definition: bad_policy.to_string() }).await;
    let missing_package = client.upsert_job(UpsertJobRequest { definition: missing_package.to_string() }).await;

    let bad_policy = bad_policy.expect_err("an unknown concurrency policy is refused");
    assert_eq!(bad_policy.code(), Code::InvalidArgument, "{bad_policy:?}");
    assert!(bad_policy.message().contains("concurrency"), "{bad_policy:?}");
    let missing_package = missing_package.expect_err("a step naming a package the agent lacks is refused");
    assert_eq!(missing_package.code(), Code::InvalidArgument, "{missing_package:?}");
    assert!(missing_package.message().contains("steps[0].package"), "{missing_package:?}");
    let jobs = client.list_jobs(ListJobsRequest {}).await.expect("ListJobs").into_inner().jobs;
    assert!(jobs.is_empty(), "refused jobs were stored: {jobs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_injection_is_refused_when_disabled() {
    let ws = Workspace::new();
    let agent = AgentProcess::setup(&ws).start().await;
    let mut client = agent.client().await;

    let crash = InjectFaultRequest { kind: FaultKind::Crash as i32, ..InjectFaultRequest::default() };
    let refused = client.inject_fault(crash).await.expect_err("no allow_fault_injection, no fault");

    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let load = client.get_load(GetLoadRequest {}).await.expect("the agent still answers").into_inner();
    assert_eq!(load.name, "e2e-agent");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_are_served() {
    let ws = Workspace::new();
    let agent = AgentProcess::setup(&ws).start().await;
    let channel = agent.channel().await;
    let mut health = HealthClient::new(channel.clone());

    for service in ["", "switchyard.v1.Agent"] {
        let request = HealthCheckRequest { service: service.to_string() };
        let reply = health.check(request).await.unwrap_or_else(|e| panic!("health of {service:?}: {e:?}"));
        assert_eq!(reply.into_inner().status, ServingStatus::Serving as i32, "health of {service:?}");
    }
    let v1_services = list_services_v1(channel.clone()).await;
    let v1alpha_services = list_services_v1alpha(channel).await;

    for services in [&v1_services, &v1alpha_services] {
        for wanted in ["switchyard.v1.Agent", "grpc.health.v1.Health"] {
            assert!(services.iter().any(|s| s == wanted), "{wanted} is not listed: {services:?}");
        }
        // An agent answers UNIMPLEMENTED for the coordinator's service: it must not advertise it.
        assert!(!services.iter().any(|s| s == "switchyard.v1.Coordinator"), "{services:?}");
    }
}

pub(crate) async fn list_services_v1(channel: tonic::transport::Channel) -> Vec<String> {
    use v1::server_reflection_request::MessageRequest;
    use v1::server_reflection_response::MessageResponse;
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies =
        client.server_reflection_info(tokio_stream::iter([request])).await.expect("reflection v1").into_inner();
    let reply = within(WAIT, "a v1 reflection reply", replies.message()).await;
    let reply = reply.expect("a v1 reply").expect("the v1 stream holds a reply");
    match reply.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected v1 reflection reply: {other:?}"),
    }
}

async fn list_services_v1alpha(channel: tonic::transport::Channel) -> Vec<String> {
    use v1alpha::server_reflection_request::MessageRequest;
    use v1alpha::server_reflection_response::MessageResponse;
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies =
        client.server_reflection_info(tokio_stream::iter([request])).await.expect("reflection v1alpha").into_inner();
    let reply = within(WAIT, "a v1alpha reflection reply", replies.message()).await;
    let reply = reply.expect("a v1alpha reply").expect("the v1alpha stream holds a reply");
    match reply.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected v1alpha reflection reply: {other:?}"),
    }
}
