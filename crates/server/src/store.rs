//! The server's state in SQLite (`DIR/ferry.db`, WAL): tasks, their passwords in a table of
//! their own, their events, their last precheck and verify reports. Every change is one
//! statement or one transaction, so a crash (even SIGKILL) leaves either the old or the new
//! state, never half of one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::ApiError;

/// A task as stored: the spec without its passwords (those are in `secrets`).
#[derive(Clone, Debug)]
pub struct TaskRow {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The spec as JSON, passwords left out.
    pub spec: String,
    pub state: String,
    /// Unix ms at which the task entered `state`.
    pub since_ms: u64,
    pub created_ms: u64,
    pub last_error: Option<String>,
    /// Servers of the spec that name a saved connection: section (`source`, `target`,
    /// `more_targets.0`, ...) -> connection name.
    pub connections: BTreeMap<String, String>,
}

/// A saved connection as stored: its URL without the password (that is in
/// `connection_secrets`), its TLS settings as JSON.
#[derive(Clone, Debug)]
pub struct ConnectionRow {
    pub name: String,
    pub url: String,
    pub tls: Option<String>,
    pub description: Option<String>,
    pub created_ms: u64,
}

/// One kept report (precheck or verify).
#[derive(Clone, Debug)]
pub struct ReportRow {
    pub at_ms: u64,
    pub failed: bool,
    pub json: String,
}

/// One stored event: its place in the history and its JSON.
#[derive(Clone, Debug)]
pub struct EventRow {
    pub seq: i64,
    pub json: String,
}

pub struct Store {
    conn: Mutex<Connection>,
    /// The newest events kept per task; older ones go as new ones come.
    events_kept: std::sync::atomic::AtomicU64,
}

