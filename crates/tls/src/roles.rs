//! Roles (DESIGN.md §11): a client certificate names its role in a SAN URI
//! `switchyard://role/NAME`, and one tower layer per service decides each call by its gRPC
//! method path from a [`RoleTable`], so no handler checks roles itself. Calls outside the
//! service (health, reflection) answer any client the CA signed; a connection without a
//! [`Peer`] (no TLS) has no roles to check: loopback trust.

use std::fmt;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tonic::Status;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The scheme and path before a role's name in a SAN URI.
pub const ROLE_URI_PREFIX: &str = "switchyard://role/";

/// What a client certificate allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The coordinator reaching its agents.
    Coordinator,
    /// A person or tool running the cluster: everything.
    Operator,
    /// Reads only.
    Reader,
    /// An agent registering itself with the coordinator.
    Agent,
}

impl Role {
    /// Every role, in the order messages list them.
    pub const ALL: [Role; 4] = [Role::Coordinator, Role::Operator, Role::Reader, Role::Agent];

    /// The name in `switchyard://role/NAME`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Operator => "operator",
            Role::Reader => "reader",
            Role::Agent => "agent",
        }
    }

    /// The role a name means, if any.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.name() == name)
    }

    /// `switchyard://role/NAME`.
    pub fn uri(self) -> String {
        format!("{ROLE_URI_PREFIX}{}", self.name())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who is on the other end of a TLS connection, by its certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    /// The role its SAN URI names; none when it names no known role.
    pub role: Option<Role>,
    /// The certificate's subject (`CN=operator`), for logs and messages.
    pub subject: String,
    /// Where it connected from.
    pub remote: Option<SocketAddr>,
}

/// The subject and role of a DER certificate; a certificate that does not parse has neither.
pub fn peer_from_certificate(der: &[u8]) -> Peer {
    let Ok((_, certificate)) = X509Certificate::from_der(der) else {
        return Peer { subject: "an unreadable certificate".into(), ..Peer::default() };
    };
    let mut role = None;
    if let Ok(Some(names)) = certificate.subject_alternative_name() {
        for name in &names.value.general_names {
            if let GeneralName::URI(uri) = name
                && let Some(found) = uri.strip_prefix(ROLE_URI_PREFIX).and_then(Role::from_name)
            {
                role = Some(found);
                break;
            }
        }
    }
    Peer { role, subject: certificate.subject().to_string(), remote: None }
}

/// Which roles may make which calls of one gRPC service.
#[derive(Debug)]
pub struct RoleTable {
    /// The service's path prefix: `/switchyard.v1.Agent/`.
    pub service: &'static str,
    /// The roles that may call every method.
    pub everything: &'static [Role],
    /// Methods that further roles may call too.
    pub also: &'static [(&'static str, &'static [Role])],
}

/// On an agent: coordinator and operator everything, reader the reads (DESIGN.md §11).
pub static AGENT_ROLES: RoleTable = RoleTable {
    service: "/switchyard.v1.Agent/",
    everything: &[Role::Coordinator, Role::Operator],
    also: &[
        ("ListJobs", &[Role::Reader]),
        ("GetRun", &[Role::Reader]),
        ("GetRunOutput", &[Role::Reader]),
        ("JobHistory", &[Role::Reader]),
        ("WatchRuns", &[Role::Reader]),
        ("GetLoad", &[Role::Reader]),
    ],
};

/// On the coordinator: operator everything, reader the reads, agent only RegisterAgent.
pub static COORDINATOR_ROLES: RoleTable = RoleTable {
    service: "/switchyard.v1.Coordinator/",
    everything: &[Role::Operator],
    also: &[
        ("GetExecution", &[Role::Reader]),
        ("WatchExecution", &[Role::Reader]),
        ("ListExecutions", &[Role::Reader]),
        ("GetReport", &[Role::Reader]),
        ("ListAgents", &[Role::Reader]),
        ("RegisterAgent", &[Role::Agent]),
    ],
};

impl RoleTable {
    /// The roles that may call `method` (`StartJob`).
    pub fn allowed(&self, method: &str) -> Vec<Role> {
        let mut roles = self.everything.to_vec();
        for (name, more) in self.also {
            if *name == method {
                roles.extend_from_slice(more);
            }
        }
        roles
    }

    /// Decides a call to `path` by `peer`: refused is PERMISSION_DENIED naming the call, the
    /// roles that may make it and the certificate's subject, and is logged.
    pub fn check(&self, path: &str, peer: Option<&Peer>) -> Result<(), Status> {
        let (Some(peer), Some(method)) = (peer, path.strip_prefix(self.service)) else {
            return Ok(());
        };
        let allowed = self.allowed(method);
        if peer.role.is_some_and(|role| allowed.contains(&role)) {
            return Ok(());
        }
        let roles = allowed.iter().map(|r| r.name()).collect::<Vec<_>>().join(" or ");
        let has = match peer.role {
            Some(role) => format!("the role {role}"),
            None => format!("no {ROLE_URI_PREFIX}NAME URI"),
        };
        tracing::warn!(
            call = method,
            subject = %peer.subject,
            role = peer.role.map(Role::name).unwrap_or("none"),
            remote = ?peer.remote,
            "call refused: its role may not make it"
        );
        Err(Status::permission_denied(format!(
            "{method} needs the role {roles}; the client certificate ({}) has {has}",
            peer.subject
        )))
    }
}

/// The tower layer that applies a [`RoleTable`] to every call of a server.
#[derive(Debug, Clone, Copy)]
pub struct RoleLayer {
    table: &'static RoleTable,
}

impl RoleLayer {
    /// A layer deciding calls by `table`.
    pub fn new(table: &'static RoleTable) -> Self {
        Self { table }
    }
}

impl<S> tower_layer::Layer<S> for RoleLayer {
    type Service = RoleService<S>;

    fn layer(&self, inner: S) -> RoleService<S> {
        RoleService { inner, table: self.table }
    }
}

/// The service [`RoleLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct RoleService<S> {
    inner: S,
    table: &'static RoleTable,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for RoleService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<http::Response<R>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.table.check(request.uri().path(), request.extensions().get::<Peer>()) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(status) => Either::Right(ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests;
