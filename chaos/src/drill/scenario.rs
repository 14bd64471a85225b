//! The drill scenarios and what each injects.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A drill scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// kill -9 every node of the leader's site; recovery restarts them on their disks.
    SiteLoss,
    /// Site loss plus wiped disks; recovery replaces the site's nodes under new ids.
    SiteFire,
    /// SIGSTOP the leader beyond the election timeout, then SIGCONT it.
    LeaderPause,
    /// Set every follower's clock 60 s behind, then kill -9 the leader: a node with a
    /// slow clock takes over and must still stamp writes after its predecessor.
    ClockSkew,
    /// Cut every link between one follower site and the others (both directions) while
    /// writes go on, then heal: the site must catch up and agree.
    Partition,
    /// Drop every message from the other sites into one follower site, while it can still
    /// send to them (its requests and their answers arrive): it hears no leader and
    /// campaigns in ever higher terms; the majority must keep committing; then heal.
    PartitionOneWay,
    /// Cut the leader's site off from the others: the majority elects a new leader; the old
    /// one must not acknowledge writes or serve linearizable reads; then heal.
    LeaderIsolation,
    /// Burn a majority of sites (kill -9, disks wiped): no quorum is left. The survivors
    /// are fenced and the store is rebuilt from the backups (each site's vault) by
    /// point-in-time restore into a new cluster. RPO: the writes after the restore point.
    QuorumLoss,
}

impl Scenario {
    /// Every scenario, for help texts.
    pub const ALL: [Scenario; 8] = [
        Scenario::SiteLoss,
        Scenario::SiteFire,
        Scenario::LeaderPause,
        Scenario::ClockSkew,
        Scenario::Partition,
        Scenario::PartitionOneWay,
        Scenario::LeaderIsolation,
        Scenario::QuorumLoss,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::SiteLoss => "site-loss",
            Scenario::SiteFire => "site-fire",
            Scenario::LeaderPause => "leader-pause",
            Scenario::ClockSkew => "clock-skew",
            Scenario::Partition => "partition",
            Scenario::PartitionOneWay => "partition-one-way",
            Scenario::LeaderIsolation => "leader-isolation",
            Scenario::QuorumLoss => "quorum-loss",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {s:?}; known: {}", known.join(", "))
            })
    }
}
