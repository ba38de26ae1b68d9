//! The alerts' tables in the server's SQLite store: rules (with their secrets, never read
//! back by the API), which (rule, task) pairs are firing, and the outbox of deliveries. A
//! firing or a resolution and its delivery are written in one transaction: a crash keeps
//! both or neither, so an alert is neither lost nor sent twice by a restart.

use rusqlite::{OptionalExtension, params};

use super::rules::{Kind, Rule};
use crate::error::ApiError;
use crate::store::{Store, blocking};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alert_rules (
    id TEXT PRIMARY KEY,
    task_id TEXT,
    kind TEXT NOT NULL,
    threshold REAL,
    for_seconds INTEGER NOT NULL,
    webhook_url TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_firing (
    rule_id TEXT NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    task_id TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (rule_id, task_id)
);
CREATE TABLE IF NOT EXISTS alert_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id TEXT NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    task_id TEXT NOT NULL,
    state TEXT NOT NULL,
    value REAL,
    at_ms INTEGER NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    http_status INTEGER,
    last_error TEXT,
    next_at_ms INTEGER NOT NULL,
    delivered_ms INTEGER
);
CREATE INDEX IF NOT EXISTS alert_deliveries_by_rule ON alert_deliveries(rule_id, id);
CREATE INDEX IF NOT EXISTS alert_deliveries_pending ON alert_deliveries(delivered_ms, next_at_ms);
";

/// A (rule, task) pair whose alert has fired and not yet resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Firing {
    pub rule: String,
    pub task: String,
    pub since_ms: u64,
    pub value: Option<f64>,
}

/// One delivery as kept.
#[derive(Clone, Debug)]
pub struct DeliveryRow {
    pub id: i64,
    pub rule: String,
    pub task: String,
    pub state: String,
    pub value: Option<f64>,
    pub at_ms: u64,
    pub attempts: u32,
    pub http_status: Option<u16>,
    pub last_error: Option<String>,
    pub next_at_ms: u64,
    pub delivered_ms: Option<u64>,
}

/// A delivery to make now: its body and where and how to send it.
#[derive(Clone, Debug)]
pub struct Due {
    pub id: i64,
    pub payload: String,
    pub attempts: u32,
    pub at_ms: u64,
    pub url: String,
    pub secret: String,
}

/// What a new delivery records.
pub struct Transition<'a> {
    pub rule: &'a str,
    pub task: &'a str,
    pub value: Option<f64>,
    pub at_ms: u64,
}

fn db_error(e: rusqlite::Error) -> ApiError {
    ApiError::Store(e.to_string())
}

fn rule_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Rule> {
    let kind: String = r.get(2)?;
    Ok(Rule {
        id: r.get(0)?,
        task: r.get(1)?,
        kind: Kind::parse(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown alert kind {kind:?}").into(),
            )
        })?,
        threshold: r.get(3)?,
        for_seconds: r.get::<_, i64>(4)? as u64,
        webhook_url: r.get(5)?,
        created_ms: r.get::<_, i64>(6)? as u64,
    })
}

const RULE_COLUMNS: &str = "id, task_id, kind, threshold, for_seconds, webhook_url, created_ms";

