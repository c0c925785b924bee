//! Which nodes replicate which shard. Replicas of shard `s` are `R` consecutive nodes (by id
//! order) starting at position `s mod N`, so replicas, and the preferred leaders (the first
//! replica of each shard), are spread evenly across the nodes.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    nodes: Vec<u64>,
    replication: usize,
}

impl Placement {
    pub fn new(members: &BTreeMap<u64, String>, replication: usize) -> Result<Self, String> {
        let nodes: Vec<u64> = members.keys().copied().collect();
        if replication == 0 || replication > nodes.len() {
            return Err(format!("replication factor {replication} must be between 1 and the {} nodes", nodes.len()));
        }
        Ok(Self { nodes, replication })
    }

    pub fn replicas(&self, shard: u32) -> Vec<u64> {
        let start = shard as usize % self.nodes.len();
        (0..self.replication).map(|k| self.nodes[(start + k) % self.nodes.len()]).collect()
    }

    pub fn hosts(&self, node: u64, shard: u32) -> bool {
        self.replicas(shard).contains(&node)
    }

    /// The replica that campaigns first at bootstrap, spreading leaders across nodes.
    pub fn preferred_leader(&self, shard: u32) -> u64 {
        self.replicas(shard)[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: u64) -> BTreeMap<u64, String> {
        (1..=n).map(|id| (id, format!("127.0.0.1:{}", 7000 + id))).collect()
    }

    #[test]
    fn replicas_and_leaders_are_spread_evenly() {
        let p = Placement::new(&members(5), 3).unwrap();
        let mut replicas_per_node = BTreeMap::new();
        let mut leaders_per_node = BTreeMap::new();
        for shard in 0..20 {
            let r = p.replicas(shard);
            assert_eq!(r.len(), 3);
            assert_eq!(r.iter().collect::<std::collections::BTreeSet<_>>().len(), 3, "distinct replicas");
            for n in &r {
                *replicas_per_node.entry(*n).or_insert(0) += 1;
            }
            *leaders_per_node.entry(p.preferred_leader(shard)).or_insert(0) += 1;
        }
        assert!(replicas_per_node.values().all(|&c| c == 12), "{replicas_per_node:?}");
        assert!(leaders_per_node.values().all(|&c| c == 4), "{leaders_per_node:?}");
    }

    #[test]
    fn replication_is_bounded_by_the_nodes() {
        assert!(Placement::new(&members(3), 4).is_err());
        assert!(Placement::new(&members(3), 0).is_err());
        assert_eq!(Placement::new(&members(1), 1).unwrap().replicas(7), vec![1]);
    }
}
