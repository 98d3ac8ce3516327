//! Resource URIs on the aggregate endpoint carry their upstream in the scheme:
//! `gw+<server>:<original URI>`. The result is still a valid URI (and a template
//! stays a template), reading it is unambiguous even when two upstreams use the same
//! URI, and the original is recovered exactly by stripping the prefix.

/// The scheme prefix that marks a gateway resource URI.
pub const SCHEME_PREFIX: &str = "gw+";

/// The URI (or URI template) a client sees for an upstream's resource.
pub fn expose(server: &str, original: &str) -> String {
    format!("{SCHEME_PREFIX}{server}:{original}")
}

/// Splits an exposed URI into (server name, original URI); `None` if it is not one.
pub fn parse(exposed: &str) -> Option<(&str, &str)> {
    let rest = exposed.strip_prefix(SCHEME_PREFIX)?;
    let (server, original) = rest.split_once(':')?;
    (!server.is_empty() && !original.is_empty()).then_some((server, original))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn round_trips() {
        let exposed = expose("everything", "test://static/resource/1");
        assert_eq!(exposed, "gw+everything:test://static/resource/1");
        assert_eq!(
            parse(&exposed),
            Some(("everything", "test://static/resource/1"))
        );
        assert_eq!(parse("file:///etc/passwd"), None);
        assert_eq!(parse("gw+:x"), None);
        assert_eq!(parse("gw+srv:"), None);
    }

    proptest! {
        #[test]
        fn any_original_is_recovered(server in "[a-z0-9][a-z0-9-]{0,20}", original in "\\PC{1,100}") {
            let exposed = expose(&server, &original);
            prop_assert_eq!(parse(&exposed), Some((server.as_str(), original.as_str())));
        }
    }
}
