//! Cache of `GET /api/v1/users/{id}` (seed 2.5): cache-aside, invalidated on update and delete.
//!
//! Plain cache-aside has a stale-fill race: a reader misses, reads the old row, a writer
//! updates the row and invalidates (nothing to delete yet), then the reader fills the cache
//! with the old row, which then serves until its TTL. Here a reader takes a [`FillTicket`]
//! before its store read, and the fill is dropped if an invalidation came in between: a
//! generation number that invalidations bump (per process for the memory cache, per user in
//! Redis, compared and set atomically by a script).
//!
//! What is cached is the response body (the envelope's bytes), so a hit costs no
//! serialisation. A cache failure never fails a request: Redis errors are logged and the store
//! answers.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;

use crate::config::CacheStrategy;

#[derive(Clone)]
pub enum UserCache {
    Memory(Arc<MemoryCache>),
    Redis {
        conn: redis::aio::ConnectionManager,
        prefix: String,
        ttl: Duration,
    },
    Off,
}

pub struct MemoryCache {
    users: moka::future::Cache<i64, Bytes>,
    /// Bumped by every invalidation; a fill whose ticket is older is dropped.
    generation: tokio::sync::Mutex<u64>,
}

/// Proof of what a reader saw before its store read; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillTicket(u64);

/// Sets the user if the generation is still the ticket's: KEYS[1] user, KEYS[2] generation,
/// ARGV[1] the response body, ARGV[2] ticket, ARGV[3] TTL in ms.
const FILL_SCRIPT: &str = r"
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1";

/// Deletes the user and bumps its generation, which lives a while longer than any fill can
/// take: KEYS[1] user, KEYS[2] generation, ARGV[1] generation TTL in ms.
const INVALIDATE_SCRIPT: &str = r"
redis.call('DEL', KEYS[1])
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1";

impl UserCache {
    pub fn new(
        strategy: CacheStrategy,
        ttl: Duration,
        redis: Option<redis::aio::ConnectionManager>,
        prefix: &str,
    ) -> Self {
        match (strategy, redis) {
            (CacheStrategy::Memory, _) => UserCache::Memory(Arc::new(MemoryCache {
                users: moka::future::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(ttl)
                    .build(),
                generation: tokio::sync::Mutex::new(0),
            })),
            (CacheStrategy::Redis, Some(conn)) => UserCache::Redis {
                conn,
                prefix: prefix.to_string(),
                ttl,
            },
            _ => UserCache::Off,
        }
    }

    fn key(prefix: &str, id: i64) -> String {
        format!("{prefix}:user-body:{id}")
    }

    fn generation_key(prefix: &str, id: i64) -> String {
        format!("{prefix}:user-body:{id}:gen")
    }

    /// The cached response body of user `id`.
    pub async fn get(&self, id: i64) -> Option<Bytes> {
        match self {
            UserCache::Memory(c) => c.users.get(&id).await,
            UserCache::Redis { conn, prefix, .. } => {
                let raw: Option<Vec<u8>> = redis_call(
                    conn,
                    redis::cmd("GET").arg(Self::key(prefix, id)),
                    "user cache read",
                )
                .await
                .flatten();
                raw.map(Bytes::from)
            }
            UserCache::Off => None,
        }
    }

    /// Taken before reading user `id` from the store, for [`UserCache::fill`].
    pub async fn ticket(&self, id: i64) -> FillTicket {
        match self {
            UserCache::Memory(c) => FillTicket(*c.generation.lock().await),
            UserCache::Redis { conn, prefix, .. } => {
                let generation: Option<Option<u64>> = redis_call(
                    conn,
                    redis::cmd("GET").arg(Self::generation_key(prefix, id)),
                    "user cache generation read",
                )
                .await;
                // Unreadable: a ticket no generation matches, so the fill is skipped.
                FillTicket(generation.map_or(u64::MAX, |g| g.unwrap_or(0)))
            }
            UserCache::Off => FillTicket(0),
        }
    }

    /// Caches user `id`'s response `body` as read from the store, unless it was invalidated
    /// since `ticket`.
    pub async fn fill(&self, id: i64, body: &Bytes, ticket: FillTicket) {
        match self {
            UserCache::Memory(c) => {
                let generation = c.generation.lock().await;
                if *generation == ticket.0 {
                    c.users.insert(id, body.clone()).await;
                }
            }
            UserCache::Redis { conn, prefix, ttl } => {
                let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                let mut script = redis::cmd("EVAL");
                script
                    .arg(FILL_SCRIPT)
                    .arg(2)
                    .arg(Self::key(prefix, id))
                    .arg(Self::generation_key(prefix, id))
                    .arg(body.as_ref())
                    .arg(ticket.0)
                    .arg(ttl_ms);
                let _: Option<i64> = redis_call(conn, &script, "user cache write").await;
            }
            UserCache::Off => {}
        }
    }