impl Store {
    pub fn insert_rule(&self, rule: &Rule, secret: &str) -> Result<(), ApiError> {
        blocking(|| {
            self.conn()
                .execute(
                    "INSERT INTO alert_rules (id, task_id, kind, threshold, for_seconds, webhook_url, secret, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        rule.id,
                        rule.task,
                        rule.kind.name(),
                        rule.threshold,
                        rule.for_seconds as i64,
                        rule.webhook_url,
                        secret,
                        rule.created_ms as i64
                    ],
                )
                .map_err(db_error)
                .map(drop)
        })
    }

    pub fn rules(&self) -> Result<Vec<Rule>, ApiError> {
        blocking(|| {
            let conn = self.conn();
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {RULE_COLUMNS} FROM alert_rules ORDER BY created_ms, id"
                ))
                .map_err(db_error)?;
            let rows = stmt.query_map([], rule_row).map_err(db_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
        })
    }

    pub fn rule(&self, id: &str) -> Result<Option<Rule>, ApiError> {
        blocking(|| {
            self.conn()
                .query_row(
                    &format!("SELECT {RULE_COLUMNS} FROM alert_rules WHERE id = ?1"),
                    params![id],
                    rule_row,
                )
                .optional()
                .map_err(db_error)
        })
    }

    /// Deletes a rule with its firing states and deliveries (also those not yet made).
    /// False when there was none.
    pub fn delete_rule(&self, id: &str) -> Result<bool, ApiError> {
        blocking(|| {
            self.conn()
                .execute("DELETE FROM alert_rules WHERE id = ?1", params![id])
                .map_err(db_error)
                .map(|n| n > 0)
        })
    }

    pub fn firing(&self) -> Result<Vec<Firing>, ApiError> {
        blocking(|| {
            let conn = self.conn();
            let mut stmt = conn
                .prepare(
                    "SELECT rule_id, task_id, since_ms, value FROM alert_firing ORDER BY rule_id, task_id",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(Firing {
                        rule: r.get(0)?,
                        task: r.get(1)?,
                        since_ms: r.get::<_, i64>(2)? as u64,
                        value: r.get(3)?,
                    })
                })
                .map_err(db_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
        })
    }

    /// Records that (rule, task) fires, with its delivery whose body `payload` makes from the
    /// delivery's id. None when it was already firing (nothing written).
    pub fn fire(
        &self,
        t: &Transition<'_>,
        since_ms: u64,
        payload: impl FnOnce(i64) -> String,
    ) -> Result<Option<i64>, ApiError> {
        blocking(|| {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(db_error)?;
            let added = tx
                .execute(
                    "INSERT OR IGNORE INTO alert_firing (rule_id, task_id, since_ms, value) VALUES (?1, ?2, ?3, ?4)",
                    params![t.rule, t.task, since_ms as i64, t.value],
                )
                .map_err(db_error)?;
            if added == 0 {
                return Ok(None);
            }
            let id = add_delivery(&tx, t, "firing", payload)?;
            tx.commit().map_err(db_error)?;
            Ok(Some(id))
        })
    }

    /// Records that (rule, task) no longer fires, with its delivery. None when it was not
    /// firing (nothing written).
    pub fn resolve(
        &self,
        t: &Transition<'_>,
        payload: impl FnOnce(i64) -> String,
    ) -> Result<Option<i64>, ApiError> {
        blocking(|| {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(db_error)?;
            let removed = tx
                .execute(
                    "DELETE FROM alert_firing WHERE rule_id = ?1 AND task_id = ?2",
                    params![t.rule, t.task],
                )
                .map_err(db_error)?;
            if removed == 0 {
                return Ok(None);
            }
            let id = add_delivery(&tx, t, "resolved", payload)?;
            tx.commit().map_err(db_error)?;
            Ok(Some(id))
        })
    }

    /// A rule's last `limit` deliveries, oldest first.
    pub fn deliveries(&self, rule: &str, limit: u32) -> Result<Vec<DeliveryRow>, ApiError> {
        blocking(|| {
            let conn = self.conn();
            let mut stmt = conn
                .prepare(
                    "SELECT id, rule_id, task_id, state, value, at_ms, attempts, http_status, last_error, next_at_ms, delivered_ms FROM (SELECT * FROM alert_deliveries WHERE rule_id = ?1 ORDER BY id DESC LIMIT ?2) ORDER BY id",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![rule, limit], |r| {
                    Ok(DeliveryRow {
                        id: r.get(0)?,
                        rule: r.get(1)?,
                        task: r.get(2)?,
                        state: r.get(3)?,
                        value: r.get(4)?,
                        at_ms: r.get::<_, i64>(5)? as u64,
                        attempts: r.get(6)?,
                        http_status: r.get(7)?,
                        last_error: r.get(8)?,
                        next_at_ms: r.get::<_, i64>(9)? as u64,
                        delivered_ms: r.get::<_, Option<i64>>(10)?.map(|v| v as u64),
                    })
                })
                .map_err(db_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
        })
    }

    /// Deliveries to make now, oldest first: for each (rule, task) only its oldest pending
    /// one, so a resolution never overtakes its firing.
    pub fn due(&self, now_ms: u64, limit: u32) -> Result<Vec<Due>, ApiError> {
        blocking(|| {
            let conn = self.conn();
            let mut stmt = conn
                .prepare(
                    "SELECT d.id, d.payload, d.attempts, d.at_ms, r.webhook_url, r.secret
                     FROM alert_deliveries d JOIN alert_rules r ON r.id = d.rule_id
                     WHERE d.delivered_ms IS NULL AND d.next_at_ms <= ?1
                       AND NOT EXISTS (SELECT 1 FROM alert_deliveries e
                                       WHERE e.rule_id = d.rule_id AND e.task_id = d.task_id
                                         AND e.delivered_ms IS NULL AND e.id < d.id)
                     ORDER BY d.id LIMIT ?2",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![now_ms.min(i64::MAX as u64) as i64, limit], |r| {
                    Ok(Due {
                        id: r.get(0)?,
                        payload: r.get(1)?,
                        attempts: r.get(2)?,
                        at_ms: r.get::<_, i64>(3)? as u64,
                        url: r.get(4)?,
                        secret: r.get(5)?,
                    })
                })
                .map_err(db_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
        })
    }

    /// The earliest time a pending delivery that `due` would give is due, if any.
    pub fn next_due(&self) -> Result<Option<u64>, ApiError> {
        blocking(|| {
            self.conn()
                .query_row(
                    "SELECT MIN(d.next_at_ms) FROM alert_deliveries d
                     WHERE d.delivered_ms IS NULL
                       AND NOT EXISTS (SELECT 1 FROM alert_deliveries e
                                       WHERE e.rule_id = d.rule_id AND e.task_id = d.task_id
                                         AND e.delivered_ms IS NULL AND e.id < d.id)",
                    [],
                    |r| r.get::<_, Option<i64>>(0),
                )
                .map(|v| v.map(|v| v.max(0) as u64))
                .map_err(db_error)
        })
    }

    pub fn delivered(&self, id: i64, status: u16, now_ms: u64) -> Result<(), ApiError> {
        blocking(|| {
            self.conn()
                .execute(
                    "UPDATE alert_deliveries SET attempts = attempts + 1, http_status = ?2, last_error = NULL, delivered_ms = ?3 WHERE id = ?1",
                    params![id, status, now_ms as i64],
                )
                .map_err(db_error)
                .map(drop)
        })
    }

    pub fn attempt_failed(
        &self,
        id: i64,
        status: Option<u16>,
        error: &str,
        next_at_ms: u64,
    ) -> Result<(), ApiError> {
        blocking(|| {
            self.conn()
                .execute(
                    "UPDATE alert_deliveries SET attempts = attempts + 1, http_status = ?2, last_error = ?3, next_at_ms = ?4 WHERE id = ?1",
                    params![id, status, error, next_at_ms as i64],
                )
                .map_err(db_error)
                .map(drop)
        })
    }

    /// Forgets deliveries made before `before_ms` (pending ones are kept whatever their age).
    pub fn forget_delivered(&self, before_ms: u64) -> Result<usize, ApiError> {
        blocking(|| {
            self.conn()
                .execute(
                    "DELETE FROM alert_deliveries WHERE delivered_ms IS NOT NULL AND delivered_ms < ?1",
                    params![before_ms.min(i64::MAX as u64) as i64],
                )
                .map_err(db_error)
        })
    }

    /// After a restart: every pending delivery is tried again now, whatever its backoff said.
    pub fn retry_pending_now(&self, now_ms: u64) -> Result<usize, ApiError> {
        blocking(|| {
            self.conn()
                .execute(
                    "UPDATE alert_deliveries SET next_at_ms = ?1 WHERE delivered_ms IS NULL AND next_at_ms > ?1",
                    params![now_ms as i64],
                )
                .map_err(db_error)
        })
    }
}

fn add_delivery(
    tx: &rusqlite::Transaction<'_>,
    t: &Transition<'_>,
    state: &str,
    payload: impl FnOnce(i64) -> String,
) -> Result<i64, ApiError> {
    tx.execute(
        "INSERT INTO alert_deliveries (rule_id, task_id, state, value, at_ms, payload, next_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, '', ?5)",
        params![t.rule, t.task, state, t.value, t.at_ms as i64],
    )
    .map_err(db_error)?;
    let id = tx.last_insert_rowid();
    tx.execute(
        "UPDATE alert_deliveries SET payload = ?2 WHERE id = ?1",
        params![id, payload(id)],
    )
    .map_err(db_error)?;
    Ok(id)
}
