//! The subregistry use cases: import `server.json` documents as immutable published
//! versions, read them back for `/v0.1`, change their status, and link a version to
//! the upstream registered from it.

use chrono::Utc;
use gateway_domain::{
    PublishStatus, PublishedQuery, PublishedServer, RegistryEvent, RepositoryError, ServerId,
    ServerJson, ValidationErrors,
};
use serde_json::Value;

use crate::error::RegistryError;
use crate::service::Registry;

/// What an import did with one document.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The entry as stored now.
    pub entry: PublishedServer,
    /// Whether this import created it (false: the same document was published already).
    pub created: bool,
}

/// `latest`, or one version.
pub const LATEST: &str = "latest";

/// Rows read per page when a registry method wants a whole result set.
const PAGE_ROWS: u64 = 500;

impl Registry {
    fn published_store(
        &self,
    ) -> Result<&std::sync::Arc<dyn gateway_domain::PublishedRepository>, RegistryError> {
        self.published.as_ref().ok_or_else(|| {
            RegistryError::Internal("no store for published servers is configured".into())
        })
    }

    /// Checks a `server.json` document against the official schema's rules (each
    /// error names its field).
    pub fn check_server_json(document: &Value) -> Result<ServerJson, ValidationErrors> {
        ServerJson::parse(document)
    }

    /// Publishes one `server.json` version. The same document again changes nothing;
    /// other content under an existing version is refused (versions are immutable).
    pub async fn import_server_json(&self, document: &Value) -> Result<Imported, RegistryError> {
        self.publish_version(document, PublishStatus::Active, None)
            .await
    }

    async fn publish_version(
        &self,
        document: &Value,
        status: PublishStatus,
        message: Option<String>,
    ) -> Result<Imported, RegistryError> {
        let parsed = Self::check_server_json(document)?;
        let name = parsed
            .registry_name()
            .map_err(|e| RegistryError::Invalid(ValidationErrors::single("name", e)))?;
        let store = self.published_store()?;
        let same_or_conflict = |existing: PublishedServer| {
            if existing.document == *document {
                Ok(Imported {
                    entry: existing,
                    created: false,
                })
            } else {
                Err(RegistryError::VersionExists {
                    name: name.to_string(),
                    version: parsed.version.clone(),
                })
            }
        };
        let read = |e: RepositoryError| RegistryError::from_repository(e, name.as_str());
        if let Some(existing) = store
            .find(name.as_str(), &parsed.version)
            .await
            .map_err(read)?
        {
            return same_or_conflict(existing);
        }
        let now = Utc::now();
        let entry = PublishedServer {
            name: name.clone(),
            version: parsed.version.clone(),
            document: document.clone(),
            status,
            status_message: message.filter(|_| status != PublishStatus::Active),
            status_changed_at: now,
            published_at: now,
            updated_at: now,
            is_latest: false,
            upstream: None,
        };
        match store.publish(&entry).await {
            Ok(stored) => {
                self.announce(RegistryEvent::PublishedChanged);
                Ok(Imported {
                    entry: stored,
                    created: true,
                })
            }
            // Published by a concurrent import meanwhile: the same answer as above.
            Err(RepositoryError::Duplicate(_)) => {
                match store
                    .find(name.as_str(), &parsed.version)
                    .await
                    .map_err(read)?
                {
                    Some(existing) => same_or_conflict(existing),
                    None => Err(RegistryError::Unavailable(
                        "the version vanished while being published".into(),
                    )),
                }
            }
            Err(other) => Err(read(other)),
        }
    }

