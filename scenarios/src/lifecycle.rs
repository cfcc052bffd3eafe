//! The task lifecycle's reference model: where each task type ends, with how many attempts,
//! and which observations are legal on the way.
//!
//! Statuses go PENDING → RUNNING → SUCCESS | FAILED; a failed attempt that will be retried goes
//! back to PENDING. With `r` retries a task gets at most `r + 1` attempts; `flaky n` fails its
//! first `n`, `poison` fails all; out of attempts means FAILED (and dead-lettered).

use serde_json::{json, Value};

/// The task types the lifecycle property submits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Echo,
    Sleep { ms: u64 },
    Flaky { fail_times: u32 },
    Poison,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Running,
    Success,
    Failed,
}

impl Status {
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "PENDING" => Some(Status::Pending),
            "RUNNING" => Some(Status::Running),
            "SUCCESS" => Some(Status::Success),
            "FAILED" => Some(Status::Failed),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Success | Status::Failed)
    }
}

impl Kind {
    /// The submission body.
    pub fn body(&self) -> Value {
        match self {
            Kind::Echo => json!({"type": "echo", "payload": {"n": 1}}),
            Kind::Sleep { ms } => json!({"type": "sleep", "payload": {"ms": ms}}),
            Kind::Flaky { fail_times } => {
                json!({"type": "flaky", "payload": {"fail_times": fail_times}})
            }
            Kind::Poison => json!({"type": "poison"}),
        }
    }

    /// Attempts that fail before one succeeds (all of them for poison).
    fn failures(&self) -> u32 {
        match self {
            Kind::Echo | Kind::Sleep { .. } => 0,
            Kind::Flaky { fail_times } => *fail_times,
            Kind::Poison => u32::MAX,
        }
    }

    /// The end state with `retries` retries: status and attempts.
    pub fn outcome(&self, retries: u32) -> (Status, u32) {
        let max_attempts = retries + 1;
        if self.failures() < max_attempts {
            (Status::Success, self.failures() + 1)
        } else {
            (Status::Failed, max_attempts)
        }
    }
}

/// What has been seen of one task, each observation checked against the model.
#[derive(Debug, Clone)]
pub struct Track {
    kind: Kind,
    retries: u32,
    last: Option<(Status, u32)>,
}

impl Track {
    pub fn new(kind: Kind, retries: u32) -> Track {
        Track {
            kind,
            retries,
            last: None,
        }
    }

    pub fn kind(&self) -> &Kind {
        &self.kind
    }

    /// The last observation, if any.
    pub fn last(&self) -> Option<(Status, u32)> {
        self.last
    }

    /// Checks an observation of the task: a known status; attempts never above the model's
    /// and never going back; a failed attempt only where the model fails; an end only the
    /// model's, and final once reached.
    pub fn observe(&mut self, status: &str, attempts: u32) -> Result<(), String> {
        let seen = Status::parse(status).ok_or_else(|| format!("unknown status {status}"))?;
        let (end, end_attempts) = self.kind.outcome(self.retries);
        let here = format!(
            "{:?} observed {seen:?} after {attempts} attempts",
            self.kind
        );
        if let Some((last, last_attempts)) = self.last {
            if last.is_terminal() && (seen, attempts) != (last, last_attempts) {
                return Err(format!(
                    "{here}, but it had ended {last:?} after {last_attempts}"
                ));
            }
            if attempts < last_attempts {
                return Err(format!(
                    "{here}, fewer than the {last_attempts} seen before"
                ));
            }
        }
        if attempts > end_attempts {
            return Err(format!("{here}; the model allows at most {end_attempts}"));
        }
        if seen.is_terminal() && (seen, attempts) != (end, end_attempts) {
            return Err(format!(
                "{here}; the model ends {end:?} after {end_attempts}"
            ));
        }
        if seen == Status::Running && attempts == 0 {
            return Err(format!("{here}: running without an attempt"));
        }
        if seen == Status::Pending && attempts > self.kind.failures().min(end_attempts) {
            return Err(format!(
                "{here}: waiting for a retry after an attempt the model succeeds"
            ));
        }
        self.last = Some((seen, attempts));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_retry_budget() {
        assert_eq!(Kind::Echo.outcome(3), (Status::Success, 1));
        assert_eq!(Kind::Sleep { ms: 5 }.outcome(0), (Status::Success, 1));
        assert_eq!(
            Kind::Flaky { fail_times: 3 }.outcome(3),
            (Status::Success, 4)
        );
        assert_eq!(
            Kind::Flaky { fail_times: 4 }.outcome(3),
            (Status::Failed, 4)
        );
        assert_eq!(Kind::Poison.outcome(3), (Status::Failed, 4));
        assert_eq!(Kind::Poison.outcome(0), (Status::Failed, 1));
    }

    #[test]
    fn a_legal_path_is_accepted() {
        let mut t = Track::new(Kind::Flaky { fail_times: 2 }, 3);
        for (status, attempts) in [
            ("PENDING", 0),
            ("RUNNING", 1),
            ("PENDING", 1),
            ("RUNNING", 2),
            ("PENDING", 2),
            ("RUNNING", 3),
            ("SUCCESS", 3),
            ("SUCCESS", 3),
        ] {
            t.observe(status, attempts).unwrap();
        }
    }

    #[test]
    fn illegal_observations_are_refused() {
        let echo = || Track::new(Kind::Echo, 3);
        assert!(echo().observe("DONE", 1).is_err());
        assert!(
            echo().observe("SUCCESS", 2).is_err(),
            "echo succeeds on its first attempt"
        );
        assert!(echo().observe("FAILED", 1).is_err());
        assert!(echo().observe("RUNNING", 0).is_err());
        assert!(
            echo().observe("PENDING", 1).is_err(),
            "echo never waits for a retry"
        );
        assert!(Track::new(Kind::Poison, 3).observe("RUNNING", 5).is_err());
        let mut ended = Track::new(Kind::Poison, 3);
        ended.observe("FAILED", 4).unwrap();
        assert!(ended.observe("RUNNING", 4).is_err(), "an end is final");
        let mut going = Track::new(Kind::Poison, 3);
        going.observe("RUNNING", 3).unwrap();
        assert!(
            going.observe("RUNNING", 2).is_err(),
            "attempts never go back"
        );
    }
}
