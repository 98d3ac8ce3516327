//! Which endpoint of a replicated upstream serves the next call: round-robin or
//! least-in-flight over the endpoints that are available, with the others kept as
//! failover candidates in preference order.

use std::fmt;
use std::str::FromStr;

/// How calls are spread over a server's endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Each call goes to the next available endpoint in turn.
    #[default]
    RoundRobin,
    /// Each call goes to the available endpoint with the fewest calls in flight.
    LeastInFlight,
}

impl Balance {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round-robin",
            Self::LeastInFlight => "least-in-flight",
        }
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Balance {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "round-robin" => Ok(Self::RoundRobin),
            "least-in-flight" => Ok(Self::LeastInFlight),
            other => Err(format!(
                "`{}` is not one of round-robin, least-in-flight",
                other.escape_debug()
            )),
        }
    }
}

/// What the balancer knows of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Healthy enough and its breaker lets calls through.
    pub available: bool,
    /// Calls in flight on it.
    pub in_flight: usize,
}

/// The endpoints to try, best first: available ones ordered by the policy (`turn`
/// is a counter the caller increments per call), then the unavailable ones as a
/// last resort, so a call fails over instead of failing while any endpoint remains.
pub fn order(policy: Balance, candidates: &[Candidate], turn: usize) -> Vec<usize> {
    let count = candidates.len();
    if count == 0 {
        return Vec::new();
    }
    // Partition first, then rotate the available ones: a dead endpoint's turns are
    // not all inherited by its neighbour.
    let (available, unavailable): (Vec<usize>, Vec<usize>) =
        (0..count).partition(|&i| candidates[i].available);
    let mut available: Vec<usize> = match available.len() {
        0 => Vec::new(),
        n => (0..n).map(|i| available[(i + turn) % n]).collect(),
    };
    if policy == Balance::LeastInFlight {
        // Stable: ties keep the rotation, so equal endpoints still share the load.
        available.sort_by_key(|&i| candidates[i].in_flight);
    }
    available.extend(unavailable);
    available
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(in_flight: usize) -> Candidate {
        Candidate {
            available: true,
            in_flight,
        }
    }

    const DOWN: Candidate = Candidate {
        available: false,
        in_flight: 0,
    };

    #[test]
    fn round_robin_rotates_over_available_endpoints() {
        let endpoints = [up(0), up(0), up(0)];
        let firsts: Vec<usize> = (0..6)
            .map(|turn| order(Balance::RoundRobin, &endpoints, turn)[0])
            .collect();
        assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn unavailable_endpoints_come_last() {
        let endpoints = [DOWN, up(0), up(0)];
        for turn in 0..4 {
            let order = order(Balance::RoundRobin, &endpoints, turn);
            assert_ne!(order[0], 0);
            assert_eq!(order[2], 0);
        }
    }

    #[test]
    fn a_dead_endpoint_does_not_double_its_neighbours_share() {
        let endpoints = [up(0), DOWN, up(0)];
        let firsts: Vec<usize> = (0..4)
            .map(|turn| order(Balance::RoundRobin, &endpoints, turn)[0])
            .collect();
        assert_eq!(firsts, [0, 2, 0, 2]);
    }

    #[test]
    fn least_in_flight_prefers_the_idle_endpoint() {
        let endpoints = [up(5), up(1), up(3)];
        assert_eq!(order(Balance::LeastInFlight, &endpoints, 0), [1, 2, 0]);
        let tied = [up(2), up(2)];
        assert_ne!(
            order(Balance::LeastInFlight, &tied, 0)[0],
            order(Balance::LeastInFlight, &tied, 1)[0]
        );
    }

    #[test]
    fn policies_parse_and_print() {
        for policy in [Balance::RoundRobin, Balance::LeastInFlight] {
            assert_eq!(policy.as_str().parse::<Balance>(), Ok(policy));
        }
        assert!("random".parse::<Balance>().is_err());
        assert!(order(Balance::RoundRobin, &[], 3).is_empty());
    }
}
