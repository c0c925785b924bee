//! The workloads of `coinctl bench` as pure generators: a seeded RNG in, a stream of
//! operations and request ids out. Nothing here talks to a node, so a seed reproduces a run's
//! sequence exactly, the mixes can be tested, and a harness that drives replicas in-process
//! (`node/examples/replica_cost.rs`) offers them the same accounts, creators and ids as the
//! bench offers a cluster.
//!
//! Accounts are `<prefix>u<i>` (senders, who hold coins) and `<prefix>c<j>` (creators, who
//! receive diamonds): disjoint, so a gift is never a self-gift.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Most creators a zipf table is built for (the table is one f64 per creator).
pub const CREATORS_MAX: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Uniformly chosen senders gift zipf-distributed creators (a few creators are hot).
    GiftStorm,
    /// Every gift goes to one creator.
    HotOne,
    /// Uniform senders, uniform creators.
    Uniform,
    /// 70% gifts (as gift-storm), 20% purchases, 5% cash-outs (then post or void), 5% reads.
    Mixed,
}

/// One operation of a workload, with account indexes (names come from [`Names`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gift { sender: usize, creator: usize },
    Purchase { account: usize },
    /// Cash out a creator's diamonds; afterwards post (`post`) or void the payout.
    CashOut { creator: usize, post: bool },
    /// Balance of a sender.
    Read { account: usize },
}

/// Sizes and skew of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub workload: Workload,
    pub accounts: usize,
    pub creators: usize,
    /// Zipf exponent s of creator popularity (gift-storm and mixed).
    pub zipf_s: f64,
}

/// Draws ranks 0..n with P(k) proportional to 1/(k+1)^s, from a cumulative table (binary
/// search: O(log n) per draw, n f64s of memory).
#[derive(Debug, Clone)]
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    /// # Panics
    /// If `n` is 0 or above [`CREATORS_MAX`], or `s` is not finite and >= 0.
    pub fn new(n: usize, s: f64) -> Zipf {
        assert!((1..=CREATORS_MAX).contains(&n), "zipf over 1..={CREATORS_MAX} items");
        assert!(s.is_finite() && s >= 0.0, "zipf exponent must be finite and >= 0");
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|k| {
                total += 1.0 / (k as f64).powf(s);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let total = *self.cumulative.last().expect("n >= 1");
        let x = rng.gen::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.cumulative.len() - 1)
    }
}

/// One client task's stream of operations.
#[derive(Debug, Clone)]
pub struct Generator {
    shape: Shape,
    rng: StdRng,
    zipf: Zipf,
}

impl Generator {
    /// Task `task` of a run seeded with `seed`: every task has its own stream.
    pub fn new(shape: Shape, seed: u64, task: u64) -> Generator {
        let seed = seed ^ task.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Generator {
            shape,
            rng: StdRng::seed_from_u64(seed),
            zipf: Zipf::new(shape.creators, shape.zipf_s),
        }
    }

    pub fn next_op(&mut self) -> Op {
        let sender = self.rng.gen_range(0..self.shape.accounts);
        match self.shape.workload {
            Workload::GiftStorm => Op::Gift {
                sender,
                creator: self.zipf.sample(&mut self.rng),
            },
            Workload::HotOne => Op::Gift { sender, creator: 0 },
            Workload::Uniform => Op::Gift {
                sender,
                creator: self.rng.gen_range(0..self.shape.creators),
            },
            Workload::Mixed => match self.rng.gen_range(0..100) {
                0..=69 => Op::Gift {
                    sender,
                    creator: self.zipf.sample(&mut self.rng),
                },
                70..=89 => Op::Purchase { account: sender },
                90..=94 => Op::CashOut {
                    creator: self.zipf.sample(&mut self.rng),
                    post: self.rng.gen_bool(0.5),
                },
                _ => Op::Read { account: sender },
            },
        }
    }
}

/// Account names of one run: a run prefix keeps runs against the same cluster apart, so the
/// creators' diamonds can be compared with this run's gifts alone.
#[derive(Debug, Clone)]
pub struct Names {
    pub prefix: String,
}

impl Names {
    pub fn user(&self, i: usize) -> String {
        format!("{}u{i}", self.prefix)
    }
    pub fn creator(&self, j: usize) -> String {
        format!("{}c{j}", self.prefix)
    }
}

