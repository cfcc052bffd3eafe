//! Users: the seed's CRUD resource and cache subject.

use sqlx::{any::AnyRow, Row};

use super::{Store, StoreError};
use crate::{
    model::{now_ms, rfc3339, User},
    validation::ValidUser,
};

const COLUMNS: &str = "id, name, email, created_at, updated_at";

fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        created_at: rfc3339(row.try_get("created_at")?),
        updated_at: rfc3339(row.try_get("updated_at")?),
    })
}

impl Store {
    /// Creates a user; a taken email is [`StoreError::Duplicate`].
    pub async fn create_user(&self, user: &ValidUser) -> Result<User, StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO users (name, email, created_at, updated_at) VALUES (?, ?, ?, ?)")
            .bind(&user.name)
            .bind(&user.email)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // Read back by the unique email: portable, unlike last_insert_id across drivers.
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE email = ?"))
            .bind(&user.email)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        user_from_row(&row)
    }

    pub async fn get_user(&self, id: i64) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// One page of users by id, and the total count.
    pub async fn list_users(
        &self,
        page: u32,
        per_page: u32,
    ) -> Result<(Vec<User>, i64), StoreError> {
        let offset = i64::from(page.saturating_sub(1)) * i64::from(per_page);
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM users ORDER BY id LIMIT ? OFFSET ?"
        ))
        .bind(i64::from(per_page))
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let users = rows.iter().map(user_from_row).collect::<Result<_, _>>()?;
        Ok((users, total))
    }

    /// Replaces name and email; `None` when the user does not exist.
    pub async fn update_user(&self, id: i64, user: &ValidUser) -> Result<Option<User>, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE users SET name = ?, email = ?, updated_at = ? WHERE id = ?")
            .bind(&user.name)
            .bind(&user.email)
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = ?"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        if done.rows_affected() == 0 && row.is_none() {
            return Ok(None);
        }
        row.as_ref().map(user_from_row).transpose()
    }

    /// Deletes a user; false when there was none.
    pub async fn delete_user(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
