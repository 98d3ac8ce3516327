//! Rate limits: a [`RateLimitRule`] gives every distinct value of one dimension of a
//! call (its tenant, principal, role, upstream server or tool) a GCRA budget of `rate`
//! requests per `period_secs` with bursts of `burst`. [`RateLimits`] picks, for each
//! dimension value of a call, the most specific matching rule (`acme` beats `ac*`
//! beats `*`), and every dimension's budget must allow the call: a tenant limit and a
//! per-tool limit both hold. The [`RateLimiter`] port takes the decision, in process or
//! shared between replicas.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::glob_match;
use crate::error::ValidationErrors;

/// The dimension of a call a rule's budgets are kept per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    /// Per tenant (the token's tenant claim).
    Tenant,
    /// Per principal (the token's subject).
    Principal,
    /// Per role: every holder of the role shares the budget.
    Role,
    /// Per upstream server: every tool of it shares the budget.
    Server,
    /// Per item (`<server>__<name>` of a tool, prompt or resource).
    Tool,
}

impl LimitScope {
    /// Every scope, in the order budgets are checked.
    pub const ALL: [LimitScope; 5] = [
        Self::Tenant,
        Self::Principal,
        Self::Role,
        Self::Server,
        Self::Tool,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Principal => "principal",
            Self::Role => "role",
            Self::Server => "server",
            Self::Tool => "tool",
        }
    }
}

impl fmt::Display for LimitScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LimitScope {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        crate::access::parse_wire_name(value, &Self::ALL, Self::as_str)
    }
}

/// Longest `matches` pattern.
const MAX_PATTERN: usize = 256;
/// Longest period: a day.
const MAX_PERIOD_SECS: u32 = 86_400;
/// Largest rate or burst.
const MAX_COUNT: u32 = 1_000_000;

/// How many requests a budget allows: `rate` per `period_secs`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Requests per period.
    pub rate: u32,
    /// The period, in seconds.
    pub period_secs: u32,
    /// Requests allowed back to back after a quiet spell.
    pub burst: u32,
}

impl Quota {
    /// Checks the numbers, naming each bad one.
    pub fn new(rate: u32, period_secs: u32, burst: u32) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if rate == 0 || rate > MAX_COUNT {
            errors.push("rate", format!("must be 1 to {MAX_COUNT}"));
        }
        if period_secs == 0 || period_secs > MAX_PERIOD_SECS {
            errors.push(
                "period_secs",
                format!("must be 1 to {MAX_PERIOD_SECS} seconds"),
            );
        }
        if burst == 0 || burst > MAX_COUNT {
            errors.push("burst", format!("must be 1 to {MAX_COUNT}"));
        }
        errors.into_result(|| Self {
            rate,
            period_secs,
            burst,
        })
    }

    /// The time one request "costs": the period divided by the rate (at least 1 µs).
    pub fn emission_interval(&self) -> Duration {
        (Duration::from_secs(u64::from(self.period_secs)) / self.rate.max(1))
            .max(Duration::from_micros(1))
    }

    /// The same quota for one of `replicas` gateways that share the load (at least one
    /// request per period and a burst of one), for a limiter that cannot share state.
    pub fn share_of(&self, replicas: u32) -> Self {
        let replicas = replicas.max(1);
        Self {
            rate: (self.rate / replicas).max(1),
            period_secs: self.period_secs,
            burst: (self.burst / replicas).max(1),
        }
    }
}

/// A limit: every value of `scope` matching `matches` gets its own budget of `quota`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitRule {
    /// Its id.
    pub id: Uuid,
    /// The dimension budgets are kept per.
    pub scope: LimitScope,
    /// Glob over the dimension's value (`*` every value, `acme`, `github__*`).
    pub matches: String,
    /// The budget of each value.
    pub quota: Quota,
    /// Why it exists.
    pub description: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Defined in the configuration file (read-only through the API).
    pub configured: bool,
}