/// One client task's request ids: `<prefix><seq>`, the sequence zero-padded to 12 digits so
/// that a task's ids grow in byte order too. A node's request index then takes each task's ids
/// at one end of its range, as it does the time-ordered ids of the client library
/// (`request_id.rs`); a run of 16 tasks writes its new ids at 16 places of each shard's index.
#[derive(Debug, Clone)]
pub struct IdSequence {
    prefix: String,
    seq: u64,
}

impl IdSequence {
    pub fn new(prefix: String) -> IdSequence {
        IdSequence { prefix, seq: 0 }
    }

    /// The prefix of task `task` in a run whose account names start with `run_prefix`.
    pub fn for_task(run_prefix: &str, task: u64) -> IdSequence {
        IdSequence::new(format!("{run_prefix}{task}-"))
    }

    pub fn next_id(&mut self) -> String {
        self.seq += 1;
        format!("{}{:012}", self.prefix, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(workload: Workload) -> Shape {
        Shape {
            workload,
            accounts: 1_000,
            creators: 100,
            zipf_s: 1.1,
        }
    }

    fn draw(workload: Workload, n: usize) -> Vec<Op> {
        let mut g = Generator::new(shape(workload), 7, 0);
        (0..n).map(|_| g.next_op()).collect()
    }

    #[test]
    fn a_seed_reproduces_the_stream_and_tasks_differ() {
        assert_eq!(draw(Workload::Mixed, 500), draw(Workload::Mixed, 500));
        let mut other = Generator::new(shape(Workload::Mixed), 7, 1);
        let other: Vec<Op> = (0..500).map(|_| other.next_op()).collect();
        assert_ne!(draw(Workload::Mixed, 500), other);
    }

    #[test]
    fn zipf_favours_low_ranks_like_the_formula() {
        let z = Zipf::new(100, 1.1);
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = [0usize; 100];
        let n = 200_000;
        for _ in 0..n {
            counts[z.sample(&mut rng)] += 1;
        }
        let h: f64 = (1..=100).map(|k| 1.0 / (k as f64).powf(1.1)).sum();
        for k in [0usize, 1, 9, 99] {
            let want = n as f64 / ((k + 1) as f64).powf(1.1) / h;
            let got = counts[k] as f64;
            assert!((got - want).abs() < 0.1 * want + 30.0, "rank {k}: {got} vs {want}");
        }
        let flat = Zipf::new(4, 0.0);
        assert!((0..1_000).all(|_| flat.sample(&mut rng) < 4));
    }

    #[test]
    fn workloads_have_their_shape() {
        assert!(draw(Workload::HotOne, 1_000)
            .iter()
            .all(|op| matches!(op, Op::Gift { creator: 0, .. })));
        for w in [Workload::GiftStorm, Workload::Uniform] {
            for op in draw(w, 1_000) {
                let Op::Gift { sender, creator } = op else { panic!("{op:?}") };
                assert!(sender < 1_000 && creator < 100);
            }
        }
        let ops = draw(Workload::Mixed, 20_000);
        let share = |f: fn(&Op) -> bool| ops.iter().filter(|o| f(o)).count() as f64 / 20_000.0;
        let near = |got: f64, want: f64| (got - want).abs() < 0.02;
        assert!(near(share(|o| matches!(o, Op::Gift { .. })), 0.70));
        assert!(near(share(|o| matches!(o, Op::Purchase { .. })), 0.20));
        assert!(near(share(|o| matches!(o, Op::CashOut { .. })), 0.05));
        assert!(near(share(|o| matches!(o, Op::Read { .. })), 0.05));
    }

    #[test]
    fn a_task_ids_grow_in_byte_order() {
        let mut ids = IdSequence::for_task("b1-", 3);
        let drawn: Vec<String> = (0..1_001).map(|_| ids.next_id()).collect();
        assert_eq!(drawn[0], "b1-3-000000000001");
        assert!(drawn.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn names_are_disjoint() {
        let n = Names { prefix: "b1-".into() };
        assert_eq!((n.user(3), n.creator(3)), ("b1-u3".into(), "b1-c3".into()));
    }
}
