//! Cache of `GET /api/v1/users/{id}` (seed 2.5): cache-aside, invalidated on update and delete.
//!
//! A cache failure never fails a request: Redis errors are logged and the store answers.

use std::time::Duration;

use crate::{config::CacheStrategy, model::User};

#[derive(Clone)]
pub enum UserCache {
    Memory(moka::future::Cache<i64, User>),
    Redis {
        conn: redis::aio::ConnectionManager,
        prefix: String,
        ttl: Duration,
    },
    Off,
}

impl UserCache {
    pub fn new(
        strategy: CacheStrategy,
        ttl: Duration,
        redis: Option<redis::aio::ConnectionManager>,
        prefix: &str,
    ) -> Self {
        match (strategy, redis) {
            (CacheStrategy::Memory, _) => UserCache::Memory(
                moka::future::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(ttl)
                    .build(),
            ),
            (CacheStrategy::Redis, Some(conn)) => UserCache::Redis {
                conn,
                prefix: prefix.to_string(),
                ttl,
            },
            _ => UserCache::Off,
        }
    }

    fn key(prefix: &str, id: i64) -> String {
        format!("{prefix}:user:{id}")
    }

    pub async fn get(&self, id: i64) -> Option<User> {
        match self {
            UserCache::Memory(c) => c.get(&id).await,
            UserCache::Redis { conn, prefix, .. } => {
                let mut conn = conn.clone();
                let raw: Result<Option<String>, _> = redis::cmd("GET")
                    .arg(Self::key(prefix, id))
                    .query_async(&mut conn)
                    .await;
                match raw {
                    Ok(Some(json)) => serde_json::from_str(&json).ok(),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "user cache read failed");
                        None
                    }
                }
            }
            UserCache::Off => None,
        }
    }

    pub async fn put(&self, user: &User) {
        match self {
            UserCache::Memory(c) => c.insert(user.id, user.clone()).await,
            UserCache::Redis { conn, prefix, ttl } => {
                let mut conn = conn.clone();
                let json = serde_json::to_string(user).expect("user serialises");
                let set: Result<(), _> = redis::cmd("SET")
                    .arg(Self::key(prefix, user.id))
                    .arg(json)
                    .arg("PX")
                    .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = set {
                    tracing::warn!(error = %e, "user cache write failed");
                }
            }
            UserCache::Off => {}
        }
    }

    pub async fn invalidate(&self, id: i64) {
        match self {
            UserCache::Memory(c) => c.invalidate(&id).await,
            UserCache::Redis { conn, prefix, .. } => {
                let mut conn = conn.clone();
                let del: Result<i64, _> = redis::cmd("DEL")
                    .arg(Self::key(prefix, id))
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = del {
                    tracing::warn!(error = %e, "user cache invalidation failed");
                }
            }
            UserCache::Off => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, name: &str) -> User {
        User {
            id,
            name: name.into(),
            email: "a@b.co".into(),
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[tokio::test]
    async fn memory_cache_serves_and_forgets() {
        let cache = UserCache::new(CacheStrategy::Memory, Duration::from_secs(60), None, "p");
        assert_eq!(cache.get(1).await, None);
        cache.put(&user(1, "Al")).await;
        assert_eq!(cache.get(1).await, Some(user(1, "Al")));
        cache.invalidate(1).await;
        assert_eq!(cache.get(1).await, None);
    }

    #[tokio::test]
    async fn off_caches_nothing() {
        let cache = UserCache::new(CacheStrategy::Off, Duration::from_secs(60), None, "p");
        cache.put(&user(1, "Al")).await;
        assert_eq!(cache.get(1).await, None);
    }
}
