//! Deliberately broken behaviours, switched on only through the `REPRISE_PLANTED_BUG`
//! environment variable, so chaos tests can prove that their checkers catch real
//! anomalies. Never set it in production: the node logs an error at start when it is set.

/// Environment variable naming the planted bug.
pub const ENV: &str = "REPRISE_PLANTED_BUG";

/// The bugs a test build can plant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// Linearizable reads are served from local state without read-index and without
    /// redirecting to the leader: a lagging follower answers with stale data.
    StaleReads,
    /// The leader's read lease lasts 10 s, far past the time its followers refuse to elect
    /// another leader: a deposed leader goes on serving reads from its old state.
    LongLease,
}

/// Reads the planted bug from the environment; an unknown name is an error.
pub fn from_env() -> Result<Option<PlantedBug>, String> {
    match std::env::var(ENV) {
        Err(_) => Ok(None),
        Ok(v) if v == "stale-reads" => {
            tracing::error!(
                "{ENV}=stale-reads: this node serves STALE reads on purpose (test build behaviour)"
            );
            Ok(Some(PlantedBug::StaleReads))
        }
        Ok(v) if v == "long-lease" => {
            tracing::error!(
                "{ENV}=long-lease: this node's read lease outlives elections on purpose (test build behaviour)"
            );
            Ok(Some(PlantedBug::LongLease))
        }
        Ok(v) => Err(format!(
            "{ENV}={v:?} is not a known planted bug (known: stale-reads, long-lease)"
        )),
    }
}
