//! Any bytes as a JSON-RPC message body: an answer, never a panic; a rejection has
//! one of the documented codes; a message let through is a JSON-RPC 2.0 object.
#![no_main]

use gateway_router::jsonrpc::check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    match check(body) {
        Ok(()) => {
            let message: serde_json::Value =
                serde_json::from_slice(body).expect("a message let through is JSON");
            assert_eq!(
                message["jsonrpc"], "2.0",
                "a message let through is JSON-RPC 2.0"
            );
        }
        Err(rejection) => {
            assert!([-32700, -32600, -32602].contains(&rejection.code));
            assert_eq!(rejection.status, 400);
        }
    }
});
