//! Any text as an exposed resource URI: parsed or refused, never a panic; a URI the
//! gateway exposes for a server name parses back to exactly that server and URI.
#![no_main]

use gateway_router::resource_uri::{expose, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (first, second) = input;
    let _ = parse(first);
    // Server names are `[a-z0-9][a-z0-9-]*` (the domain refuses anything else).
    let server: String = first
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .collect();
    let server = format!("s{server}");
    if !second.is_empty() {
        assert_eq!(
            parse(&expose(&server, second)),
            Some((server.as_str(), second))
        );
    }
});
