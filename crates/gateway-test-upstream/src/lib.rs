//! The MCP test upstream of the registry gateway's test suite.
//!
//! [`TestUpstream`] is a real MCP server built on rmcp (a hand-written
//! `rmcp::ServerHandler`, no macros). It serves over Streamable HTTP at `/mcp`
//! ([`serve_http`]) or stdio ([`serve_stdio`]); the `test-upstream` binary wraps both.
//!
//! It offers two sets of fixtures:
//! - the gateway's own (tools `echo`, `add`, `progress`, `sleep`, `fail`, `image`,
//!   `audio`, `resource_link`, `embedded_resource`, `add_tool`, `sample`, `elicit`, `log`;
//!   resources `test://static/text`, `test://static/blob`, template `test://items/{id}`;
//!   prompts `greeting` and `simple`; completion of `greeting`'s `name`);
//! - those the server scenarios of `@modelcontextprotocol/conformance` 0.1.16 call
//!   (`test_*` tools, resources and prompts; see the `conformance` module).
//!
//! Sampling and elicitation go to the client as requests on session protocols, and as
//! `input_required` results (MRTR) on 2026-07-28. The SSE-polling tool
//! `test_reconnection` answers on its POST stream: rmcp does not let a handler close its
//! own request's SSE stream.

mod catalog;
mod conformance;
mod serve;
mod server;
mod support;
mod tools;

pub use serve::{HttpUpstream, serve_http, serve_http_with, serve_stdio, serve_stdio_with};
pub use server::TestUpstream;
