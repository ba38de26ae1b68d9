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
}

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
CREATE TABLE IF NOT EXISTS reports (
    task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (task_id, kind)
);
";

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
        })
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the store answers (for `/healthz`).
    pub fn ping(&self) -> Result<(), ApiError> {
        self.conn()
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(db_error)
    }

    pub fn insert(&self, task: &TaskRow, secrets: &str) -> Result<(), ApiError> {
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
        tx.commit().map_err(db_error)
    }

    /// Replaces a task's spec, name, labels and passwords, and forgets its last precheck (it
    /// was of the old settings).
    pub fn update_spec(&self, task: &TaskRow, secrets: &str) -> Result<(), ApiError> {
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
        tx.commit().map_err(db_error)
    }

    pub fn set_labels(&self, id: &str, labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
        self.conn()
            .execute(
                "UPDATE tasks SET labels = ?2 WHERE id = ?1",
                params![id, labels_json(labels)],
            )
            .map_err(db_error)
            .map(drop)
    }

    pub fn set_state(
        &self,
        id: &str,
        state: &str,
        since_ms: u64,
        last_error: Option<&str>,
    ) -> Result<(), ApiError> {
        self.conn()
            .execute(
                "UPDATE tasks SET state = ?2, since_ms = ?3, last_error = COALESCE(?4, last_error) WHERE id = ?1",
                params![id, state, since_ms as i64, last_error],
            )
            .map_err(db_error)
            .map(drop)
    }

    pub fn get(&self, id: &str) -> Result<Option<TaskRow>, ApiError> {
        self.conn()
            .query_row(
                "SELECT id, name, labels, spec, state, since_ms, created_ms, last_error FROM tasks WHERE id = ?1",
                params![id],
                row,
            )
            .optional()
            .map_err(db_error)
    }

    pub fn list(&self) -> Result<Vec<TaskRow>, ApiError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, name, labels, spec, state, since_ms, created_ms, last_error FROM tasks ORDER BY created_ms, id")
            .map_err(db_error)?;
        let rows = stmt.query_map([], row).map_err(db_error)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
    }

    pub fn secrets(&self, id: &str) -> Result<Option<String>, ApiError> {
        self.conn()
            .query_row(
                "SELECT json FROM secrets WHERE task_id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_error)
    }

    /// Deletes a task with its passwords, reports and events.
    pub fn delete(&self, id: &str) -> Result<(), ApiError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_error)?;
        tx.execute("DELETE FROM events WHERE task_id = ?1", params![id])
            .map_err(db_error)?;
        tx.execute("DELETE FROM tasks WHERE id = ?1", params![id])
            .map_err(db_error)?;
        tx.commit().map_err(db_error)
    }

    /// Appends an event; returns its place in the history.
    pub fn add_event(&self, task_id: &str, json: &str) -> Result<i64, ApiError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO events (task_id, json) VALUES (?1, ?2)",
            params![task_id, json],
        )
        .map_err(db_error)?;
        Ok(conn.last_insert_rowid())
    }

    /// Up to `limit` events of a task after `after`, oldest first.
    pub fn events(&self, task_id: &str, after: i64, limit: u32) -> Result<Vec<EventRow>, ApiError> {
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
    }

    pub fn put_report(
        &self,
        task_id: &str,
        kind: &str,
        report: &ReportRow,
    ) -> Result<(), ApiError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO reports (task_id, kind, at_ms, failed, json) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![task_id, kind, report.at_ms as i64, report.failed, report.json],
            )
            .map_err(db_error)
            .map(drop)
    }

    pub fn report(&self, task_id: &str, kind: &str) -> Result<Option<ReportRow>, ApiError> {
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
    })
}
