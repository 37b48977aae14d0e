//! The containerd resolver, through containerd's own gRPC API (the one `ctr` uses; the kubelet's
//! CRI calls end up in the same metadata store, labels included). Lists the containers of each
//! watched namespace, re-lists on container events, and fetches ids the collector wants.
//!
//! containerd has no container names: like cAdvisor's containerd handler, the `name` label is
//! the container id, and Kubernetes names come from the labels the kubelet sets.
//!
//! At scale and when wedged: the listing is streamed (`ListStream`, one message per container),
//! since the unary `List` answer is one message under tonic's 4 MiB default and a node whose
//! container specs add up to more (50 containers can) would name nothing; a containerd without
//! `ListStream` is listed with a 64 MiB limit instead. Every call has a deadline, and a
//! `Version` call every few seconds finds a containerd that accepts connections but answers
//! nothing (SIGSTOP, a deadlock): the resolver then reports down and reconnects.
use std::{collections::HashMap, future::Future, path::PathBuf, sync::Arc, time::Duration};

use containerd_client::{
    services::v1::{
        Container, GetContainerRequest, ListContainersRequest, SubscribeRequest,
        containers_client::ContainersClient, events_client::EventsClient,
        version_client::VersionClient,
    },
    tonic::{self, Code, metadata::MetadataValue, transport::Channel},
};

use super::{
    registry::{ContainerMeta, Registry, Source},
    session::{self, Reconnect},
};

/// After an event, events keep coming for this long at most (a pod start is several) before
/// one listing covers them all.
const EVENT_SETTLE: Duration = Duration::from_millis(100);
/// Any one call (connect, each listed container, a lookup, the probe).
const CALL_DEADLINE: Duration = session::PROBE_DEADLINE;
/// The unary `List` fallback's answer limit (containerd before `ListStream`).
const LIST_MESSAGE_LIMIT: usize = 64 * 1024 * 1024;

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
    #[error("containerd did not answer {0} within 5 s")]
    Deadline(&'static str),
}

/// `call` within [`CALL_DEADLINE`].
async fn within<T, E>(
    what: &'static str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, ContainerdError>
where
    ContainerdError: From<E>,
{
    match tokio::time::timeout(CALL_DEADLINE, call).await {
        Ok(r) => r.map_err(ContainerdError::from),
        Err(_) => Err(ContainerdError::Deadline(what)),
    }
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
        let channel = match within("the connection", containerd_client::connect(&self.socket)).await
        {
            Ok(c) => c,
            Err(e) => return e,
        };
        // Subscribed before the listing, so nothing created in between is missed. containerd
        // sends the stream's headers only with its first event, so the subscription cannot be
        // awaited here (on a quiet node it would wait for ever): a task holds it and passes
        // each event on. It ends with this session.
        let (events_tx, mut events) = tokio::sync::mpsc::channel(EVENTS_QUEUED);
        let _forward = AbortOnDrop(tokio::spawn(forward_events(channel.clone(), events_tx)));
        tokio::task::yield_now().await;
        let mut version = VersionClient::new(channel.clone());
        let mut client =
            ContainersClient::new(channel).max_decoding_message_size(LIST_MESSAGE_LIMIT);
        if let Err(e) = self.list_all(&mut client).await {
            return e;
        }
        rc.connected();

        let mut wanted = self.registry.wanted_changes();
        wanted.mark_changed();
        let mut resync = tokio::time::interval(self.resync);
        resync.tick().await;
        let mut probe = tokio::time::interval(session::PROBE_EVERY);
        probe.tick().await;
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(Ok(())) => {
                        // One listing for the whole burst.
                        let settle = tokio::time::sleep(EVENT_SETTLE);
                        tokio::pin!(settle);
                        loop {
                            tokio::select! {
                                _ = &mut settle => break,
                                more = events.recv() => match more {
                                    Some(Ok(())) => {}
                                    Some(Err(e)) => return e,
                                    None => return ContainerdError::EventsEnded,
                                },
                            }
                        }
                        if let Err(e) = self.list_all(&mut client).await {
                            return e;
                        }
                    }
                    Some(Err(e)) => return e,
                    None => return ContainerdError::EventsEnded,
                },
                _ = probe.tick() => {
                    if let Err(e) = within("a version probe", version.version(())).await {
                        return e;
                    }
                }
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
            for c in list_namespace(client, ns).await? {
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
            match within("a container lookup", client.get(request)).await {
                Ok(r) => {
                    if let Some(c) = r.into_inner().container {
                        self.registry.upsert(Source::Containerd, id, meta(c));
                        return Ok(());
                    }
                }
                Err(ContainerdError::Request(s)) if s.code() == Code::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Events waiting for the session; beyond this a burst is dropped (a listing is due anyway).
const EVENTS_QUEUED: usize = 64;

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Subscribes to container events and passes on that one came (or why the stream ended).
async fn forward_events(
    channel: Channel,
    tx: tokio::sync::mpsc::Sender<Result<(), ContainerdError>>,
) {
    let request = SubscribeRequest {
        filters: vec![r#"topic~="/containers/""#.to_string()],
    };
    let mut stream = match EventsClient::new(channel).subscribe(request).await {
        Ok(r) => r.into_inner(),
        Err(e) => {
            let _ = tx.send(Err(e.into())).await;
            return;
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(_)) => {
                if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) = tx.try_send(Ok(()))
                {
                    return;
                }
            }
            Ok(None) => {
                let _ = tx.send(Err(ContainerdError::EventsEnded)).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        }
    }
}

/// Every container of one namespace: streamed, one message each; unary where containerd has no
/// `ListStream`.
async fn list_namespace(
    client: &mut ContainersClient<Channel>,
    ns: &str,
) -> Result<Vec<Container>, ContainerdError> {
    let request = in_namespace(ListContainersRequest { filters: vec![] }, ns)?;
    let mut stream = match within("the container listing", client.list_stream(request)).await {
        Ok(r) => r.into_inner(),
        Err(ContainerdError::Request(s)) if s.code() == Code::Unimplemented => {
            let request = in_namespace(ListContainersRequest { filters: vec![] }, ns)?;
            return Ok(within("the container listing", client.list(request))
                .await?
                .into_inner()
                .containers);
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    while let Some(m) = within("the container listing", stream.message()).await? {
        out.extend(m.container);
    }
    Ok(out)
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
