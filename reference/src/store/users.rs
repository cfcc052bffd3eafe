//! Users: the seed's CRUD resource and cache subject.

use super::{
    db::{Db, Row, P},
    group::Op,
    Store, StoreError,
};
use crate::{
    model::{now_ms, rfc3339, User},
    validation::ValidUser,
};

const COLUMNS: &str = "id, name, email, created_at, updated_at";

fn user_from_row(row: &Row) -> Result<User, StoreError> {
    Ok(User {
        id: row.i64(0)?,
        name: row.text(1)?,
        email: row.text(2)?,
        created_at: rfc3339(row.i64(3)?),
        updated_at: rfc3339(row.i64(4)?),
    })
}

async fn user_by_id(db: &mut dyn Db, id: i64) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = ?");
    db.query_opt(&sql, &[P::I(id)])
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
}

/// Creates a user; a taken email is [`StoreError::Duplicate`].
struct CreateUser(ValidUser);

impl Op for CreateUser {
    type Out = User;

    async fn apply(&self, db: &mut dyn Db) -> Result<User, StoreError> {
        let now = now_ms();
        db.execute(
            "INSERT INTO users (name, email, created_at, updated_at) VALUES (?, ?, ?, ?)",
            &[
                P::T(&self.0.name),
                P::T(&self.0.email),
                P::I(now),
                P::I(now),
            ],
        )
        .await?;
        // Read back by the unique email: portable, unlike last_insert_id across drivers.
        let sql = format!("SELECT {COLUMNS} FROM users WHERE email = ?");
        user_from_row(&db.query_one(&sql, &[P::T(&self.0.email)]).await?)
    }
}

struct GetUser(i64);

impl Op for GetUser {
    type Out = Option<User>;

    async fn apply(&self, db: &mut dyn Db) -> Result<Option<User>, StoreError> {
        user_by_id(db, self.0).await
    }
}

struct ListUsers {
    page: u32,
    per_page: u32,
}

impl Op for ListUsers {
    type Out = (Vec<User>, i64);

    async fn apply(&self, db: &mut dyn Db) -> Result<(Vec<User>, i64), StoreError> {
        let offset = i64::from(self.page.saturating_sub(1)) * i64::from(self.per_page);
        let sql = format!("SELECT {COLUMNS} FROM users ORDER BY id LIMIT ? OFFSET ?");
        let rows = db
            .query(&sql, &[P::I(i64::from(self.per_page)), P::I(offset)])
            .await?;
        let total = db
            .query_one("SELECT COUNT(*) FROM users", &[])
            .await?
            .i64(0)?;
        let users = rows.iter().map(user_from_row).collect::<Result<_, _>>()?;
        Ok((users, total))
    }
}

struct UpdateUser {
    id: i64,
    user: ValidUser,
}

impl Op for UpdateUser {
    type Out = Option<User>;

    async fn apply(&self, db: &mut dyn Db) -> Result<Option<User>, StoreError> {
        db.execute(
            "UPDATE users SET name = ?, email = ?, updated_at = ? WHERE id = ?",
            &[
                P::T(&self.user.name),
                P::T(&self.user.email),
                P::I(now_ms()),
                P::I(self.id),
            ],
        )
        .await?;
        user_by_id(db, self.id).await
    }
}

struct DeleteUser(i64);

impl Op for DeleteUser {
    type Out = bool;

    async fn apply(&self, db: &mut dyn Db) -> Result<bool, StoreError> {
        let n = db
            .execute("DELETE FROM users WHERE id = ?", &[P::I(self.0)])
            .await?;
        Ok(n > 0)
    }
}

impl Store {
    /// Creates a user; a taken email is [`StoreError::Duplicate`].
    pub async fn create_user(&self, user: &ValidUser) -> Result<User, StoreError> {
        self.write(CreateUser(user.clone())).await
    }

    pub async fn get_user(&self, id: i64) -> Result<Option<User>, StoreError> {
        self.read(GetUser(id)).await
    }

    /// One page of users by id, and the total count.
    pub async fn list_users(
        &self,
        page: u32,
        per_page: u32,
    ) -> Result<(Vec<User>, i64), StoreError> {
        self.read(ListUsers { page, per_page }).await
    }

    /// Replaces name and email; `None` when the user does not exist.
    pub async fn update_user(&self, id: i64, user: &ValidUser) -> Result<Option<User>, StoreError> {
        let user = user.clone();
        self.write(UpdateUser { id, user }).await
    }

    /// Deletes a user; false when there was none.
    pub async fn delete_user(&self, id: i64) -> Result<bool, StoreError> {
        self.write(DeleteUser(id)).await
    }
}
