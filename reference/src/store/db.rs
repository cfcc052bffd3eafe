//! One way to run a statement on either store: [`Db`], implemented for a SQLite connection
//! (rusqlite, in the calling thread: a statement costs microseconds) and for a MySQL connection
//! (sqlx, async). Every query of the store is written once against it.

use futures_util::future::BoxFuture;
use rusqlite::types::{ToSqlOutput, ValueRef};
use sqlx::{any::AnyRow, AnyConnection, Row as _};

use super::{Dialect, StoreError};

/// A statement parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum P<'a> {
    I(i64),
    T(&'a str),
    Null,
}

impl<'a> P<'a> {
    pub fn opt(text: Option<&'a str>) -> P<'a> {
        text.map_or(P::Null, P::T)
    }
}

/// A column value.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Null,
    I(i64),
    F(f64),
    T(String),
    B(Vec<u8>),
}

/// A result row; columns by position, as the query lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<V>);

impl Row {
    fn at(&self, i: usize) -> Result<&V, StoreError> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("no column {i}")))
    }

    pub fn i64(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_i64(i)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {i} is NULL")))
    }

    pub fn opt_i64(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.at(i)? {
            V::Null => Ok(None),
            V::I(n) => Ok(Some(*n)),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: {other:?} is not an integer"
            ))),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {i} is NULL")))
    }

    /// Text, also from a BLOB (MySQL sends TEXT columns with the BLOB type code).
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.at(i)? {
            V::Null => Ok(None),
            V::T(s) => Ok(Some(s.clone())),
            V::B(b) => String::from_utf8(b.clone())
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}"))),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: {other:?} is not text"
            ))),
        }
    }
}

/// A connection (or transaction) statements run on.
pub trait Db: Send {
    fn dialect(&self) -> Dialect;
    /// Runs a statement; the number of rows it changed.
    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [P<'a>],
    ) -> BoxFuture<'a, Result<u64, StoreError>>;
    /// Runs a query; its rows.
    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [P<'a>],
    ) -> BoxFuture<'a, Result<Vec<Row>, StoreError>>;
}

impl dyn Db + '_ {
    /// The first row, if any.
    pub async fn query_opt(
        &mut self,
        sql: &str,
        params: &[P<'_>],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    /// The one row a query must return.
    pub async fn query_one(&mut self, sql: &str, params: &[P<'_>]) -> Result<Row, StoreError> {
        self.query_opt(sql, params)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("no row for `{sql}`")))
    }
}

/// SQLite through rusqlite: each call runs to completion before it returns; the future is
/// only the shape the trait asks for.
pub struct SqliteDb<'c> {
    pub conn: &'c mut rusqlite::Connection,
}

impl rusqlite::ToSql for P<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            P::I(n) => ValueRef::Integer(*n),
            P::T(s) => ValueRef::Text(s.as_bytes()),
            P::Null => ValueRef::Null,
        }))
    }
}

impl SqliteDb<'_> {
    fn run_execute(&mut self, sql: &str, params: &[P<'_>]) -> Result<u64, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params.iter()))? as u64)
    }

    fn run_query(&mut self, sql: &str, params: &[P<'_>]) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match r.get_ref(i)? {
                    ValueRef::Null => V::Null,
                    ValueRef::Integer(n) => V::I(n),
                    ValueRef::Real(f) => V::F(f),
                    ValueRef::Text(t) => V::T(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => V::B(b.to_vec()),
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }
}

impl Db for SqliteDb<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [P<'a>],
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let result = self.run_execute(sql, params);
        Box::pin(std::future::ready(result))
    }

    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [P<'a>],
    ) -> BoxFuture<'a, Result<Vec<Row>, StoreError>> {
        let result = self.run_query(sql, params);
        Box::pin(std::future::ready(result))
    }
}

/// MySQL (or any sqlx connection).
pub struct SqlxDb<'c> {
    pub conn: &'c mut AnyConnection,
    pub dialect: Dialect,
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind<'q>(sql: &'q str, params: &'q [P<'q>]) -> AnyQuery<'q> {
    params.iter().fold(sqlx::query(sql), |q, p| match p {
        P::I(n) => q.bind(*n),
        P::T(s) => q.bind(*s),
        P::Null => q.bind(None::<String>),
    })
}

fn value_at(row: &AnyRow, i: usize) -> Result<V, sqlx::Error> {
    use sqlx::{any::AnyTypeInfoKind as K, ValueRef as _};
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(V::Null);
    }
    let kind = raw.type_info().kind();
    Ok(match kind {
        K::Null => V::Null,
        K::Bool => V::I(i64::from(row.try_get::<bool, _>(i)?)),
        K::SmallInt | K::Integer | K::BigInt => V::I(row.try_get::<i64, _>(i)?),
        K::Real | K::Double => V::F(row.try_get::<f64, _>(i)?),
        K::Text => V::T(row.try_get::<String, _>(i)?),
        K::Blob => V::B(row.try_get::<Vec<u8>, _>(i)?),
    })
}

impl Db for SqlxDb<'_> {
    fn dialect(&self) -> Dialect {
        self.dialect
    }

    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [P<'a>],
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            Ok(bind(sql, params)
                .execute(&mut *self.conn)
                .await?
                .rows_affected())
        })
    }

    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [P<'a>],
    ) -> BoxFuture<'a, Result<Vec<Row>, StoreError>> {
        Box::pin(async move {
            let rows = bind(sql, params).fetch_all(&mut *self.conn).await?;
            rows.iter()
                .map(|r| {
                    (0..r.columns().len())
                        .map(|i| value_at(r, i))
                        .collect::<Result<Vec<_>, _>>()
                        .map(Row)
                })
                .collect::<Result<_, _>>()
                .map_err(StoreError::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_by_position_and_type() {
        let row = Row(vec![
            V::I(7),
            V::T("a".into()),
            V::B(b"b".to_vec()),
            V::Null,
        ]);
        assert_eq!(row.i64(0).unwrap(), 7);
        assert_eq!(row.text(1).unwrap(), "a");
        assert_eq!(
            row.text(2).unwrap(),
            "b",
            "MySQL's TEXT-as-BLOB reads as text"
        );
        assert_eq!(row.opt_text(3).unwrap(), None);
        assert!(row.i64(3).is_err());
        assert!(row.i64(1).is_err());
        assert!(row.i64(9).is_err());
    }

    #[test]
    fn sqlite_statements_run_in_the_calling_thread() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut db = SqliteDb { conn: &mut conn };
        let db: &mut dyn Db = &mut db;
        let ran = async {
            db.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)", &[])
                .await
                .unwrap();
            let n = db
                .execute(
                    "INSERT INTO t (a, b) VALUES (?, ?)",
                    &[P::I(1), P::opt(Some("x"))],
                )
                .await
                .unwrap();
            assert_eq!(n, 1);
            let dup = db
                .execute("INSERT INTO t (a, b) VALUES (?, ?)", &[P::I(1), P::Null])
                .await;
            assert!(matches!(dup, Err(StoreError::Duplicate)), "{dup:?}");
            let row = db.query_one("SELECT a, b FROM t", &[]).await.unwrap();
            assert_eq!(row, Row(vec![V::I(1), V::T("x".into())]));
        };
        // Statements complete before their futures return: one poll runs it all.
        let mut ran = std::pin::pin!(ran);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(std::future::Future::poll(ran.as_mut(), &mut cx).is_ready());
    }
}