/// Events kept per task by default: weeks of a busy task's warnings and state changes, a few
/// MB of store.
pub const EVENTS_KEPT: u64 = 10_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS secrets (
    task_id TEXT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_task ON events(task_id, seq);
CREATE TABLE IF NOT EXISTS connections (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    tls TEXT,
    description TEXT,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS connection_secrets (
    name TEXT PRIMARY KEY REFERENCES connections(name) ON DELETE CASCADE ON UPDATE CASCADE,
    password TEXT NOT NULL
);
-- No cascade from connections: a connection a task names cannot go.
CREATE TABLE IF NOT EXISTS task_connections (
    task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    section TEXT NOT NULL,
    name TEXT NOT NULL REFERENCES connections(name),
    PRIMARY KEY (task_id, section)
);
CREATE TABLE IF NOT EXISTS reports (
    task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (task_id, kind)
);
";

/// Runs a store call. On a worker of a multi-threaded runtime the runtime is told first that
/// this thread blocks (each commit waits for the disk), so the tasks' network I/O goes on
/// on the other threads meanwhile; elsewhere (a current-thread runtime, a plain thread) it just
/// runs.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn db_error(e: rusqlite::Error) -> ApiError {
    ApiError::Store(e.to_string())
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, ApiError> {
        let conn = Connection::open(path).map_err(|e| {
            ApiError::Store(format!("cannot open the store {}: {e}", path.display()))
        })?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_error)?;
        // Each commit reaches the disk before the API answers: a SIGKILL loses nothing it said.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_error)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_error)?;
        conn.execute_batch(SCHEMA).map_err(db_error)?;
        conn.execute_batch(crate::alerts::SCHEMA)
            .map_err(db_error)?;
        Ok(Store {
            conn: Mutex::new(conn),
            events_kept: std::sync::atomic::AtomicU64::new(EVENTS_KEPT),
        })
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the store answers (for `/healthz`).
    pub fn ping(&self) -> Result<(), ApiError> {
        blocking(|| {
            self.conn()
                .query_row("SELECT 1", [], |_| Ok(()))
                .map_err(db_error)
        })
    }

    pub fn insert(&self, task: &TaskRow, secrets: &str) -> Result<(), ApiError> {
        blocking(|| {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(db_error)?;
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO tasks (id, name, labels, spec, state, since_ms, created_ms, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    task.id,
                    task.name,
                    labels_json(&task.labels),
                    task.spec,
                    task.state,
                    task.since_ms as i64,
                    task.created_ms as i64,
                    task.last_error
                ],
            ).map_err(db_error)?;
            if inserted == 0 {
                return Err(ApiError::Conflict(format!(
                    "a task with id {:?} already exists: give [sync] id another value, or leave it out for a generated one",
                    task.id
                )));
            }
            tx.execute(
                "INSERT INTO secrets (task_id, json) VALUES (?1, ?2)",
                params![task.id, secrets],
            )
            .map_err(db_error)?;
            put_links(&tx, task)?;
            tx.commit().map_err(db_error)
        })
    }

    /// Replaces a task's spec, name, labels and passwords, and forgets its last precheck (it
    /// was of the old settings).
    pub fn update_spec(&self, task: &TaskRow, secrets: &str) -> Result<(), ApiError> {
        blocking(|| {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(db_error)?;
            tx.execute(
                "UPDATE tasks SET name = ?2, labels = ?3, spec = ?4, state = ?5, since_ms = ?6 WHERE id = ?1",
                params![
                    task.id,
                    task.name,
                    labels_json(&task.labels),
                    task.spec,
                    task.state,
                    task.since_ms as i64
                ],
            )
            .map_err(db_error)?;
            tx.execute(
                "UPDATE secrets SET json = ?2 WHERE task_id = ?1",
                params![task.id, secrets],
            )
            .map_err(db_error)?;
            tx.execute(
                "DELETE FROM reports WHERE task_id = ?1 AND kind = 'precheck'",
                params![task.id],
            )
            .map_err(db_error)?;
            put_links(&tx, task)?;
            tx.commit().map_err(db_error)
        })
    }

    /// Replaces a running task's spec (its passwords unchanged) and labels, keeping its state
    /// and reports.
    pub fn set_spec(
        &self,
        id: &str,
        spec: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        blocking(|| {
            self.conn()
                .execute(
                    "UPDATE tasks SET spec = ?2, labels = ?3 WHERE id = ?1",
                    params![id, spec, labels_json(labels)],
                )
                .map_err(db_error)
                .map(drop)
        })
    }

    pub fn set_labels(&self, id: &str, labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
        blocking(|| {
            self.conn()
                .execute(
                    "UPDATE tasks SET labels = ?2 WHERE id = ?1",
                    params![id, labels_json(labels)],
                )
                .map_err(db_error)
                .map(drop)
        })
    }

    pub fn set_state(
        &self,
        id: &str,
        state: &str,
        since_ms: u64,
        last_error: Option<&str>,
    ) -> Result<(), ApiError> {
        blocking(|| {
            self.conn()
                .execute(
                    "UPDATE tasks SET state = ?2, since_ms = ?3, last_error = COALESCE(?4, last_error) WHERE id = ?1",
                    params![id, state, since_ms as i64, last_error],
                )
                .map_err(db_error)
                .map(drop)
        })
    }

    pub fn get(&self, id: &str) -> Result<Option<TaskRow>, ApiError> {
        blocking(|| {
            let conn = self.conn();
            let found = conn
                .query_row(
                    "SELECT id, name, labels, spec, state, since_ms, created_ms, last_error FROM tasks WHERE id = ?1",
                    params![id],
                    row,
                )
                .optional()
                .map_err(db_error)?;
            match found {
                Some(mut task) => {
                    task.connections = links(&conn, &task.id)?;
                    Ok(Some(task))
                }
                None => Ok(None),
            }
        })
    }

    pub fn list(&self) -> Result<Vec<TaskRow>, ApiError> {
        blocking(|| {
            let conn = self.conn();
            let mut stmt = conn
                .prepare("SELECT id, name, labels, spec, state, since_ms, created_ms, last_error FROM tasks ORDER BY created_ms, id")
                .map_err(db_error)?;
            let rows = stmt.query_map([], row).map_err(db_error)?;
            let mut tasks = rows.collect::<Result<Vec<_>, _>>().map_err(db_error)?;
            for task in &mut tasks {
                task.connections = links(&conn, &task.id)?;
            }
            Ok(tasks)
        })
    }

    pub fn insert_connection(
        &self,
        c: &ConnectionRow,
        password: Option<&str>,
    ) -> Result<(), ApiError> {
        blocking(|| {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(db_error)?;
            let inserted = tx
                .execute(
                    "INSERT OR IGNORE INTO connections (name, url, tls, description, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![c.name, c.url, c.tls, c.description, c.created_ms as i64],
                )
                .map_err(db_error)?;
            if inserted == 0 {
                return Err(ApiError::Conflict(format!(
                    "a connection named {:?} already exists: PUT /api/v1/connections/{0} to change it, or choose another name",
                    c.name
                )));
            }
            put_password(&tx, &c.name, password)?;
            tx.commit().map_err(db_error)
        })
    }

    /// Replaces a connection's URL, TLS settings, description and password.
    pub fn replace_connection(
        &self,
        c: &ConnectionRow,
        password: Option<&str>,
    ) -> Result<(), ApiError> {
        blocking(|| {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(db_error)?;
            tx.execute(
                "UPDATE connections SET url = ?2, tls = ?3, description = ?4 WHERE name = ?1",
                params![c.name, c.url, c.tls, c.description],
            )
            .map_err(db_error)?;
            put_password(&tx, &c.name, password)?;
            tx.commit().map_err(db_error)
        })
    }

    pub fn connection(
        &self,
        name: &str,
    ) -> Result<Option<(ConnectionRow, Option<String>)>, ApiError> {
        blocking(|| {
            self.conn()
                .query_row(
                    "SELECT c.name, c.url, c.tls, c.description, c.created_ms, s.password FROM connections c LEFT JOIN connection_secrets s ON s.name = c.name WHERE c.name = ?1",
                    params![name],
                    |r| Ok((connection_row(r)?, r.get(5)?)),
                )
                .optional()
                .map_err(db_error)
        })
    }

    pub fn connections(&self) -> Result<Vec<ConnectionRow>, ApiError> {
        blocking(|| {
            let conn = self.conn();
            let mut stmt = conn
                .prepare(
                    "SELECT name, url, tls, description, created_ms FROM connections ORDER BY name",
                )
                .map_err(db_error)?;
            let rows = stmt.query_map([], connection_row).map_err(db_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
        })
    }

    /// The tasks whose spec names this connection.
    pub fn connection_users(&self, name: &str) -> Result<Vec<String>, ApiError> {
        blocking(|| {
            let conn = self.conn();
            let mut stmt = conn
                .prepare(
                    "SELECT DISTINCT task_id FROM task_connections WHERE name = ?1 ORDER BY task_id",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![name], |r| r.get(0))
                .map_err(db_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
        })
    }

    /// Deletes a connection no task names (the caller checked; the schema refuses otherwise).
    pub fn delete_connection(&self, name: &str) -> Result<bool, ApiError> {
        blocking(|| {
            self.conn()
                .execute("DELETE FROM connections WHERE name = ?1", params![name])
                .map_err(db_error)
                .map(|n| n > 0)
        })
    }

    pub fn secrets(&self, id: &str) -> Result<Option<String>, ApiError> {
        blocking(|| {
            self.conn()
                .query_row(
                    "SELECT json FROM secrets WHERE task_id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_error)
        })
    }

    /// Deletes a task with its passwords, reports and events.
    pub fn delete(&self, id: &str) -> Result<(), ApiError> {
        blocking(|| {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(db_error)?;
            tx.execute("DELETE FROM events WHERE task_id = ?1", params![id])
                .map_err(db_error)?;
            tx.execute("DELETE FROM tasks WHERE id = ?1", params![id])
                .map_err(db_error)?;
            tx.commit().map_err(db_error)
        })
    }

    /// Appends an event, and drops the task's oldest beyond the newest kept; returns its place
    /// in the history.
    pub fn add_event(&self, task_id: &str, json: &str) -> Result<i64, ApiError> {
        blocking(|| {
            let kept = self.events_kept.load(std::sync::atomic::Ordering::Relaxed);
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(db_error)?;
            tx.execute(
                "INSERT INTO events (task_id, json) VALUES (?1, ?2)",
                params![task_id, json],
            )
            .map_err(db_error)?;
            let seq = tx.last_insert_rowid();
            tx.execute(
                "DELETE FROM events WHERE task_id = ?1 AND seq <= (SELECT seq FROM events WHERE task_id = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
                params![task_id, kept as i64],
            )
            .map_err(db_error)?;
            tx.commit().map_err(db_error)?;
            Ok(seq)
        })
    }

    /// How many events are kept per task (at least 1).
    pub fn keep_events(&self, n: u64) {
        self.events_kept
            .store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Up to `limit` events of a task after `after`, oldest first.
    pub fn events(&self, task_id: &str, after: i64, limit: u32) -> Result<Vec<EventRow>, ApiError> {
        blocking(|| {
            let conn = self.conn();
            let mut stmt = conn
                .prepare(
                    "SELECT seq, json FROM events WHERE task_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![task_id, after, limit], |r| {
                    Ok(EventRow {
                        seq: r.get(0)?,
                        json: r.get(1)?,
                    })
                })
                .map_err(db_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
        })
    }

    pub fn put_report(
        &self,
        task_id: &str,
        kind: &str,
        report: &ReportRow,
    ) -> Result<(), ApiError> {
        blocking(|| {
            self.conn()
                .execute(
                    "INSERT OR REPLACE INTO reports (task_id, kind, at_ms, failed, json) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![task_id, kind, report.at_ms as i64, report.failed, report.json],
                )
                .map_err(db_error)
                .map(drop)
        })
    }

    pub fn report(&self, task_id: &str, kind: &str) -> Result<Option<ReportRow>, ApiError> {
        blocking(|| {
            self.conn()
                .query_row(
                    "SELECT at_ms, failed, json FROM reports WHERE task_id = ?1 AND kind = ?2",
                    params![task_id, kind],
                    |r| {
                        Ok(ReportRow {
                            at_ms: r.get::<_, i64>(0)? as u64,
                            failed: r.get(1)?,
                            json: r.get(2)?,
                        })
                    },
                )
                .optional()
                .map_err(db_error)
        })
    }
}

fn labels_json(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".into())
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRow> {
    let labels: String = r.get(2)?;
    Ok(TaskRow {
        id: r.get(0)?,
        name: r.get(1)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        spec: r.get(3)?,
        state: r.get(4)?,
        since_ms: r.get::<_, i64>(5)? as u64,
        created_ms: r.get::<_, i64>(6)? as u64,
        last_error: r.get(7)?,
        connections: BTreeMap::new(),
    })
}

fn connection_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConnectionRow> {
    Ok(ConnectionRow {
        name: r.get(0)?,
        url: r.get(1)?,
        tls: r.get(2)?,
        description: r.get(3)?,
        created_ms: r.get::<_, i64>(4)? as u64,
    })
}

fn put_password(
    tx: &rusqlite::Transaction<'_>,
    name: &str,
    password: Option<&str>,
) -> Result<(), ApiError> {
    tx.execute(
        "DELETE FROM connection_secrets WHERE name = ?1",
        params![name],
    )
    .map_err(db_error)?;
    if let Some(password) = password {
        tx.execute(
            "INSERT INTO connection_secrets (name, password) VALUES (?1, ?2)",
            params![name, password],
        )
        .map_err(db_error)?;
    }
    Ok(())
}

/// Replaces the task's links to saved connections.
fn put_links(tx: &rusqlite::Transaction<'_>, task: &TaskRow) -> Result<(), ApiError> {
    tx.execute(
        "DELETE FROM task_connections WHERE task_id = ?1",
        params![task.id],
    )
    .map_err(db_error)?;
    for (section, name) in &task.connections {
        tx.execute(
            "INSERT INTO task_connections (task_id, section, name) VALUES (?1, ?2, ?3)",
            params![task.id, section, name],
        )
        .map_err(db_error)?;
    }
    Ok(())
}

fn links(conn: &Connection, task_id: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let mut stmt = conn
        .prepare("SELECT section, name FROM task_connections WHERE task_id = ?1")
        .map_err(db_error)?;
    let rows = stmt
        .query_map(params![task_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db_error)?;
    rows.collect::<Result<BTreeMap<_, _>, _>>()
        .map_err(db_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_events_of_each_task_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("ferry.db")).unwrap();
        store.keep_events(3);
        for i in 0..5 {
            store.add_event("a", &format!("{{\"n\":{i}}}")).unwrap();
            store.add_event("b", &format!("{{\"n\":{i}}}")).unwrap();
        }
        for task in ["a", "b"] {
            let kept: Vec<String> = store
                .events(task, 0, 100)
                .unwrap()
                .into_iter()
                .map(|e| e.json)
                .collect();
            assert_eq!(kept, [r#"{"n":2}"#, r#"{"n":3}"#, r#"{"n":4}"#], "{task}");
        }
    }
}
