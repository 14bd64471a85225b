//! Site-aware fault tolerance: from the voters and their sites, how many nodes and how
//! many whole sites can be lost while a quorum survives, and warnings for layouts that
//! cannot survive the loss of any one site.

use std::collections::BTreeMap;

use serde::Serialize;

/// What a voter layout can survive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultTolerance {
    pub voters: usize,
    /// Votes needed to commit.
    pub quorum: usize,
    /// Voters that can be lost, whichever they are.
    pub nodes: usize,
    /// Whole sites that can be lost, whichever they are.
    pub sites: usize,
    /// Voters per site.
    pub voters_per_site: BTreeMap<String, usize>,
    /// Layout problems an operator must know about.
    pub warnings: Vec<String>,
}

/// Computes the fault tolerance of voters located at `voter_sites` (one entry per voter).
pub fn fault_tolerance<'a>(voter_sites: impl IntoIterator<Item = &'a str>) -> FaultTolerance {
    let mut per_site: BTreeMap<String, usize> = BTreeMap::new();
    for site in voter_sites {
        *per_site.entry(site.to_string()).or_default() += 1;
    }
    let voters: usize = per_site.values().sum();
    let quorum = voters / 2 + 1;
    let nodes = voters.saturating_sub(quorum);
    let mut counts: Vec<usize> = per_site.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let mut lost = 0;
    let mut sites = 0;
    for c in &counts {
        if voters - lost - c >= quorum {
            lost += c;
            sites += 1;
        } else {
            break;
        }
    }
    let mut warnings = Vec::new();
    if voters == 0 {
        warnings.push("no voters: the cluster is not initialized".to_string());
    } else if per_site.len() == 1 {
        warnings.push("every voter is in one site: losing that site loses the cluster".to_string());
    } else if sites == 0 {
        let (site, n) = per_site
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(s, n)| (s.clone(), *n))
            .unwrap_or_default();
        warnings.push(format!(
            "cannot survive the loss of site {site}: it holds {n} of {voters} voters and a quorum needs {quorum}"
        ));
    }
    FaultTolerance {
        voters,
        quorum,
        nodes,
        sites,
        voters_per_site: per_site,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_sites_one_each_survive_one_site() {
        let ft = fault_tolerance(["a", "b", "c"]);
        assert_eq!((ft.quorum, ft.nodes, ft.sites), (2, 1, 1));
        assert!(ft.warnings.is_empty());
    }

    #[test]
    fn two_sites_two_plus_one_cannot_survive_a_site() {
        let ft = fault_tolerance(["a", "a", "b"]);
        assert_eq!((ft.nodes, ft.sites), (1, 0));
        assert_eq!(ft.warnings.len(), 1);
        assert!(ft.warnings[0].contains("site a"), "{:?}", ft.warnings);
    }

    #[test]
    fn five_sites_survive_two_and_one_site_survives_none() {
        assert_eq!(fault_tolerance(["a", "b", "c", "d", "e"]).sites, 2);
        let ft = fault_tolerance(["a", "a", "a"]);
        assert_eq!((ft.nodes, ft.sites), (1, 0));
        assert!(ft.warnings[0].contains("one site"));
    }

    #[test]
    fn three_sites_two_each_survive_one_site_and_two_nodes() {
        let ft = fault_tolerance(["a", "a", "b", "b", "c", "c"]);
        assert_eq!((ft.quorum, ft.nodes, ft.sites), (4, 2, 1));
    }
}
