//! The role tables of DESIGN.md §11 and the subject and role read from a certificate.

use super::*;

fn peer(role: Option<Role>) -> Peer {
    Peer { role, subject: "CN=someone".into(), remote: None }
}

#[test]
fn without_tls_there_are_no_roles_to_check() {
    assert!(AGENT_ROLES.check("/switchyard.v1.Agent/StartJob", None).is_ok());
}

#[test]
fn health_and_reflection_answer_any_client_of_the_ca() {
    for path in ["/grpc.health.v1.Health/Check", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"] {
        assert!(AGENT_ROLES.check(path, Some(&peer(None))).is_ok(), "{path}");
        assert!(COORDINATOR_ROLES.check(path, Some(&peer(Some(Role::Reader)))).is_ok(), "{path}");
    }
}

#[test]
fn on_an_agent_reader_reads_and_coordinator_and_operator_do_everything() {
    let reader = peer(Some(Role::Reader));
    for method in ["ListJobs", "GetRun", "GetRunOutput", "JobHistory", "WatchRuns", "GetLoad"] {
        assert!(AGENT_ROLES.check(&format!("/switchyard.v1.Agent/{method}"), Some(&reader)).is_ok(), "{method}");
    }
    let refused = AGENT_ROLES.check("/switchyard.v1.Agent/StartJob", Some(&reader)).expect_err("reader starts");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        refused.message(),
        "StartJob needs the role coordinator or operator; the client certificate (CN=someone) has the role reader"
    );
    for role in [Role::Coordinator, Role::Operator] {
        assert!(AGENT_ROLES.check("/switchyard.v1.Agent/InjectFault", Some(&peer(Some(role)))).is_ok());
    }
    for role in [Some(Role::Agent), None] {
        assert!(AGENT_ROLES.check("/switchyard.v1.Agent/GetLoad", Some(&peer(role))).is_err(), "{role:?}");
    }
}

#[test]
fn on_the_coordinator_agents_only_register_and_readers_only_read() {
    let agent = peer(Some(Role::Agent));
    assert!(COORDINATOR_ROLES.check("/switchyard.v1.Coordinator/RegisterAgent", Some(&agent)).is_ok());
    assert!(COORDINATOR_ROLES.check("/switchyard.v1.Coordinator/ListAgents", Some(&agent)).is_err());
    let reader = peer(Some(Role::Reader));
    for method in ["GetExecution", "WatchExecution", "ListExecutions", "GetReport", "ListAgents"] {
        let path = format!("/switchyard.v1.Coordinator/{method}");
        assert!(COORDINATOR_ROLES.check(&path, Some(&reader)).is_ok(), "{method}");
    }
    let refused = COORDINATOR_ROLES.check("/switchyard.v1.Coordinator/StartExecution", Some(&reader)).expect_err("no");
    assert!(refused.message().starts_with("StartExecution needs the role operator;"), "{}", refused.message());
    let operator = peer(Some(Role::Operator));
    assert!(COORDINATOR_ROLES.check("/switchyard.v1.Coordinator/DeployJob", Some(&operator)).is_ok());
    let coordinator = peer(Some(Role::Coordinator));
    assert!(COORDINATOR_ROLES.check("/switchyard.v1.Coordinator/StartExecution", Some(&coordinator)).is_err());
}

#[test]
fn the_role_and_subject_come_from_the_certificate() {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, "reader");
    params.subject_alt_names.push(rcgen::SanType::URI(Role::Reader.uri().try_into().expect("uri")));
    let certificate = params.self_signed(&key).expect("certificate");
    let peer = peer_from_certificate(certificate.der());
    assert_eq!(peer.role, Some(Role::Reader));
    assert_eq!(peer.subject, "CN=reader");

    let mut other = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    other.subject_alt_names.push(rcgen::SanType::URI("switchyard://role/root".try_into().expect("uri")));
    assert_eq!(peer_from_certificate(other.self_signed(&key).expect("certificate").der()).role, None);
}