impl RateLimitRule {
    /// Checks a new rule's fields, naming every bad one.
    pub fn new(
        scope: &str,
        matches: &str,
        rate: u32,
        period_secs: u32,
        burst: Option<u32>,
        description: Option<String>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let scope = errors.check("scope", scope.parse::<LimitScope>());
        if matches.is_empty()
            || matches.len() > MAX_PATTERN
            || matches.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            errors.push(
                "matches",
                format!(
                    "must be 1 to {MAX_PATTERN} characters without spaces or control characters"
                ),
            );
        }
        let quota = match Quota::new(rate, period_secs, burst.unwrap_or(rate)) {
            Ok(quota) => Some(quota),
            Err(nested) => {
                for error in nested.errors() {
                    errors.push(error.field.clone(), error.message.clone());
                }
                None
            }
        };
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 1000)
        {
            errors.push("description", "at most 1000 characters");
        }
        match (scope, quota) {
            (Some(scope), Some(quota)) if errors.is_empty() => Ok(Self {
                id: Uuid::new_v4(),
                scope,
                matches: matches.to_owned(),
                quota,
                description,
                created_at: Utc::now(),
                configured: false,
            }),
            _ => Err(errors),
        }
    }

    /// A rule from the configuration file: checked like any other, with an id derived
    /// from its content (the same on every replica and after every restart).
    pub fn configured(
        scope: &str,
        matches: &str,
        rate: u32,
        period_secs: u32,
        burst: Option<u32>,
        description: Option<String>,
    ) -> Result<Self, ValidationErrors> {
        let mut rule = Self::new(scope, matches, rate, period_secs, burst, description)?;
        let numbers =
            [rule.quota.rate, rule.quota.period_secs, rule.quota.burst].map(|n| n.to_string());
        rule.id = crate::access::content_id(
            [rule.scope.as_str(), rule.matches.as_str()]
                .into_iter()
                .chain(numbers.iter().map(String::as_str)),
        );
        rule.created_at = DateTime::<Utc>::UNIX_EPOCH;
        rule.configured = true;
        Ok(rule)
    }

    /// How closely `matches` names a value: exact beats any glob, a longer glob
    /// beats a shorter one, `*` comes last.
    fn specificity(&self) -> (bool, usize) {
        let exact = !self.matches.contains(['*', '?']);
        let literal = self.matches.chars().filter(|c| *c != '*').count();
        (exact, literal)
    }
}

/// One budget a call draws from: its key (scope and value) and quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// `<scope>:<value>`, e.g. `tenant:acme` or `tool:github__search`.
    pub key: String,
    /// The dimension, for messages and metrics.
    pub scope: LimitScope,
    /// Its quota.
    pub quota: Quota,
}

/// What a call is, as far as limits go.
#[derive(Debug, Clone, Copy)]
pub struct LimitSubject<'a> {
    /// The caller's tenant; `Some("")` for a principal without one (so `tenant *`
    /// rules still hold for it), `None` without authentication.
    pub tenant: Option<&'a str>,
    /// The caller's subject.
    pub principal: Option<&'a str>,
    /// The caller's roles.
    pub roles: &'a [String],
    /// The upstream server.
    pub server: &'a str,
    /// The item, `<server>__<name>`.
    pub item: &'a str,
}

/// The rules in force.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    rules: Vec<RateLimitRule>,
}

impl RateLimits {
    /// The rules (any order).
    pub fn new(rules: Vec<RateLimitRule>) -> Self {
        Self { rules }
    }

