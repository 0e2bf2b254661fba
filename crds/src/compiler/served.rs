//! What of a policy is served besides its newest generation: the per-policy
//! size budget (so one tenant cannot fill the Secret that carries every
//! tenant's configuration), and the last good generation with the newest
//! generation's kill switches turned on over it.

use crate::diagnostic::{Diagnostic, ObjectRef};
use crate::resources::AIPolicy;
use palisade_policy::Policy;

/// The last good generation `previous` of `p`, with the kill switches of
/// `p`'s newest generation turned on over it (a kill switch always wins,
/// even set in an edit that does not compile), if it is within the budget.
pub(super) fn last_good(
    mut previous: Policy,
    p: &AIPolicy,
    object: &ObjectRef,
    budget: Option<usize>,
) -> Result<Policy, Vec<Diagnostic>> {
    let suspended = p.spec.agents.iter().filter(|a| a.suspended);
    previous.switch_on(p.spec.suspend, suspended.map(|a| a.name.as_str()));
    let what = format!("last good generation {}", previous.generation);
    within_budget(previous, object, budget, &what)
}

/// `policy`, or a diagnostic saying how far over `budget` it is.
pub(super) fn within_budget(
    policy: Policy,
    object: &ObjectRef,
    budget: Option<usize>,
    what: &str,
) -> Result<Policy, Vec<Diagnostic>> {
    let Some(budget) = budget else {
        return Ok(policy);
    };
    // A policy that cannot even be serialized cannot be shipped either.
    let size = serde_json::to_vec(&policy).map_or(usize::MAX, |json| json.len());
    if size <= budget {
        return Ok(policy);
    }
    Err(vec![over_budget(object, what, size, budget)])
}

/// Refuses a spec over `budget` before compiling it: what a policy
/// compiles to holds its keywords, patterns and conditions as written, so
/// an oversize spec is refused without spending the work of compiling it.
pub(super) fn spec_within_budget(
    p: &AIPolicy,
    object: &ObjectRef,
    budget: Option<usize>,
) -> Result<(), Vec<Diagnostic>> {
    let Some(budget) = budget else {
        return Ok(());
    };
    let size = serde_json::to_vec(&p.spec).map_or(usize::MAX, |json| json.len());
    if size <= budget {
        return Ok(());
    }
    Err(vec![over_budget(object, "policy's spec", size, budget)])
}

fn over_budget(object: &ObjectRef, what: &str, size: usize, budget: usize) -> Diagnostic {
    Diagnostic::new(
        object,
        "spec",
        format!(
            "the {what} is {size} bytes, over the {budget}-byte budget each policy has in the compiled configuration (the operator's --policy-size-budget), so it is refused and the other policies are written without it"
        ),
        "split it into smaller policies, or trim keyword lists, patterns and conditions; a platform admin can raise the budget (chart value operator.policySizeBudget)",
    )
}
