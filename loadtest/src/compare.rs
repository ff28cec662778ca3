//! Compare mode: the same workload against two targets in alternating rounds (A, B, A, B,
//! ...) within one invocation, so drift in the machine's state affects both alike.

use std::sync::Arc;

use crate::report::Report;
use crate::run::{RunSpec, run};
use crate::target::Target;
use crate::workload::Workload;

/// Merged results of both targets.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub a: Report,
    pub b: Report,
}

impl Comparison {
    /// Throughput of B relative to A (1.0 = equal).
    pub fn ratio(&self) -> f64 {
        self.b.throughput() / self.a.throughput().max(1e-9)
    }
}

/// Runs `rounds` rounds of A then B with `spec` (its target is replaced by each of the two).
pub async fn compare(
    spec: &RunSpec,
    a: &Target,
    b: &Target,
    rounds: usize,
    workload: &Arc<Workload>,
) -> Comparison {
    let mut merged: [Option<Report>; 2] = [None, None];
    for _ in 0..rounds.max(1) {
        for (slot, target) in [a, b].into_iter().enumerate() {
            let spec = RunSpec {
                target: target.clone(),
                ..spec.clone()
            };
            let report = run(&spec, Arc::clone(workload)).await;
            match &mut merged[slot] {
                Some(m) => m.merge(&report),
                None => merged[slot] = Some(report),
            }
        }
    }
    let [a, b] = merged;
    Comparison {
        a: a.expect("at least one round ran"),
        b: b.expect("at least one round ran"),
    }
}