    /// Whether no rule is in force (calls skip the limiter entirely).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The budgets a call draws from: for each dimension value of the call, the
    /// budget of the most specific rule matching it.
    pub fn budgets(&self, subject: &LimitSubject<'_>) -> Vec<Budget> {
        let mut budgets = Vec::new();
        if self.rules.is_empty() {
            return budgets;
        }
        // Principal and role budgets are kept per tenant (one tenant's agents cannot
        // spend another's role budget, and equal subjects of two tenants stay apart);
        // the tenant goes into the key length-prefixed, so no value can forge another.
        let tenant = subject.tenant.unwrap_or("");
        let mut consider = |scope: LimitScope, value: &str, per_tenant: bool| {
            let best = self
                .rules
                .iter()
                .filter(|rule| rule.scope == scope && glob_match(&rule.matches, value))
                .max_by_key(|rule| rule.specificity());
            if let Some(rule) = best {
                let mut key =
                    String::with_capacity(scope.as_str().len() + 8 + tenant.len() + value.len());
                key.push_str(scope.as_str());
                key.push(':');
                if per_tenant {
                    key.push_str(&tenant.len().to_string());
                    key.push(':');
                    key.push_str(tenant);
                    key.push(':');
                }
                key.push_str(value);
                budgets.push(Budget {
                    key,
                    scope,
                    quota: rule.quota,
                });
            }
        };
        if let Some(tenant) = subject.tenant {
            consider(LimitScope::Tenant, tenant, false);
        }
        if let Some(principal) = subject.principal {
            consider(LimitScope::Principal, principal, true);
        }
        for role in subject.roles {
            consider(LimitScope::Role, role, true);
        }
        consider(LimitScope::Server, subject.server, false);
        consider(LimitScope::Tool, subject.item, false);
        budgets
    }
}

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateDecision {
    /// Every budget allowed it (and was charged).
    Allowed {
        /// Requests left right now in the tightest budget (`None` without budgets).
        remaining: Option<u32>,
    },
    /// A budget is spent; nothing was charged.
    Limited {
        /// The budget that refused.
        scope: LimitScope,
        /// Its quota.
        quota: Quota,
        /// When a retry can succeed.
        retry_after: Duration,
    },
}

/// Takes rate-limit decisions. A decision charges every budget or none.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Charges one request to each of `budgets`, or refuses it.
    async fn acquire(&self, budgets: &[Budget]) -> RateDecision;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(scope: &str, matches: &str, rate: u32) -> RateLimitRule {
        RateLimitRule::new(scope, matches, rate, 60, None, None).expect("valid")
    }

    #[test]
    fn the_most_specific_rule_per_value_and_every_scope_apply() {
        let limits = RateLimits::new(vec![
            rule("tenant", "*", 100),
            rule("tenant", "ac*", 500),
            rule("tenant", "acme", 1000),
            rule("tool", "github__*", 10),
            rule("role", "reader", 50),
        ]);
        let roles = ["reader".to_owned(), "writer".to_owned()];
        let budgets = limits.budgets(&LimitSubject {
            tenant: Some("acme"),
            principal: Some("u1"),
            roles: &roles,
            server: "github",
            item: "github__search",
        });
        let keys: Vec<(&str, u32)> = budgets
            .iter()
            .map(|b| (b.key.as_str(), b.quota.rate))
            .collect();
        assert_eq!(
            keys,
            [
                ("tenant:acme", 1000),
                ("role:4:acme:reader", 50),
                ("tool:github__search", 10)
            ]
        );
        let other = limits.budgets(&LimitSubject {
            tenant: Some("acorn"),
            principal: None,
            roles: &[],
            server: "docs",
            item: "docs__read",
        });
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].quota.rate, 500);
    }

    #[test]
    fn bad_rules_name_every_field() {
        let errors = RateLimitRule::new("planet", "a b", 0, 0, Some(0), Some("x".repeat(1001)))
            .expect_err("invalid");
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "scope",
                "matches",
                "rate",
                "period_secs",
                "burst",
                "description"
            ]
        );
    }

    #[test]
    fn quotas_share_and_space_requests() {
        let quota = Quota::new(10, 1, 20).expect("valid");
        assert_eq!(quota.emission_interval(), Duration::from_millis(100));
        assert_eq!(
            quota.share_of(3),
            Quota {
                rate: 3,
                period_secs: 1,
                burst: 6
            }
        );
        assert_eq!(quota.share_of(100).rate, 1);
    }
}
