//! Addresses of agents and coordinators on the command line, by the one address rule of
//! [`switchyard_settings::Address`]: https with `--ca/--cert/--key`, http without.

/// Parses `given`; `what` names it in messages ("agent address"). Returns the text as given
/// (trimmed) and the URI to dial, or a message saying what is wrong and what to write.
pub fn parse(given: &str, what: &str) -> Result<(String, String), String> {
    let address = switchyard_settings::Address::parse_for(given, crate::cli::tls::transport())
        .map_err(|e| format!("{what} {e}"))?;
    Ok((address.given().to_string(), address.uri()))
}
