//! The server's proxies and the operations of the API on them.
//!
//! One lock serializes every operation, as in Toxiproxy: a populate is atomic with respect to
//! the others, and toxic changes reach connections in the order they were made.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::model::{NewProxy, NewToxic, ProxyInfo, ProxyUpdate, ToxicInfo, ToxicUpdate};
use crate::proxy::{toxic_infos, Proxy};
use crate::toxic::{Stream, Toxic, ToxicKind};

/// Where a proxy listens when the request names no address.
const DEFAULT_LISTEN: &str = "127.0.0.1:0";

/// A validated [`NewProxy`].
struct Spec {
    name: String,
    listen: String,
    upstream: String,
    enabled: bool,
}

impl TryFrom<NewProxy> for Spec {
    type Error = Error;

    fn try_from(new: NewProxy) -> Result<Spec, Error> {
        Ok(Spec {
            name: non_empty(new.name).ok_or(Error::MissingField("name"))?,
            upstream: non_empty(new.upstream).ok_or(Error::MissingField("upstream"))?,
            listen: non_empty(new.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_string()),
            enabled: new.enabled.unwrap_or(true),
        })
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

fn check_toxicity(toxicity: f32) -> Result<f32, Error> {
    if (0.0..=1.0).contains(&toxicity) {
        Ok(toxicity)
    } else {
        Err(Error::BadRequestBody(format!(
            "toxicity must be between 0 and 1, not {toxicity}"
        )))
    }
}

/// Every proxy of a server.
pub(crate) struct Registry {
    proxies: Mutex<BTreeMap<String, Proxy>>,
    server: CancellationToken,
    /// Toxic ids and revisions.
    counter: AtomicU64,
}

impl Registry {
    pub(crate) fn new(server: CancellationToken) -> Registry {
        Registry {
            proxies: Mutex::new(BTreeMap::new()),
            server,
            counter: AtomicU64::new(0),
        }
    }

    fn fresh(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    async fn launch(&self, spec: Spec) -> Result<Proxy, Error> {
        let mut proxy = Proxy::new(spec.name, spec.listen, spec.upstream, self.server.clone());
        if spec.enabled {
            proxy.start().await?;
        }
        Ok(proxy)
    }

    pub(crate) async fn list(&self) -> BTreeMap<String, ProxyInfo> {
        let proxies = self.proxies.lock().await;
        proxies.iter().map(|(n, p)| (n.clone(), p.info())).collect()
    }

    pub(crate) async fn create(&self, new: NewProxy) -> Result<ProxyInfo, Error> {
        let spec = Spec::try_from(new)?;
        let mut proxies = self.proxies.lock().await;
        if proxies.contains_key(&spec.name) {
            return Err(Error::ProxyAlreadyExists);
        }
        let proxy = self.launch(spec).await?;
        let info = proxy.info();
        proxies.insert(proxy.name.clone(), proxy);
        Ok(info)
    }

    /// Creates or replaces each proxy in turn; stops at the first failure and returns the
    /// proxies handled until then with it. Nothing changes when any entry is invalid.
    pub(crate) async fn populate(&self, list: Vec<NewProxy>) -> (Vec<ProxyInfo>, Option<Error>) {
        let specs = match list
            .into_iter()
            .map(Spec::try_from)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(specs) => specs,
            Err(e) => return (Vec::new(), Some(e)),
        };
        let mut proxies = self.proxies.lock().await;
        let mut done = Vec::with_capacity(specs.len());
        for spec in specs {
            match self.replace(&mut proxies, spec).await {
                Ok(info) => done.push(info),
                Err(e) => return (done, Some(e)),
            }
        }
        (done, None)
    }

    /// Toxiproxy's rule: a proxy with the same addresses is kept as it is (toxics, state and
    /// connections); otherwise the old one is stopped and a new one takes its name.
    async fn replace(
        &self,
        proxies: &mut BTreeMap<String, Proxy>,
        spec: Spec,
    ) -> Result<ProxyInfo, Error> {
        if let Some(existing) = proxies.get(&spec.name) {
            if existing.listen == spec.listen && existing.upstream == spec.upstream {
                return Ok(existing.info());
            }
        }
        if let Some(mut old) = proxies.remove(&spec.name) {
            old.stop().await;
        }
        let proxy = self.launch(spec).await?;
        let info = proxy.info();
        proxies.insert(proxy.name.clone(), proxy);
        Ok(info)
    }

    pub(crate) async fn get(&self, name: &str) -> Result<ProxyInfo, Error> {
        let proxies = self.proxies.lock().await;
        proxies
            .get(name)
            .map(Proxy::info)
            .ok_or(Error::ProxyNotFound)
    }

    pub(crate) async fn update(&self, name: &str, update: ProxyUpdate) -> Result<ProxyInfo, Error> {
        let mut proxies = self.proxies.lock().await;
        let proxy = proxies.get_mut(name).ok_or(Error::ProxyNotFound)?;
        let listen = non_empty(update.listen).unwrap_or_else(|| proxy.listen.clone());
        let upstream = non_empty(update.upstream).unwrap_or_else(|| proxy.upstream.clone());
        let enabled = update.enabled.unwrap_or(proxy.enabled());
        if listen != proxy.listen || upstream != proxy.upstream {
            proxy.stop().await;
            proxy.listen = listen;
            proxy.upstream = upstream;
        }
        if enabled {
            proxy.start().await?;
        } else {
            proxy.stop().await;
        }
        Ok(proxy.info())
    }

    pub(crate) async fn delete(&self, name: &str) -> Result<(), Error> {
        let mut proxies = self.proxies.lock().await;
        let mut proxy = proxies.remove(name).ok_or(Error::ProxyNotFound)?;
        proxy.stop().await;
        Ok(())
    }

    /// Enables every proxy and removes every toxic.
    pub(crate) async fn reset(&self) -> Result<(), Error> {
        let mut proxies = self.proxies.lock().await;
        for proxy in proxies.values_mut() {
            proxy.start().await?;
            proxy.modify_toxics(|toxics| {
                toxics.clear();
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Stops every proxy and waits for their connections to close.
    pub(crate) async fn stop_all(&self) {
        let mut proxies = self.proxies.lock().await;
        for proxy in proxies.values_mut() {
            proxy.stop().await;
        }
    }

    pub(crate) async fn toxics(&self, proxy: &str) -> Result<Vec<ToxicInfo>, Error> {
        let proxies = self.proxies.lock().await;
        let proxy = proxies.get(proxy).ok_or(Error::ProxyNotFound)?;
        Ok(toxic_infos(&proxy.toxics()))
    }

    pub(crate) async fn toxic(&self, proxy: &str, toxic: &str) -> Result<ToxicInfo, Error> {
        let proxies = self.proxies.lock().await;
        let proxy = proxies.get(proxy).ok_or(Error::ProxyNotFound)?;
        let toxics = proxy.toxics();
        let found = toxics.iter().find(|t| t.name == toxic);
        found.map(ToxicInfo::from).ok_or(Error::ToxicNotFound)
    }

    pub(crate) async fn add_toxic(&self, proxy: &str, new: NewToxic) -> Result<ToxicInfo, Error> {
        let proxies = self.proxies.lock().await;
        let proxy = proxies.get(proxy).ok_or(Error::ProxyNotFound)?;
        let toxic = self.build_toxic(new)?;
        proxy.modify_toxics(|toxics| {
            if toxics.iter().any(|t| t.name == toxic.name) {
                return Err(Error::ToxicAlreadyExists);
            }
            let info = ToxicInfo::from(&toxic);
            toxics.push(toxic);
            Ok(info)
        })
    }

    fn build_toxic(&self, new: NewToxic) -> Result<Toxic, Error> {
        let stream: Stream = new.stream.as_deref().unwrap_or("downstream").parse()?;
        let type_name = new.kind.unwrap_or_default();
        let kind = ToxicKind::parse(&type_name, new.attributes.as_ref())?;
        let id = self.fresh();
        Ok(Toxic {
            name: non_empty(new.name).unwrap_or_else(|| format!("{type_name}_{stream}")),
            stream,
            toxicity: check_toxicity(new.toxicity.unwrap_or(1.0))?,
            kind,
            id,
            revision: id,
        })
    }

    pub(crate) async fn update_toxic(
        &self,
        proxy: &str,
        toxic: &str,
        update: ToxicUpdate,
    ) -> Result<ToxicInfo, Error> {
        let proxies = self.proxies.lock().await;
        let proxy = proxies.get(proxy).ok_or(Error::ProxyNotFound)?;
        let revision = self.fresh();
        proxy.modify_toxics(|toxics| {
            let found = toxics.iter_mut().find(|t| t.name == toxic);
            let found = found.ok_or(Error::ToxicNotFound)?;
            let kind = found.kind.updated(update.attributes.as_ref())?;
            let toxicity = match update.toxicity {
                Some(t) => check_toxicity(t)?,
                None => found.toxicity,
            };
            found.kind = kind;
            found.toxicity = toxicity;
            found.revision = revision;
            Ok(ToxicInfo::from(&*found))
        })
    }

    pub(crate) async fn remove_toxic(&self, proxy: &str, toxic: &str) -> Result<(), Error> {
        let proxies = self.proxies.lock().await;
        let proxy = proxies.get(proxy).ok_or(Error::ProxyNotFound)?;
        proxy.modify_toxics(|toxics| {
            let before = toxics.len();
            toxics.retain(|t| t.name != toxic);
            if toxics.len() == before {
                Err(Error::ToxicNotFound)
            } else {
                Ok(())
            }
        })
    }
}
