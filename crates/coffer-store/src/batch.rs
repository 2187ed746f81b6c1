//! Several statements of one unit sent together. On SQLite every statement
//! is a round trip to sqlx's connection thread (the largest cost of a
//! checkout there, measured with `perf`), and SQLite runs a string of
//! statements with numbered parameters in one go; so the statements are
//! joined, their parameters renumbered. PostgreSQL's extended protocol
//! takes one statement at a time, so there they become one statement:
//! each but the last a data-modifying `WITH` step. Its steps share one
//! snapshot, so the statements of a unit must not read or change each
//! other's rows (a child row's foreign key to a parent inserted by an
//! earlier step is fine: PostgreSQL checks it at the end of the statement).

use crate::{Backend, StoreError, WriteTx};
use rusqlite::ToSql;
use rusqlite::types::ToSqlOutput;
use sqlx::any::AnyArguments;
use sqlx::{AnyConnection, Arguments};

/// One parameter value.
#[derive(Clone)]
pub(crate) enum Val {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Bytes(Vec<u8>),
    OptBytes(Option<Vec<u8>>),
}

impl ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Val::Text(v) => v.to_sql(),
            Val::OptText(v) => v.to_sql(),
            Val::Int(v) => v.to_sql(),
            Val::OptInt(v) => v.to_sql(),
            Val::Bytes(v) => v.to_sql(),
            Val::OptBytes(v) => v.to_sql(),
        }
    }
}

fn add(args: &mut AnyArguments, value: Val) -> Result<(), StoreError> {
    let added = match value {
        Val::Text(v) => args.add(v),
        Val::OptText(v) => args.add(v),
        Val::Int(v) => args.add(v),
        Val::OptInt(v) => args.add(v),
        Val::Bytes(v) => args.add(v),
        Val::OptBytes(v) => args.add(v),
    };
    added.map_err(|e| StoreError::Database(e.to_string()))
}

/// `$1`, `$2`… of a statement shifted by `offset`.
fn renumber(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            digits.push(d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&digits),
        }
    }
    out
}

#[derive(Default)]
pub(crate) struct Statements {
    parts: Vec<(&'static str, Vec<Val>)>,
}

impl Statements {
    /// Adds a statement whose parameters are `$1`…`$n` for `values`.
    pub(crate) fn push(&mut self, sql: &'static str, values: Vec<Val>) {
        self.parts.push((sql, values));
    }

    /// Adds every statement of `more`, after these.
    pub(crate) fn append(&mut self, more: Statements) {
        self.parts.extend(more.parts);
    }

    /// Runs the statements in order on a rusqlite connection (see
    /// `direct`), each prepared once per connection and kept.
    pub(crate) fn run_on(&self, conn: &rusqlite::Connection) -> Result<(), StoreError> {
        for (sql, values) in &self.parts {
            crate::direct::execute(conn, sql, values)?;
        }
        Ok(())
    }

    pub(crate) async fn execute(self, tx: &mut WriteTx) -> Result<(), StoreError> {
        let backend = tx.backend();
        self.execute_on(backend, tx.conn()).await
    }

    /// As [`Statements::execute`], on a connection: on PostgreSQL, outside
    /// a transaction, the one statement is atomic by itself.
    pub(crate) async fn execute_on(self, backend: Backend, conn: &mut AnyConnection) -> Result<(), StoreError> {
        if self.parts.is_empty() {
            return Ok(());
        }
        match backend {
            Backend::Postgres => {
                let last = self.parts.len().saturating_sub(1);
                let mut joined = String::new();
                let mut args = AnyArguments::default();
                let mut offset = 0;
                for (i, (sql, values)) in self.parts.into_iter().enumerate() {
                    if i < last {
                        joined.push_str(if i == 0 { "WITH " } else { ", " });
                        joined.push_str(&format!("coffer_step_{i} AS ({})\n", renumber(sql, offset)));
                    } else {
                        joined.push_str(&renumber(sql, offset));
                    }
                    offset += values.len();
                    for value in values {
                        add(&mut args, value)?;
                    }
                }
                // Built only from the constant statements above; values are bound.
                sqlx::query_with(sqlx::AssertSqlSafe(joined), args).execute(&mut *conn).await?;
            }
            Backend::Sqlite => {
                let mut joined = String::new();
                let mut args = AnyArguments::default();
                let mut offset = 0;
                for (sql, values) in self.parts {
                    joined.push_str(&renumber(sql, offset));
                    joined.push_str(";\n");
                    offset += values.len();
                    for value in values {
                        add(&mut args, value)?;
                    }
                }
                // Built only from the constant statements above; values are bound.
                sqlx::query_with(sqlx::AssertSqlSafe(joined), args).execute(&mut *conn).await?;
            }
        }
        Ok(())
    }
}

/// Writes decided in full before they run (the "command value" form of a
/// unit of work): on SQLite the writer runs them without a round trip to
/// the caller or to sqlx per statement.
#[derive(Default)]
pub struct WriteCommands {
    pub(crate) statements: Statements,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_shifted_whole() {
        assert_eq!(renumber("VALUES ($1, $2, $10, $2)", 30), "VALUES ($31, $32, $40, $32)");
        assert_eq!(renumber("price $ and $1", 5), "price $ and $6");
    }
}
