//! Bearer-token verification, the adapter behind the domain's
//! [`gateway_domain::TokenVerifier`] port: [`JwtVerifier`] checks JWT access tokens
//! (plain JWTs and RFC 9068 `at+jwt`) against the keys an OIDC issuer publishes,
//! found by OIDC discovery ([`keys`]) and cached, with settings for any OIDC issuer
//! or the Azure Entra ID preset ([`settings`]). It also obtains the gateway's own
//! tokens for upstreams with OAuth client credentials ([`upstream_tokens`], behind the
//! domain's [`gateway_domain::UpstreamTokenSource`] port).
//!
//! Architecture invariant: the network is touched only to discover the issuer and
//! fetch its keys (at start-up, and on an unknown key id at most once per
//! `refresh_interval`); verifying a token with a cached key is pure computation.
//! Only asymmetric algorithms are ever accepted.

pub mod facade;
pub mod http;
pub mod keys;
pub mod ring_provider;
pub mod settings;
pub mod upstream_tokens;
pub mod verifier;

pub use facade::{Facade, FacadeSettings};
pub use keys::KeyStore;
pub use settings::{AuthSettings, ClaimNames, EntraSettings, KeySource, LocalJwks, LocalKeys};
pub use upstream_tokens::ClientCredentialsTokens;
pub use verifier::JwtVerifier;
