//! The containerd resolver, through containerd's own gRPC API (the one `ctr` uses; the kubelet's
//! CRI calls end up in the same metadata store, labels included). Lists the containers of each
//! watched namespace, re-lists on container events, and fetches ids the collector wants.
//!
//! containerd has no container names: like cAdvisor's containerd handler, the `name` label is
//! the container id, and Kubernetes names come from the labels the kubelet sets.
use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

use containerd_client::{
    services::v1::{
        Container, GetContainerRequest, ListContainersRequest, SubscribeRequest,
        containers_client::ContainersClient, events_client::EventsClient,
    },
    tonic::{self, Code, metadata::MetadataValue, transport::Channel},
};

use super::{
    registry::{ContainerMeta, Registry, Source},
    session::{self, Reconnect},
};

/// After an event, wait this long for the rest of a burst (a pod start is several events) and
/// list once.
const EVENT_SETTLE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("failed to connect to containerd: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("containerd request failed: {0}")]
    Request(#[from] tonic::Status),
    #[error("`{0}` is not a valid containerd namespace")]
    Namespace(String),
    #[error("the event stream ended")]
    EventsEnded,
}

pub struct ContainerdResolver {
    pub registry: Arc<Registry>,
    pub socket: PathBuf,
    pub namespaces: Vec<String>,
    pub resync: Duration,
}

impl ContainerdResolver {
    /// Runs until the task is aborted.
    pub async fn run(self) {
        let rc = Reconnect::new(Arc::clone(&self.registry), Source::Containerd, &self.socket);
        session::run_sessions(&self, rc, &self.socket).await
    }
}

impl session::SocketResolver for ContainerdResolver {
    type Error = ContainerdError;

    /// One connection: returns only on failure.
    async fn session(&self, rc: &mut Reconnect) -> ContainerdError {
        let channel = match containerd_client::connect(&self.socket).await {
            Ok(c) => c,
            Err(e) => return e.into(),
        };
        // Subscribed before the listing, so nothing created in between is missed.
        let mut events = match EventsClient::new(channel.clone())
            .subscribe(SubscribeRequest {
                filters: vec![r#"topic~="/containers/""#.to_string()],
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(e) => return e.into(),
        };
        let mut client = ContainersClient::new(channel);
        if let Err(e) = self.list_all(&mut client).await {
            return e;
        }
        rc.connected();

        let mut wanted = self.registry.wanted_changes();
        wanted.mark_changed();
        let mut resync = tokio::time::interval(self.resync);
        resync.tick().await;
        loop {
            tokio::select! {
                event = events.message() => match event {
                    Ok(Some(_)) => {
                        tokio::time::sleep(EVENT_SETTLE).await;
                        if let Err(e) = self.list_all(&mut client).await {
                            return e;
                        }
                    }
                    Ok(None) => return ContainerdError::EventsEnded,
                    Err(e) => return e.into(),
                },
                Ok(()) = wanted.changed() => {
                    for id in self.registry.take_wanted(Source::Containerd) {
                        if let Err(e) = self.get(&mut client, &id).await {
                            return e;
                        }
                    }
                }
                _ = resync.tick() => {
                    if let Err(e) = self.list_all(&mut client).await {
                        return e;
                    }
                }
            }
        }
    }
}

impl ContainerdResolver {
    async fn list_all(
        &self,
        client: &mut ContainersClient<Channel>,
    ) -> Result<(), ContainerdError> {
        let mut table = HashMap::new();
        for ns in &self.namespaces {
            let request = in_namespace(ListContainersRequest { filters: vec![] }, ns)?;
            let containers = client.list(request).await?.into_inner().containers;
            for c in containers {
                // The first watched namespace wins an id that two of them use.
                table
                    .entry(c.id.clone())
                    .or_insert_with(|| Arc::new(meta(c)));
            }
        }
        self.registry.replace(Source::Containerd, table);
        Ok(())
    }

    /// Looks one id up in every watched namespace; absent everywhere is not an error.
    async fn get(
        &self,
        client: &mut ContainersClient<Channel>,
        id: &str,
    ) -> Result<(), ContainerdError> {
        for ns in &self.namespaces {
            let request = in_namespace(GetContainerRequest { id: id.to_string() }, ns)?;
            match client.get(request).await {
                Ok(r) => {
                    if let Some(c) = r.into_inner().container {
                        self.registry.upsert(Source::Containerd, id, meta(c));
                        return Ok(());
                    }
                }
                Err(s) if s.code() == Code::NotFound => {}
                Err(s) => return Err(s.into()),
            }
        }
        Ok(())
    }
}

fn in_namespace<T>(message: T, ns: &str) -> Result<tonic::Request<T>, ContainerdError> {
    let value: MetadataValue<_> = ns
        .parse()
        .map_err(|_| ContainerdError::Namespace(ns.to_string()))?;
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("containerd-namespace", value);
    Ok(request)
}

fn meta(c: Container) -> ContainerMeta {
    ContainerMeta {
        name: c.id,
        image: c.image,
        labels: Arc::new(c.labels.into_iter().collect()),
    }
}
