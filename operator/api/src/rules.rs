//! CEL rules that both CRDs enforce on their shared workload and chaos plan,
//! written once so the two cannot drift apart.

use kube::core::Rule;

/// On a spec with `workload` and `chaos`: every fault ends inside the run.
/// `workload` always has a value when CEL runs: the API server applies its
/// default first, and the default is complete.
pub fn faults_end_inside_the_run() -> Rule {
    Rule::new("!has(self.chaos) || self.chaos.all(f, duration(f.at) + duration(f.duration) <= duration(self.workload.duration))")
        .message("every fault must end inside the run: at + duration must be at most spec.workload.duration")
        .field_path(".chaos")
}

/// On a chaos plan: no two faults share a name (names label the chaos
/// objects and the report's fault rows).
pub fn unique_fault_names() -> Rule {
    Rule::new("self.all(f, self.exists_one(g, g.name == f.name))")
        .message("fault names (spec.chaos[].name) must be unique")
}
