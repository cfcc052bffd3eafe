//! Names of the AMQP topology under a prefix (`<p>`):
//!
//! | name                     | what                                                        |
//! |--------------------------|-------------------------------------------------------------|
//! | `<p>.tasks` (exchange)   | topic exchange tasks are published to (`task.<type>`)       |
//! | `<p>.tasks.q`            | durable task queue bound with `task.#`; dead-letters to `<p>.dlx` |
//! | `<p>.tasks.retry.<ms>ms` | one per retry delay; TTL, then back to `<p>.tasks`          |
//! | `<p>.dlx` / `<p>.dlq`    | fanout exchange and queue for tasks out of retries          |
//! | `<p>.events`             | topic exchange of `task.succeeded` / `task.failed` events   |

use std::time::Duration;

/// The topology's names for one prefix and retry schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub prefix: String,
    pub retry_delays: Vec<Duration>,
}

impl Names {
    pub fn task_exchange(&self) -> String {
        format!("{}.tasks", self.prefix)
    }

    pub fn task_queue(&self) -> String {
        format!("{}.tasks.q", self.prefix)
    }

    pub fn retry_queue(&self, delay: Duration) -> String {
        format!("{}.tasks.retry.{}ms", self.prefix, delay.as_millis())
    }

    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dlq", self.prefix)
    }

    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// Queues that hold work: the task queue and the retry queues.
    pub fn work_queues(&self) -> Vec<String> {
        std::iter::once(self.task_queue())
            .chain(self.retry_delays.iter().map(|d| self.retry_queue(*d)))
            .collect()
    }

    /// Every queue: work queues and the dead-letter queue.
    pub fn queues(&self) -> Vec<String> {
        let mut all = self.work_queues();
        all.push(self.dead_letter_queue());
        all
    }

    pub fn exchanges(&self) -> Vec<String> {
        vec![
            self.task_exchange(),
            self.dead_letter_exchange(),
            self.events_exchange(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_live_under_the_prefix() {
        let n = Names {
            prefix: "p1".into(),
            retry_delays: vec![Duration::from_secs(1), Duration::from_millis(2500)],
        };
        assert_eq!(n.task_exchange(), "p1.tasks");
        assert_eq!(n.task_queue(), "p1.tasks.q");
        assert_eq!(n.retry_queue(n.retry_delays[1]), "p1.tasks.retry.2500ms");
        assert_eq!(n.dead_letter_queue(), "p1.dlq");
        assert_eq!(n.events_exchange(), "p1.events");
        assert_eq!(
            n.work_queues(),
            [
                "p1.tasks.q",
                "p1.tasks.retry.1000ms",
                "p1.tasks.retry.2500ms"
            ]
        );
        assert_eq!(n.queues().last().unwrap(), "p1.dlq");
    }
}
