//! Network partitions injected at the node's peer RPC layer: the chaos seam for cutting
//! links between sites without iptables. An RPC to a blocked target fails as unreachable
//! before it leaves; an RPC from a blocked sender (the node id in its vote) is refused on
//! arrival. Blocking both directions of every link between two groups is a full
//! partition. Set only by an admin request, logged loudly; empty by default.

use std::collections::BTreeSet;
use std::sync::RwLock;

use reprise_storage::NodeId;

/// The links this node currently refuses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// Peers this node does not send to.
    pub to: BTreeSet<NodeId>,
    /// Peers whose RPCs this node refuses.
    pub from: BTreeSet<NodeId>,
}

/// The shared partition table of one node.
#[derive(Debug, Default)]
pub struct Partition {
    links: RwLock<Links>,
}

impl Partition {
    fn read(&self) -> Links {
        // Only plain sets are held under the lock, so a poisoned lock still holds whole data.
        self.links.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the blocked links (empty sets heal the partition).
    pub fn set(&self, links: Links) {
        *self.links.write().unwrap_or_else(|p| p.into_inner()) = links;
    }

    /// The blocked links now.
    pub fn links(&self) -> Links {
        self.read()
    }

    /// Whether RPCs to `target` are cut.
    pub fn blocks_to(&self, target: NodeId) -> bool {
        self.links
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .to
            .contains(&target)
    }

    /// Whether RPCs from `sender` are cut.
    pub fn blocks_from(&self, sender: NodeId) -> bool {
        self.links
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .from
            .contains(&sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_only_the_listed_directions_until_healed() {
        let p = Partition::default();
        assert!(!p.blocks_to(2) && !p.blocks_from(2));
        p.set(Links {
            to: BTreeSet::from([2]),
            from: BTreeSet::from([3]),
        });
        assert!(p.blocks_to(2) && !p.blocks_from(2));
        assert!(p.blocks_from(3) && !p.blocks_to(3));
        p.set(Links::default());
        assert!(!p.blocks_to(2) && !p.blocks_from(3));
    }
}