    pub async fn invalidate(&self, id: i64) {
        match self {
            UserCache::Memory(c) => {
                let mut generation = c.generation.lock().await;
                *generation += 1;
                c.users.invalidate(&id).await;
            }
            UserCache::Redis { conn, prefix, ttl } => {
                // Longer than any store read a ticket can span, and than a cached entry lives.
                let keep_ms = u64::try_from(ttl.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(60_000)
                    .saturating_mul(2);
                let mut script = redis::cmd("EVAL");
                script
                    .arg(INVALIDATE_SCRIPT)
                    .arg(2)
                    .arg(Self::key(prefix, id))
                    .arg(Self::generation_key(prefix, id))
                    .arg(keep_ms);
                let _: Option<i64> = redis_call(conn, &script, "user cache invalidation").await;
            }
            UserCache::Off => {}
        }
    }
}

/// Runs a Redis command; a failure is logged as `what` and yields `None`.
async fn redis_call<T: redis::FromRedisValue>(
    conn: &redis::aio::ConnectionManager,
    cmd: &redis::Cmd,
    what: &str,
) -> Option<T> {
    let mut conn = conn.clone();
    match cmd.query_async(&mut conn).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, "{what} failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, name: &str) -> Bytes {
        Bytes::from(format!(
            r#"{{"code":"OK","data":{{"id":{id},"name":"{name}"}}}}"#
        ))
    }

    /// A reader takes its ticket and reads the old row; a writer updates and invalidates; the
    /// reader's fill must not land. A reader that starts afterwards fills.
    async fn a_fill_that_raced_an_invalidation_is_dropped(cache: &UserCache, id: i64) {
        let ticket = cache.ticket(id).await;
        cache.invalidate(id).await;
        cache.fill(id, &user(id, "old"), ticket).await;
        assert_eq!(cache.get(id).await, None, "the stale row was not cached");
        let ticket = cache.ticket(id).await;
        cache.fill(id, &user(id, "new"), ticket).await;
        assert_eq!(cache.get(id).await, Some(user(id, "new")));
        cache.invalidate(id).await;
        assert_eq!(cache.get(id).await, None);
    }

    #[tokio::test]
    async fn memory_cache_drops_a_stale_fill() {
        let cache = UserCache::new(CacheStrategy::Memory, Duration::from_secs(60), None, "p");
        a_fill_that_raced_an_invalidation_is_dropped(&cache, 1).await;
    }

    /// A Redis cache against `REDIS_URL` (default 127.0.0.1:6379), under a unique prefix; its
    /// connection and prefix are returned for [`forget`].
    async fn redis_cache() -> (UserCache, redis::aio::ConnectionManager, String) {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let client = redis::Client::open(url).unwrap();
        let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
        let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
        let cache = UserCache::new(
            CacheStrategy::Redis,
            Duration::from_secs(60),
            Some(conn.clone()),
            &prefix,
        );
        (cache, conn, prefix)
    }

    /// Deletes what the test left in Redis for users `ids`.
    async fn forget(conn: &redis::aio::ConnectionManager, prefix: &str, ids: &[i64]) {
        let mut cleanup = redis::cmd("DEL");
        for &id in ids {
            cleanup
                .arg(UserCache::key(prefix, id))
                .arg(UserCache::generation_key(prefix, id));
        }
        let _: Option<i64> = redis_call(conn, &cleanup, "cleanup").await;
    }

    #[tokio::test]
    async fn redis_cache_drops_a_stale_fill() {
        let (cache, conn, prefix) = redis_cache().await;
        a_fill_that_raced_an_invalidation_is_dropped(&cache, 7).await;
        forget(&conn, &prefix, &[7]).await;
    }

    /// Redis keeps a generation per user, so a write to one user does not cost another user's
    /// concurrent read its fill (the hit rate of every other user under a stream of updates).
    #[tokio::test]
    async fn redis_invalidation_drops_only_that_users_fills() {
        let (cache, conn, prefix) = redis_cache().await;
        let ticket = cache.ticket(8).await;
        cache.invalidate(9).await;
        cache.fill(8, &user(8, "Bo"), ticket).await;
        assert_eq!(cache.get(8).await, Some(user(8, "Bo")));
        forget(&conn, &prefix, &[8, 9]).await;
    }

    #[tokio::test]
    async fn off_caches_nothing() {
        let cache = UserCache::new(CacheStrategy::Off, Duration::from_secs(60), None, "p");
        let ticket = cache.ticket(1).await;
        cache.fill(1, &user(1, "Al"), ticket).await;
        assert_eq!(cache.get(1).await, None);
    }
}