    /// Every entry `query` matches from `query.after` on, read [`PAGE_ROWS`] rows at
    /// a time whatever `query.limit` says (for exports, which want the whole set).
    pub async fn all_published(
        &self,
        mut query: PublishedQuery,
    ) -> Result<Vec<PublishedServer>, RegistryError> {
        query.limit = PAGE_ROWS;
        let mut all = Vec::new();
        loop {
            let page = self.published_page(&query).await?;
            let full = page.len() as u64 == PAGE_ROWS;
            query.after = page.last().map(|e| (e.name.to_string(), e.version.clone()));
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    /// A page of published entries (the store returns at most `query.limit` rows).
    pub async fn published_page(
        &self,
        query: &PublishedQuery,
    ) -> Result<Vec<PublishedServer>, RegistryError> {
        match &self.published {
            Some(store) => store
                .list(query)
                .await
                .map_err(|e| RegistryError::from_repository(e, "published servers")),
            None => Ok(Vec::new()),
        }
    }

    /// Every version of a server, newest first (`PublishedNotFound` when none is
    /// left to show).
    pub async fn published_versions(
        &self,
        name: &str,
        include_deleted: bool,
    ) -> Result<Vec<PublishedServer>, RegistryError> {
        let versions: Vec<PublishedServer> = match &self.published {
            Some(store) => store
                .versions(name)
                .await
                .map_err(|e| RegistryError::from_repository(e, name))?,
            None => Vec::new(),
        };
        let shown: Vec<PublishedServer> = versions
            .into_iter()
            .filter(|v| include_deleted || v.status != PublishStatus::Deleted)
            .collect();
        if shown.is_empty() {
            return Err(RegistryError::PublishedNotFound(name.to_owned()));
        }
        Ok(shown)
    }

    /// One version of a server, or its latest (`latest`).
    pub async fn published_version(
        &self,
        name: &str,
        version: &str,
        include_deleted: bool,
    ) -> Result<PublishedServer, RegistryError> {
        let missing = || RegistryError::PublishedNotFound(format!("{name} {version}"));
        let store = self.published.as_ref().ok_or_else(missing)?;
        let found = if version == LATEST {
            store
                .versions(name)
                .await
                .map_err(|e| RegistryError::from_repository(e, name))?
                .into_iter()
                .find(|v| v.is_latest)
        } else {
            store
                .find(name, version)
                .await
                .map_err(|e| RegistryError::from_repository(e, name))?
        };
        found
            .filter(|v| include_deleted || v.status != PublishStatus::Deleted)
            .ok_or_else(missing)
    }

    /// Changes a version's status (a message only with `deprecated` or `deleted`);
    /// which version is the latest follows. Asking for the status it has already
    /// changes nothing.
    pub async fn set_published_status(
        &self,
        name: &str,
        version: &str,
        status: PublishStatus,
        message: Option<String>,
    ) -> Result<PublishedServer, RegistryError> {
        if status == PublishStatus::Active && message.is_some() {
            return Err(RegistryError::Invalid(ValidationErrors::single(
                "statusMessage",
                "only a deprecated or deleted version has a status message",
            )));
        }
        if message.as_ref().is_some_and(|m| m.chars().count() > 500) {
            return Err(RegistryError::Invalid(ValidationErrors::single(
                "statusMessage",
                "at most 500 characters",
            )));
        }
        let current = self.published_version(name, version, true).await?;
        if current.status == status && current.status_message == message {
            return Ok(current);
        }
        let missing = || RegistryError::PublishedNotFound(format!("{name} {version}"));
        let change = gateway_domain::StatusChange {
            status,
            message,
            at: Utc::now(),
        };
        let stored = self
            .published_store()?
            .set_status(current.name.as_str(), &current.version, &change)
            .await
            .map_err(|e| match e {
                RepositoryError::NotFound => missing(),
                other => RegistryError::from_repository(other, name),
            })?;
        self.announce(RegistryEvent::PublishedChanged);
        Ok(stored)
    }

    /// Records that `upstream` was registered from this version.
    pub async fn link_published(
        &self,
        name: &str,
        version: &str,
        upstream: ServerId,
    ) -> Result<(), RegistryError> {
        self.published_store()?
            .link(name, version, upstream, Utc::now())
            .await
            .map_err(|e| match e {
                RepositoryError::NotFound => {
                    RegistryError::PublishedNotFound(format!("{name} {version}"))
                }
                other => RegistryError::from_repository(other, name),
            })?;
        self.announce(RegistryEvent::PublishedChanged);
        Ok(())
    }

    /// The latest published version linked to an upstream, for its `server.json`.
    pub async fn published_for_upstream(
        &self,
        upstream: ServerId,
    ) -> Result<Option<PublishedServer>, RegistryError> {
        let all = self
            .all_published(PublishedQuery {
                search: None,
                updated_since: None,
                version: gateway_domain::VersionFilter::All,
                include_deleted: false,
                upstream: Some(upstream),
                after: None,
                limit: 0,
            })
            .await?;
        Ok(all
            .iter()
            .find(|e| e.is_latest)
            .or_else(|| all.iter().max_by_key(|e| e.published_at))
            .cloned())
    }
}

/// How to turn a published description into a runnable upstream.
#[derive(Debug, Clone, Default)]
pub struct UpstreamChoice {
    /// The upstream's name; by default the last part of the published name,
    /// lowercased, with other characters made `-`.
    pub name: Option<String>,
    /// Which of `remotes[]` (a `streamable-http` one) to use.
    pub remote: Option<usize>,
    /// Or which of `packages[]` to run as a stdio child (needs stdio allowed).
    pub package: Option<usize>,
    /// Values of the remote URL's `{variables}` (their `default` otherwise).
    pub variables: std::collections::BTreeMap<String, String>,
    /// Header values to send (secret: stored sealed).
    pub headers: std::collections::BTreeMap<String, String>,
    /// Environment variables of a package (secret: stored sealed).
    pub environment: std::collections::BTreeMap<String, String>,
    /// Owning tenant.
    pub tenant: Option<String>,
    /// Route to it at once (default true).
    pub enabled: Option<bool>,
}

/// The package runtimes a published package may be run with, and how a package of
/// each registry type is named to it. The identifier and version must be plain names
/// (no option such as `--call=…`, no `file:` or `git+` spec) so the document cannot make
/// the runtime do anything but fetch and run that package.
fn package_command(
    package: &gateway_domain::published::Package,
) -> Result<(String, Vec<String>), String> {
    let word = |text: &str, extra: &str| {
        text.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    };
    if let Some(version) = &package.version
        && !word(version, ".+_-")
    {
        return Err(format!(
            "version `{}` is not a plain version",
            version.escape_debug()
        ));
    }
    let versioned = |separator: &str| match &package.version {
        Some(version) => format!("{}{separator}{version}", package.identifier),
        None => package.identifier.clone(),
    };
    let identifier = package.identifier.as_str();
    match (
        package.registry_type.as_str(),
        package.runtime_hint.as_deref(),
    ) {
        ("npm", None | Some("npx")) => {
            let (scope, name) = match identifier.strip_prefix('@') {
                Some(scoped) => match scoped.split_once('/') {
                    Some((scope, name)) => (Some(scope), name),
                    None => (None, ""),
                },
                None => (None, identifier),
            };
            let lower =
                |text: &str| word(text, "._~-") && !text.chars().any(|c| c.is_ascii_uppercase());
            if !lower(name) || scope.is_some_and(|s| !lower(s)) {
                return Err(format!(
                    "`{}` is not an npm package name",
                    identifier.escape_debug()
                ));
            }
            Ok(("npx".into(), vec!["-y".into(), versioned("@")]))
        }
        ("pypi", None | Some("uvx")) => {
            if !word(identifier, "._-") || identifier.ends_with(['.', '_', '-']) {
                return Err(format!(
                    "`{}` is not a PyPI project name",
                    identifier.escape_debug()
                ));
            }
            Ok(("uvx".into(), vec![versioned("==")]))
        }
        (kind, runtime) => Err(format!(
            "a `{kind}` package (runtime `{}`) cannot be run: only npm with npx and pypi with uvx",
            runtime.unwrap_or("none")
        )),
    }
}

/// A default upstream name from a published name (`io.github.acme/Weather_API` →
/// `weather-api`).
fn default_upstream_name(published: &str) -> String {
    let tail = published.rsplit('/').next().unwrap_or(published);
    let mut name: String = tail
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches('-').chars().take(63).collect();
    if name.is_empty() {
        "imported".into()
    } else {
        name
    }
}

/// Replaces each `{name}` in `template` from `values`, then the variables' defaults;
/// a variable with neither is an error naming it.
fn expand(
    template: &str,
    values: &std::collections::BTreeMap<String, String>,
    declared: Option<&std::collections::BTreeMap<String, gateway_domain::published::Input>>,
    errors: &mut ValidationErrors,
) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        let value = values.get(name).cloned().or_else(|| {
            declared
                .and_then(|d| d.get(name))
                .and_then(|input| input.value.clone().or_else(|| input.default.clone()))
        });
        match value {
            Some(value) => out.push_str(&value),
            None => errors.push(
                format!("register.variables.{name}"),
                format!("the URL needs `{name}`, which has no default"),
            ),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

impl Registry {
    /// The registration of the upstream a published description runs as: a remote
    /// endpoint (its URL variables filled in, headers as given), or a package run by
    /// an allow-listed runtime (`npx` for npm, `uvx` for PyPI). Every problem names
    /// its field.
    pub fn upstream_from(
        document: &ServerJson,
        choice: &UpstreamChoice,
    ) -> Result<crate::input::RegisterServer, RegistryError> {
        let mut errors = ValidationErrors::new();
        let transport = match (choice.remote, choice.package) {
            (Some(_), Some(_)) => {
                errors.push("register", "choose a remote or a package, not both");
                None
            }
            (None, Some(index)) => match document.packages.as_deref().and_then(|p| p.get(index)) {
                None => {
                    errors.push("register.package", format!("there is no packages[{index}]"));
                    None
                }
                Some(package) if package.transport.kind != "stdio" => {
                    errors.push(
                        "register.package",
                        "only a package with the stdio transport can be run",
                    );
                    None
                }
                Some(package) => match package_command(package) {
                    Err(reason) => {
                        errors.push("register.package", reason);
                        None
                    }
                    Ok((command, args)) => Some(crate::input::TransportInput::Stdio {
                        command,
                        args,
                        env: choice
                            .environment
                            .iter()
                            .map(|(k, v)| (k.clone(), gateway_domain::Secret::new(v.clone())))
                            .collect(),
                        cwd: None,
                    }),
                },
            },
            (remote, None) => {
                let index = remote.unwrap_or(0);
                match document.remotes.as_deref().and_then(|r| r.get(index)) {
                    None => {
                        errors.push("register.remote", format!("there is no remotes[{index}]"));
                        None
                    }
                    Some(remote) if remote.kind != "streamable-http" => {
                        errors.push(
                            "register.remote",
                            format!("remotes[{index}] is `{}`; the gateway reaches upstreams over streamable-http", remote.kind),
                        );
                        None
                    }
                    Some(remote) => {
                        let declared = remote.variables();
                        let url = expand(
                            remote.url().unwrap_or_default(),
                            &choice.variables,
                            Some(&declared),
                            &mut errors,
                        );
                        let remote_headers = remote.headers();
                        for header in &remote_headers {
                            let name = header.name().unwrap_or_default().to_owned();
                            if header.is_required == Some(true)
                                && header.value.is_none()
                                && !choice.headers.contains_key(&name)
                            {
                                errors.push(
                                    format!("register.headers.{name}"),
                                    "required by the remote",
                                );
                            }
                        }
                        let fixed = remote_headers
                            .iter()
                            .filter_map(|h| Some((h.name()?.to_owned(), h.value.clone()?)));
                        let headers = fixed
                            .chain(choice.headers.clone())
                            .map(|(k, v)| (k, gateway_domain::Secret::new(v)))
                            .collect();
                        Some(crate::input::TransportInput::StreamableHttp {
                            url,
                            replicas: Vec::new(),
                            headers,
                            oauth: None,
                        })
                    }
                }
            }
        };
        let (Some(transport), true) = (transport, errors.is_empty()) else {
            return Err(RegistryError::Invalid(errors));
        };
        let title = document
            .title
            .clone()
            .or_else(|| Some(document.name.clone()));
        Ok(crate::input::RegisterServer {
            name: choice
                .name
                .clone()
                .unwrap_or_else(|| default_upstream_name(&document.name)),
            title,
            description: Some(document.description.clone()),
            transport,
            tags: vec!["imported".into()],
            tenant: choice.tenant.clone(),
            enabled: choice.enabled.unwrap_or(true),
            request_timeout_ms: None,
        })
    }
}

/// What mirroring one entry of another registry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mirrored {
    /// A new version was published here.
    Created,
    /// Its status (or message) was brought in line.
    StatusChanged,
    /// Already the same here.
    Unchanged,
    /// The same version is published here with other content: left as it is.
    Conflict,
}

impl Registry {
    /// Mirrors one entry of another registry: publishes its version if new, and
    /// takes over its status. Never touches an upstream's runtime settings.
    pub async fn mirror_published(
        &self,
        document: &Value,
        status: PublishStatus,
        message: Option<String>,
    ) -> Result<Mirrored, RegistryError> {
        // An active entry carries no message (the official API refuses one).
        let message = message.filter(|_| status != PublishStatus::Active);
        // A new version is published with the source's status at once (never briefly
        // active and latest when the source has deleted it).
        let imported = match self
            .publish_version(document, status, message.clone())
            .await
        {
            Ok(imported) => imported,
            Err(RegistryError::VersionExists { .. }) => return Ok(Mirrored::Conflict),
            Err(other) => return Err(other),
        };
        let entry = &imported.entry;
        if entry.status == status && entry.status_message == message {
            return Ok(if imported.created {
                Mirrored::Created
            } else {
                Mirrored::Unchanged
            });
        }
        self.set_published_status(entry.name.as_str(), &entry.version, status, message)
            .await?;
        Ok(if imported.created {
            Mirrored::Created
        } else {
            Mirrored::StatusChanged
        })
    }
}
