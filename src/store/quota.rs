//! Per-team quotas. Concurrent runs are counted in memory (a run in flight dies with the
//! process anyway); a [`RunPermit`] holds one team's slot and gives it back when dropped.
//! Sandboxes are counted by their owner, who passes the current count to
//! [`Quotas::sandboxes_allowed`]. A limit of 0 means unlimited.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Team;

pub struct Quotas {
    max_runs: usize,
    max_sandboxes: usize,
    runs: Mutex<HashMap<i64, usize>>,
}

/// A team is at one of its limits. `quota` is the config key, so the message says what to raise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("team {team} is at its quota of {limit} {what} ({quota} = {limit}); {advice}")]
pub struct QuotaExceeded {
    pub team: String,
    pub quota: &'static str,
    pub what: &'static str,
    pub limit: usize,
    pub advice: &'static str,
    /// Seconds after which a retry may succeed.
    pub retry_after: u64,
}

/// One of a team's concurrent-run slots; dropping it frees the slot.
pub struct RunPermit {
    quotas: Arc<Quotas>,
    team_id: i64,
}

impl Drop for RunPermit {
    fn drop(&mut self) {
        let mut runs = self.quotas.runs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = runs.get_mut(&self.team_id) {
            *n -= 1;
            if *n == 0 {
                runs.remove(&self.team_id);
            }
        }
    }
}

impl Quotas {
    pub fn new(max_concurrent_runs_per_team: usize, max_sandboxes_per_team: usize) -> Arc<Quotas> {
        Arc::new(Quotas {
            max_runs: max_concurrent_runs_per_team,
            max_sandboxes: max_sandboxes_per_team,
            runs: Mutex::new(HashMap::new()),
        })
    }

    /// Take one of `team`'s concurrent-run slots, or say which quota it is at.
    pub fn try_acquire_run(self: &Arc<Self>, team: &Team) -> Result<RunPermit, QuotaExceeded> {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let n = runs.entry(team.id).or_insert(0);
        if self.max_runs != 0 && *n >= self.max_runs {
            return Err(QuotaExceeded {
                team: team.name.clone(),
                quota: "quotas.max_concurrent_runs_per_team",
                what: "concurrent runs",
                limit: self.max_runs,
                advice: "retry when one of its runs has finished",
                retry_after: 1,
            });
        }
        *n += 1;
        Ok(RunPermit {
            quotas: self.clone(),
            team_id: team.id,
        })
    }

    /// `quotas.max_concurrent_runs_per_team` (0: unlimited).
    pub fn max_runs(&self) -> usize {
        self.max_runs
    }

    /// `quotas.max_sandboxes_per_team` (0: unlimited).
    pub fn max_sandboxes(&self) -> usize {
        self.max_sandboxes
    }

    /// Runs of `team` in flight now.
    pub fn runs_in_flight(&self, team: &Team) -> usize {
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&team.id)
            .copied()
            .unwrap_or(0)
    }

    /// Whether `team`, which has `current` sandboxes, may create one more.
    pub fn sandboxes_allowed(&self, _team: &Team, current: usize) -> bool {
        self.max_sandboxes == 0 || current < self.max_sandboxes
    }

    /// The answer for a team that may not create another sandbox.
    pub fn sandboxes_exceeded(&self, team: &Team) -> QuotaExceeded {
        QuotaExceeded {
            team: team.name.clone(),
            quota: "quotas.max_sandboxes_per_team",
            what: "sandboxes",
            limit: self.max_sandboxes,
            advice: "delete one of its sandboxes or let one expire",
            retry_after: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn team(id: i64) -> Team {
        Team {
            id,
            name: format!("t{id}"),
        }
    }

    #[test]
    fn run_slots_are_per_team_and_freed_on_drop() {
        let q = Quotas::new(2, 0);
        let (a, b) = (team(1), team(2));
        let p1 = q.try_acquire_run(&a).unwrap();
        let _p2 = q.try_acquire_run(&a).unwrap();
        let err = q.try_acquire_run(&a).err().expect("third run refused");
        assert_eq!(err.to_string(), "team t1 is at its quota of 2 concurrent runs (quotas.max_concurrent_runs_per_team = 2); retry when one of its runs has finished");
        assert!(
            q.try_acquire_run(&b).is_ok(),
            "another team is not affected"
        );
        drop(p1);
        assert_eq!(q.runs_in_flight(&a), 1);
        assert!(q.try_acquire_run(&a).is_ok());
    }

    #[test]
    fn zero_means_unlimited() {
        let q = Quotas::new(0, 0);
        let permits: Vec<_> = (0..100)
            .map(|_| q.try_acquire_run(&team(1)).unwrap())
            .collect();
        assert_eq!(q.runs_in_flight(&team(1)), permits.len());
        assert!(q.sandboxes_allowed(&team(1), 10_000));
    }

    #[test]
    fn sandbox_quota_counts_what_the_team_has() {
        let q = Quotas::new(0, 20);
        assert!(q.sandboxes_allowed(&team(1), 19));
        assert!(!q.sandboxes_allowed(&team(1), 20));
        assert!(q
            .sandboxes_exceeded(&team(1))
            .to_string()
            .contains("quotas.max_sandboxes_per_team = 20"));
    }
}
