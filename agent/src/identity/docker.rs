//! The Docker resolver (and Podman's, which speaks the same API on its own socket): a full
//! listing, then the event stream, with a periodic resync for anything an event did not say.
//! Ids the collector wants are inspected at once.
//!
//! The API version is negotiated down to the daemon's (Docker 20.10 speaks 1.41). When the
//! daemon goes away, the names it gave are kept (its containers' cgroups usually outlive a
//! dockerd restart) and the resolver reconnects with backoff; the next listing replaces them.
use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use bollard::{
    Docker,
    query_parameters::{EventsOptions, ListContainersOptions},
};
use futures_util::StreamExt as _;

use super::{
    registry::{ContainerMeta, Registry, Source},
    session::{self, Reconnect},
};

/// Seconds a single API request may take.
const REQUEST_TIMEOUT_SECS: u64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("docker API request failed: {0}")]
    Api(#[from] bollard::errors::Error),
    /// The daemon closed the event stream (it is stopping or restarting).
    #[error("the event stream ended")]
    EventsEnded,
    /// Connected, but silent: stopped (SIGSTOP) or deadlocked.
    #[error("the daemon did not answer a ping within 5 s")]
    Wedged,
}

pub struct DockerResolver {
    pub registry: Arc<Registry>,
    pub source: Source,
    pub socket: PathBuf,
    pub resync: Duration,
}

impl DockerResolver {
    /// Runs until the task is aborted.
    pub async fn run(self) {
        let rc = Reconnect::new(Arc::clone(&self.registry), self.source, &self.socket);
        session::run_sessions(&self, rc, &self.socket).await
    }
}

impl session::SocketResolver for DockerResolver {
    type Error = DockerError;

    /// One connection: returns only on failure.
    async fn session(&self, rc: &mut Reconnect) -> DockerError {
        let docker = match self.connect().await {
            Ok(d) => d,
            Err(e) => return e,
        };
        // Events from one second before the listing on: nothing between the two is missed.
        let since = (std::time::SystemTime::now() - Duration::from_secs(1))
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match list(&docker).await {
            Ok(table) => self.registry.replace(self.source, table),
            Err(e) => return e,
        }
        rc.connected();

        let filters = HashMap::from([("type".to_string(), vec!["container".to_string()])]);
        let mut events = docker.events(Some(EventsOptions {
            since: Some(since.to_string()),
            until: None,
            filters: Some(filters),
        }));
        let mut wanted = self.registry.wanted_changes();
        wanted.mark_changed();
        let mut resync = tokio::time::interval(self.resync);
        resync.tick().await;
        let mut probe = tokio::time::interval(session::PROBE_EVERY);
        probe.tick().await;
        loop {
            tokio::select! {
                _ = probe.tick() => {
                    match tokio::time::timeout(session::PROBE_DEADLINE, docker.ping()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return e.into(),
                        Err(_) => return DockerError::Wedged,
                    }
                }
                event = events.next() => {
                    let event = match event {
                        Some(Ok(e)) => e,
                        Some(Err(e)) => return e.into(),
                        None => return DockerError::EventsEnded,
                    };
                    let Some(id) = event.actor.as_ref().and_then(|a| a.id.as_deref()) else {
                        continue;
                    };
                    match event.action.as_deref() {
                        Some("create" | "start" | "rename" | "update") => {
                            if let Err(e) = self.inspect(&docker, id).await {
                                return e;
                            }
                        }
                        Some("destroy") => self.registry.remove(self.source, id),
                        _ => {}
                    }
                }
                Ok(()) = wanted.changed() => {
                    for id in self.registry.take_wanted(self.source) {
                        if let Err(e) = self.inspect(&docker, &id).await {
                            return e;
                        }
                    }
                }
                _ = resync.tick() => match list(&docker).await {
                    Ok(table) => self.registry.replace(self.source, table),
                    Err(e) => return e,
                },
            }
        }
    }
}

impl DockerResolver {
    async fn connect(&self) -> Result<Docker, DockerError> {
        let path = self.socket.to_string_lossy();
        let docker =
            Docker::connect_with_unix(&path, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)?;
        let docker = docker.negotiate_version().await?;
        if self.source == Source::Docker {
            let v = docker.version().await?;
            self.registry.set_docker_version(
                v.version.unwrap_or_default(),
                v.api_version.unwrap_or_default(),
            );
            // Where its layers are (`--data-root`), for the filesystem usage walker.
            if let Some(root) = docker.info().await?.docker_root_dir
                && root.starts_with('/')
            {
                self.registry.set_docker_root(root.into());
            }
        }
        Ok(docker)
    }

    /// Looks one container up; one that is already gone is not an error.
    async fn inspect(&self, docker: &Docker, id: &str) -> Result<(), DockerError> {
        match docker.inspect_container(id, None).await {
            Ok(c) => {
                if let Some((full_id, meta)) = inspected(c) {
                    self.registry.upsert(self.source, &full_id, meta);
                }
                Ok(())
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

async fn list(docker: &Docker) -> Result<HashMap<String, Arc<ContainerMeta>>, DockerError> {
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await?;
    Ok(containers
        .into_iter()
        .filter_map(listed)
        .map(|(id, meta)| (id, Arc::new(meta)))
        .collect())
}

/// A container of Docker's listing (`GET /containers/json`): its id and what names it.
pub(crate) fn listed(c: bollard::models::ContainerSummary) -> Option<(String, ContainerMeta)> {
    let id = c.id?;
    let meta = ContainerMeta {
        name: primary_name(c.names.as_deref().unwrap_or(&[])),
        image: c.image.unwrap_or_default(),
        labels: Arc::new(sorted(c.labels)),
    };
    Some((id, meta))
}

/// Docker's answer for one container (`GET /containers/<id>/json`): its full id and names.
pub(crate) fn inspected(
    c: bollard::models::ContainerInspectResponse,
) -> Option<(String, ContainerMeta)> {
    let full_id = c.id?;
    let config = c.config.unwrap_or_default();
    let meta = ContainerMeta {
        name: c
            .name
            .as_deref()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string(),
        image: config.image.unwrap_or_default(),
        labels: Arc::new(sorted(config.labels)),
    };
    Some((full_id, meta))
}

/// A listing gives every name a container is known by, links included (`/web/db` is `db` as seen
/// from `web`); its own name is the one without a second slash.
fn primary_name(names: &[String]) -> String {
    names
        .iter()
        .find(|n| n.matches('/').count() == 1)
        .or(names.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default()
}

fn sorted(labels: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    labels.unwrap_or_default().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_without_links_or_slash() {
        let names = ["/web/db".to_string(), "/db".to_string()];
        assert_eq!(primary_name(&names), "db");
        assert_eq!(primary_name(&["/peer-x".to_string()]), "peer-x");
        assert_eq!(primary_name(&[]), "");
    }

    /// The recorded answer of Docker 20.10's `GET /containers/json` decodes into what we use.
    #[test]
    fn recorded_listing_decodes() {
        let text = include_str!("../../testdata/docker/containers_json.json");
        let list: Vec<bollard::models::ContainerSummary> =
            serde_json::from_str(text).expect("docker 20.10 listing");
        assert!(!list.is_empty());
        for c in list {
            assert!(c.id.as_deref().is_some_and(|id| id.len() == 64));
            assert!(!primary_name(c.names.as_deref().unwrap_or(&[])).is_empty());
            assert!(c.image.is_some());
        }
    }
}
