//! Any upstream server and tool name: the exposed name keeps to the MCP rules
//! (`[A-Za-z0-9_.-]`, within the length budget) and is the same every time.
#![no_main]

use gateway_router::{NamingPolicy, PrefixMode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, u8, &str, &str)| {
    let (mode, budget, server, name) = input;
    let mode = [
        PrefixMode::Always,
        PrefixMode::Conditional,
        PrefixMode::Never,
    ][usize::from(mode % 3)];
    let max_len = 16 + usize::from(budget) % 113;
    let policy = NamingPolicy::new(mode, "__", max_len).expect("a valid policy");
    for exposed in [policy.prefixed(server, name), policy.bare(name)] {
        assert!(
            !exposed.is_empty() && exposed.len() <= max_len,
            "{exposed:?}"
        );
        assert!(
            exposed
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')),
            "{exposed:?}"
        );
    }
    assert_eq!(policy.prefixed(server, name), policy.prefixed(server, name));
});
