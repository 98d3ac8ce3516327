//! Raw inputs of the use cases, as an adapter decoded them from the wire. The
//! registry turns them into domain values, collecting every field error at once.

use std::collections::BTreeMap;

use gateway_domain::{
    ClientCredentials, Secret, ServerId, ServerName, Tag, TenantId, Transport, ValidationErrors,
};
use uuid::Uuid;

/// How a client points at a server: by id or by name (both are unique).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerRef {
    /// By stable id.
    Id(ServerId),
    /// By current name.
    Name(ServerName),
}

impl ServerRef {
    /// A UUID is an id; anything else must be a valid name.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Ok(uuid) = Uuid::parse_str(text) {
            return Ok(Self::Id(ServerId::from_uuid(uuid)));
        }
        ServerName::parse(text).map(Self::Name).map_err(|_| {
            format!(
                "`{}` is neither a server id (UUID) nor a valid server name",
                text.escape_debug()
            )
        })
    }

    /// The reference as the client wrote it, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Id(id) => id.to_string(),
            Self::Name(name) => name.to_string(),
        }
    }
}

/// A transport as sent by a client, not yet validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportInput {
    /// Streamable HTTP endpoint.
    StreamableHttp {
        /// Endpoint URL.
        url: String,
        /// More endpoints of the same server.
        replicas: Vec<String>,
        /// Static headers.
        headers: BTreeMap<String, Secret>,
        /// The gateway's own OAuth client credentials for this upstream.
        oauth: Option<ClientCredentialsInput>,
    },
    /// Child process.
    Stdio {
        /// Executable.
        command: String,
        /// Arguments.
        args: Vec<String>,
        /// Environment.
        env: BTreeMap<String, Secret>,
        /// Working directory.
        cwd: Option<String>,
    },
}

impl TransportInput {
    pub(crate) fn validate(self) -> Result<Transport, ValidationErrors> {
        match self {
            Self::StreamableHttp {
                url,
                replicas,
                headers,
                oauth,
            } => {
                let transport = Transport::replicated_http(&url, &replicas, headers);
                let Some(oauth) = oauth else {
                    return transport;
                };
                let credentials = ClientCredentials::new(
                    &oauth.token_url,
                    &oauth.client_id,
                    oauth.client_secret,
                    oauth.scopes,
                    oauth.audience,
                    oauth.resource,
                );
                match (transport, credentials) {
                    (Ok(transport), Ok(credentials)) => {
                        transport.with_client_credentials(credentials)
                    }
                    (transport, credentials) => {
                        let mut errors = transport.err().unwrap_or_default();
                        if let Err(nested) = credentials {
                            errors.absorb("oauth", nested);
                        }
                        Err(errors)
                    }
                }
            }
            Self::Stdio {
                command,
                args,
                env,
                cwd,
            } => Transport::stdio(&command, args, env, cwd),
        }
    }
}

/// OAuth client credentials as sent by a client, not yet validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentialsInput {
    /// Token endpoint URL.
    pub token_url: String,
    /// Client id.
    pub client_id: String,
    /// Client secret (the mask keeps the stored one).
    pub client_secret: Secret,
    /// Scopes to request.
    pub scopes: Vec<String>,
    /// `audience` parameter.
    pub audience: Option<String>,
    /// `resource` parameter.
    pub resource: Option<String>,
}

/// Registration of a new server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterServer {
    /// Unique name.
    pub name: String,
    /// Human-readable name.
    pub title: Option<String>,
    /// What it is for.
    pub description: Option<String>,
    /// How to reach it.
    pub transport: TransportInput,
    /// Labels.
    pub tags: Vec<String>,
    /// Owning tenant.
    pub tenant: Option<String>,
    /// Whether to route to it right away.
    pub enabled: bool,
    /// Its own request timeout, in milliseconds.
    pub request_timeout_ms: Option<u64>,
}

/// A partial update: `None` leaves a field unchanged; `Some(None)` clears an
/// optional field (JSON merge-patch semantics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerChanges {
    /// New name.
    pub name: Option<String>,
    /// New or cleared title.
    pub title: Option<Option<String>>,
    /// New or cleared description.
    pub description: Option<Option<String>>,
    /// New transport (replaces the whole transport; masked secrets keep their value).
    pub transport: Option<TransportInput>,
    /// New tag set.
    pub tags: Option<Vec<String>>,
    /// New or cleared tenant.
    pub tenant: Option<Option<String>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// New or cleared request timeout.
    pub request_timeout_ms: Option<Option<u64>>,
}

pub(crate) fn parse_tags(raw: &[String], errors: &mut ValidationErrors) -> Vec<Tag> {
    raw.iter()
        .enumerate()
        .filter_map(|(index, tag)| errors.check(&format!("tags.{index}"), Tag::parse(tag)))
        .collect()
}

pub(crate) fn parse_tenant(raw: Option<&str>, errors: &mut ValidationErrors) -> Option<TenantId> {
    raw.and_then(|tenant| errors.check("tenant", TenantId::parse(tenant)))
}
