//! The shape check of an incoming JSON-RPC message, before any MCP transport sees
//! it: invalid JSON is `-32700`, a message that is not JSON-RPC 2.0 (or a batch,
//! which the MCP revisions served here do not allow) is `-32600`, a request without
//! the `params` its method requires is `-32602`. Pure, so it is property-tested and
//! fuzzed (`fuzz/`) on its own; the transport maps a [`Rejection`] to HTTP.

use serde_json::Value;

/// Methods whose `params` object is required.
const NEEDS_PARAMS: &[&str] = &[
    "initialize",
    "tools/call",
    "prompts/get",
    "resources/read",
    "completion/complete",
];

/// Why a body was refused before reaching the MCP transport.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// HTTP status (400 for every malformed message).
    pub status: u16,
    /// JSON-RPC error code.
    pub code: i32,
    /// What was wrong.
    pub message: String,
    /// The request id, when one could be read.
    pub id: Value,
}

impl Rejection {
    /// A 400 rejection.
    pub fn new(code: i32, message: impl Into<String>, id: Value) -> Self {
        Self {
            status: 400,
            code,
            message: message.into(),
            id,
        }
    }
}

/// What the transport needs to know of a message that passed the check, read in the
/// same parse.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The request id (`null` for notifications and responses).
    pub id: Value,
    /// The method, for requests and notifications.
    pub method: Option<String>,
}

/// Checks one JSON-RPC message body; `Ok` lets it through.
pub fn check(body: &[u8]) -> Result<(), Rejection> {
    inspect(body).map(drop)
}

/// [`check`], returning the message's id and method from the one parse.
pub fn inspect(body: &[u8]) -> Result<Checked, Rejection> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Rejection::new(-32700, format!("Parse error: {e}"), Value::Null))?;
    let Value::Object(message) = value else {
        let what = if value.is_array() {
            "batch requests are not supported"
        } else {
            "a JSON-RPC message must be an object"
        };
        return Err(Rejection::new(
            -32600,
            format!("Invalid Request: {what}"),
            Value::Null,
        ));
    };
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let id_ok = matches!(id, Value::Null | Value::String(_) | Value::Number(_));
    let echo_id = if id_ok { id.clone() } else { Value::Null };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Rejection::new(
            -32600,
            "Invalid Request: `jsonrpc` must be \"2.0\"",
            echo_id,
        ));
    }
    if !id_ok {
        return Err(Rejection::new(
            -32600,
            "Invalid Request: `id` must be a string or a number",
            Value::Null,
        ));
    }
    let Some(method) = message.get("method") else {
        // A response to a server-to-client request: rmcp checks it.
        return Ok(Checked { id, method: None });
    };
    let Some(method) = method.as_str() else {
        return Err(Rejection::new(
            -32600,
            "Invalid Request: `method` must be a string",
            echo_id,
        ));
    };
    if NEEDS_PARAMS.contains(&method) && message.contains_key("id") {
        match message.get("params") {
            Some(Value::Object(params)) => {
                let named = !matches!(method, "tools/call" | "prompts/get")
                    || params.get("name").is_some_and(Value::is_string);
                if !named {
                    return Err(Rejection::new(
                        -32602,
                        format!("Invalid params: {method} needs a string `name`"),
                        echo_id,
                    ));
                }
            }
            _ => {
                return Err(Rejection::new(
                    -32602,
                    format!("Invalid params: {method} needs a `params` object"),
                    echo_id,
                ));
            }
        }
    }
    Ok(Checked {
        id,
        method: Some(method.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(body: &str) -> Option<i32> {
        check(body.as_bytes()).err().map(|r| r.code)
    }

    #[test]
    fn malformed_messages_get_their_json_rpc_codes() {
        assert_eq!(code("{bad"), Some(-32700));
        assert_eq!(code(""), Some(-32700));
        assert_eq!(code("[]"), Some(-32600));
        assert_eq!(
            code("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]"),
            Some(-32600)
        );
        assert_eq!(code("42"), Some(-32600));
        assert_eq!(
            code(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#),
            Some(-32600)
        );
        assert_eq!(code(r#"{"id":1,"method":"ping"}"#), Some(-32600));
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#),
            Some(-32600)
        );
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":7}"#), Some(-32600));
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#),
            Some(-32602)
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}"#),
            Some(-32602)
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":3}}"#),
            Some(-32602)
        );
    }

    #[test]
    fn valid_messages_pass() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":5,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        ] {
            assert_eq!(check(body.as_bytes()), Ok(()), "{body}");
        }
    }

    /// Any JSON value, nested a few levels.
    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|n| json!(n)),
            "\\PC{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("jsonrpc".to_owned()),
                        Just("id".to_owned()),
                        Just("method".to_owned()),
                        Just("params".to_owned()),
                        Just("name".to_owned()),
                        "[a-z]{1,6}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Bytes of any kind, valid UTF-8 or not: an answer, never a panic, and a
        /// rejection is one of the documented codes.
        #[test]
        fn any_bytes_get_an_answer(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Err(rejection) = check(&body) {
                proptest::prop_assert!([-32700, -32600, -32602].contains(&rejection.code));
            }
        }

        /// Any JSON shaped like a message: the same.
        #[test]
        fn any_json_gets_an_answer(value in json_value()) {
            let body = serde_json::to_vec(&value).expect("serialises");
            if let Err(rejection) = check(&body) {
                proptest::prop_assert!([-32700, -32600, -32602].contains(&rejection.code));
            }
        }
    }

    #[test]
    fn deeply_nested_json_is_refused_without_exhausting_the_stack() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(check(deep.as_bytes()).err().map(|r| r.code), Some(-32700));
        let params = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{}{}}}}}"#,
            "{\"a\":".repeat(50_000),
            "}".repeat(50_000)
        );
        assert_eq!(check(params.as_bytes()).err().map(|r| r.code), Some(-32700));
    }

    #[test]
    fn the_id_is_echoed_when_readable() {
        let rejection = check(br#"{"jsonrpc":"2.0","id":"req-7","method":"prompts/get"}"#)
            .expect_err("no params");
        assert_eq!(rejection.id, json!("req-7"));
    }
}
