//! A deployment: the reference started with what it needs (its links, and a MySQL or a Redis
//! when it asks), or a system that speaks the contract, attached by URL.

use std::{collections::BTreeMap, path::Path, time::Duration};

use contract::topology::Names;
use serde::{Deserialize, Serialize};

use super::{Backends, ReferenceSut, Store, SutConfig, SutError};
use crate::{
    infra::{
        services::{Mysql, Redis},
        Broker,
    },
    links::Links,
};

/// A system that speaks the contract, attached by URL instead of started by the harness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct External {
    pub base_url: String,
    /// Its topology's prefix and retry delays, for queue depths and dead letters.
    pub prefix: String,
    #[serde(with = "crate::duration::list", default)]
    pub retry_delays: Vec<Duration>,
}

/// The system under test and what was started for it.
pub struct Deployment {
    pub links: Option<Links>,
    /// The reference's processes; `None` for an external system.
    pub sut: Option<ReferenceSut>,
    pub base_url: String,
    pub names: Names,
    // Held for the deployment's life: dropping them stops private servers.
    _mysql: Option<Mysql>,
    _redis: Option<Redis>,
}

impl Deployment {
    /// Attaches to `external`, or starts the reference as `config` says on `broker`, keeping
    /// its logs, store and private servers under `dir`.
    pub async fn start(
        config: &SutConfig,
        external: Option<&External>,
        broker: &Broker,
        dir: &Path,
    ) -> Result<Deployment, SutError> {
        if let Some(ext) = external {
            let names = Names {
                prefix: ext.prefix.clone(),
                retry_delays: ext.retry_delays.clone(),
            };
            return Ok(Deployment {
                links: None,
                sut: None,
                base_url: ext.base_url.clone(),
                names,
                _mysql: None,
                _redis: None,
            });
        }
        let links = if config.via_links {
            Some(Links::start().await?)
        } else {
            None
        };
        let services = dir.join("services");
        let mysql = match config.store {
            Store::Mysql => Some(Mysql::provision(&services).await?),
            Store::Sqlite => None,
        };
        let redis = if config.redis {
            Some(Redis::provision(&services).await?)
        } else {
            None
        };
        let backends = Backends {
            amqp_url: broker.amqp_url(),
            mysql_url: mysql.as_ref().map(Mysql::url),
            redis_url: redis.as_ref().map(|r| r.url().to_string()),
        };
        tracing::info!(dir = %dir.display(), broker = %broker.describe(), "starting the system under test");
        let sut = ReferenceSut::start(config, &backends, links.as_ref(), dir).await?;
        let (base_url, names) = (sut.base_url(), sut.names.clone());
        Ok(Deployment {
            links,
            sut: Some(sut),
            base_url,
            names,
            _mysql: mysql,
            _redis: redis,
        })
    }

    /// What a report says of the system under test.
    pub fn describe(&self, config: &SutConfig, broker: &Broker) -> BTreeMap<String, String> {
        let kind = if self.sut.is_some() {
            "reference"
        } else {
            "external"
        };
        let mut info = BTreeMap::from([
            ("kind".to_string(), kind.to_string()),
            ("base_url".to_string(), self.base_url.clone()),
            ("prefix".to_string(), self.names.prefix.clone()),
            ("broker".to_string(), broker.describe()),
            (
                "links".to_string(),
                self.links.as_ref().map_or("none".into(), Links::url),
            ),
        ]);
        let delays: Vec<String> = self
            .names
            .retry_delays
            .iter()
            .map(|d| humantime::format_duration(*d).to_string())
            .collect();
        info.insert("retry_delays".into(), delays.join(","));
        if self.sut.is_some() {
            info.insert("workers".into(), config.workers.to_string());
            if config.combined {
                info.insert("layout".into(), "combined (the API runs a worker)".into());
            }
            info.insert("args".into(), config.args.join(" "));
        }
        info
    }

    /// Stops the reference's processes and deletes its topology (an external system is left
    /// as it is).
    pub async fn stop(&self) {
        if self.stop_processes().await {
            self.teardown().await;
        }
    }

    /// Stops the reference's processes (gracefully, then kill); false for an external system.
    pub async fn stop_processes(&self) -> bool {
        match &self.sut {
            Some(sut) => {
                sut.stop(Duration::from_secs(10)).await;
                true
            }
            None => false,
        }
    }

    /// Deletes the reference's topology and closes its links.
    pub async fn teardown(&self) {
        if let Some(sut) = &self.sut {
            if let Err(e) = sut.teardown().await {
                tracing::warn!(error = %e, "topology not deleted");
            }
        }
        if let Some(links) = &self.links {
            links.stop().await;
        }
    }
}
