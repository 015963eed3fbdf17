//! Mutual TLS for every gRPC connection of Switchyard (DESIGN.md §11), in one place for the
//! agent, the coordinator and the CLI: PEM files read with rustls-pki-types into rustls configs
//! (ring provider only), held in a [`Tls`] whose configs swap atomically on [`Tls::reload`]
//! (SIGHUP), a listener that hands tonic only handshaken connections of clients the CA signed
//! ([`incoming`]), a connector that dials `https://` with this process's certificate
//! ([`connector`]), and roles from the client certificate's SAN URI `switchyard://role/NAME`,
//! enforced by one tower layer per service keyed by the gRPC method path ([`RoleLayer`]).

mod certificates;
mod connector;
mod hangup;
mod incoming;
mod roles;

pub use certificates::{Tls, TlsError};
pub use connector::{Connector, TlsIo, connect, connect_lazy};
pub use hangup::reload_on_sighup;
pub use incoming::{Incoming, TlsConnection, incoming};
pub use roles::{AGENT_ROLES, COORDINATOR_ROLES, Peer, Role, RoleLayer, RoleService, RoleTable, peer_from_certificate};
pub use switchyard_settings::TlsFiles;
