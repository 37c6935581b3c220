//! Opening tandem's SQLite databases (the hash cache, the server's journal, a synced folder's state): the
//! folder is created if missing, the write-ahead log is on (readers never wait for a writer, and a crash leaves
//! the last committed transaction), and `schema` is applied.

use std::path::Path;

use rusqlite::Connection;

use crate::error::{Error, Result};

/// Opens (or creates) the database at `path` and runs `schema` (idempotent `CREATE … IF NOT EXISTS` statements).
pub fn open(path: &Path, schema: &str) -> Result<Connection> {
    open_with(path, schema, None)
}

/// [`open`] for a database that several processes use at once (the download cache's index): each waits up to
/// `busy_timeout` for another's write instead of failing, from the first statement on.
pub fn open_shared(path: &Path, schema: &str, busy_timeout: std::time::Duration) -> Result<Connection> {
    open_with(path, schema, Some(busy_timeout))
}

fn open_with(path: &Path, schema: &str, busy_timeout: Option<std::time::Duration>) -> Result<Connection> {
    let fail = |source| Error::Database { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let db = Connection::open(path).map_err(fail)?;
    if let Some(timeout) = busy_timeout {
        db.busy_timeout(timeout).map_err(fail)?;
    }
    db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;").map_err(fail)?;
    db.execute_batch(schema).map_err(fail)?;
    Ok(db)
}

/// Every row `sql` selects, each made a value by `row`; an error names the database at `path`.
pub fn select_all<T>(
    db: &Connection,
    path: &Path,
    sql: &str,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let fail = |source| Error::Database { path: path.to_path_buf(), source };
    let mut query = db.prepare(sql).map_err(fail)?;
    let rows = query.query_map([], row).map_err(fail)?;
    rows.collect::<rusqlite::Result<Vec<T>>>().map_err(fail)
}

/// The value of `key` in the database's `meta (key, value)` table, if it has one.
pub fn meta(db: &Connection, path: &Path, key: &str) -> Result<Option<String>> {
    use rusqlite::OptionalExtension;
    db.query_row("SELECT value FROM meta WHERE key = ?", [key], |row| row.get(0))
        .optional()
        .map_err(|source| Error::Database { path: path.to_path_buf(), source })
}

/// Adds `column` (`name TYPE`) to `table` unless a database made by an earlier version already has it.
pub fn add_column(db: &Connection, path: &Path, table: &str, column: &str) -> Result<()> {
    let fail = |source| Error::Database { path: path.to_path_buf(), source };
    let name = column.split_whitespace().next().unwrap_or(column);
    let mut info = db.prepare(&format!("PRAGMA table_info({table})")).map_err(fail)?;
    let names = info.query_map([], |row| row.get::<_, String>(1)).map_err(fail)?;
    for existing in names {
        if existing.map_err(fail)? == name {
            return Ok(());
        }
    }
    db.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column}")).map_err(fail)
}
