//! History retention without a scan: the writer keeps the instance ids of the rows it holds,
//! overall and per job, so each new row tells at once which old rows fall out of
//! `history_max_rows` and `history_max_rows_per_job`; those are deleted by id. (A query with
//! `OFFSET 1000` per commit cost about half as much as the commit itself.)

use std::collections::{BTreeMap, HashMap, VecDeque};

use rusqlite::Connection;

/// The ids of the history rows kept, in order.
#[derive(Debug, Default)]
pub(super) struct Retention {
    max_rows: usize,
    max_rows_per_job: usize,
    all: BTreeMap<u64, String>,
    per_job: HashMap<String, VecDeque<u64>>,
}

impl Retention {
    /// The rows the database holds now, under these limits (0 = unlimited).
    pub fn load(connection: &Connection, max_rows: usize, max_rows_per_job: usize) -> rusqlite::Result<Retention> {
        let mut retention = Retention { max_rows, max_rows_per_job, ..Retention::default() };
        let mut statement = connection.prepare("SELECT instance_id, job FROM history ORDER BY instance_id")?;
        let rows = statement.query_map([], |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, String>(1)?)))?;
        for row in rows {
            let (id, job) = row?;
            retention.track(id, job);
        }
        Ok(retention)
    }

    /// Records new rows (ids increasing) and returns the ids of the rows they push out.
    pub fn add(&mut self, rows: impl IntoIterator<Item = (u64, String)>) -> Vec<u64> {
        for (id, job) in rows {
            self.track(id, job);
        }
        self.evict()
    }

    /// Rows held before limits apply: also used at load, so rows over a lowered limit go at the
    /// next write.
    fn track(&mut self, id: u64, job: String) {
        self.per_job.entry(job.clone()).or_default().push_back(id);
        self.all.insert(id, job);
    }

    fn evict(&mut self) -> Vec<u64> {
        let mut evicted = Vec::new();
        if self.max_rows_per_job > 0 {
            for ids in self.per_job.values_mut() {
                while ids.len() > self.max_rows_per_job {
                    let Some(id) = ids.pop_front() else { break };
                    self.all.remove(&id);
                    evicted.push(id);
                }
            }
        }
        if self.max_rows > 0 {
            while self.all.len() > self.max_rows {
                let Some((id, job)) = self.all.pop_first() else { break };
                // The oldest row overall is the oldest of its job.
                if let Some(ids) = self.per_job.get_mut(&job) {
                    ids.retain(|&other| other != id);
                }
                evicted.push(id);
            }
        }
        self.per_job.retain(|_, ids| !ids.is_empty());
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(max_rows: usize, max_rows_per_job: usize) -> Retention {
        Retention { max_rows, max_rows_per_job, ..Retention::default() }
    }

    #[test]
    fn the_oldest_rows_of_a_job_go_first_then_the_oldest_overall() {
        let row = |id: u64, job: &str| (id, job.to_string());
        let mut r = retention(5, 3);
        assert!(r.add([row(1, "a"), row(2, "a"), row(3, "b")]).is_empty());
        assert_eq!(r.add([row(4, "a"), row(5, "a")]), vec![1], "job a keeps its newest 3");
        assert!(r.add([row(6, "b")]).is_empty(), "five rows: 2 3 4 5 6");
        assert_eq!(r.add([row(7, "c")]), vec![2], "six rows: the oldest overall goes");
        assert_eq!(r.add([row(8, "b"), row(9, "b")]), vec![3, 4], "b's oldest, then the oldest overall");
        assert_eq!(r.all.keys().copied().collect::<Vec<_>>(), vec![5, 6, 7, 8, 9]);
        assert_eq!(r.per_job["a"], VecDeque::from([5]));
        assert_eq!(r.per_job["b"], VecDeque::from([6, 8, 9]));
    }

    #[test]
    fn zero_means_unlimited() {
        let mut r = retention(0, 0);
        assert!(r.add((1..=500).map(|i| (i, "a".to_string()))).is_empty());
        assert_eq!(r.all.len(), 500);
    }
}
