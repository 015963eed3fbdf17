//! Addresses of agents and coordinators on the command line: `host:port` or
//! `http://host:port` (https is refused until TLS exists).

/// Parses `given`; `what` names it in messages ("agent address"). Returns the text as given
/// (trimmed) and the URI to dial, or a message saying what is wrong and what to write.
pub fn parse(given: &str, what: &str) -> Result<(String, String), String> {
    let bad = |why: &str| format!("{what} \"{given}\" {why}; use host:port or http://host:port");
    let trimmed = given.trim();
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("http".to_string(), trimmed),
    };
    if scheme != "http" && scheme != "https" {
        return Err(bad(&format!("has the scheme \"{scheme}\", which is neither http nor https")));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') {
        return Err(bad("has a path"));
    }
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(bad("has no port"));
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad("has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(bad(&format!("has the port \"{port}\", which is not 1 to 65535"))),
    }
    if scheme == "https" {
        return Err(format!(
            "{what} \"{given}\": https is not supported yet (this build has no TLS); use http://{authority}"
        ));
    }
    Ok((trimmed.to_string(), format!("{scheme}://{authority}")))
}
