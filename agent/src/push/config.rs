//! From `--remote-write-*` flags to receivers, checked at start (a bad URL, header, TLS file
//! or label stops the agent with a clear error rather than failing every push).
use anyhow::{Context as _, bail};

use super::{
    Protocol, PushConfig, Receiver, influx,
    queue::{Queue, Store},
    spool::{self, Lost, Spool},
    target::{Proxy, Target, TargetOptions},
};
use crate::config::{RemoteWriteArgs, StorageDriverArgs};

/// `None` when no receiver is given (push off).
pub fn from_args(
    args: &RemoteWriteArgs,
    storage: &StorageDriverArgs,
    node_name: &str,
    containerd_namespaces: &[String],
) -> anyhow::Result<Option<PushConfig>> {
    let urls: Vec<&str> = args
        .urls
        .iter()
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .collect();
    let influx = influx_url(storage)?;
    if urls.is_empty() && influx.is_none() {
        return Ok(None);
    }
    let node = if node_name.is_empty() {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    } else {
        node_name.to_string()
    };
    let basic_auth = match (&args.username, &args.password_file) {
        (Some(user), Some(file)) => {
            let password = std::fs::read_to_string(file)
                .with_context(|| format!("--remote-write-password-file {}", file.display()))?;
            Some((
                user.clone(),
                password.trim_end_matches(['\r', '\n']).to_string(),
            ))
        }
        (None, None) => None,
        _ => bail!("--remote-write-username and --remote-write-password-file go together"),
    };
    let headers = args
        .headers
        .iter()
        .filter(|h| !h.trim().is_empty())
        .map(|h| {
            h.split_once(':')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .with_context(|| format!("--remote-write-header `{h}`: not `Name: value`"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let proxy = |url: &str| -> anyhow::Result<Option<Proxy>> {
        let proxy = match &args.proxy {
            Some(p) => Some(p.clone()),
            None => proxy_from_env(url, |k| std::env::var(k).ok()),
        };
        proxy
            .as_deref()
            .map(Proxy::parse)
            .transpose()
            .with_context(|| format!("proxy for {url}"))
    };
    let store = |url: &str| -> anyhow::Result<(Store, Lost)> {
        let Some(root) = &args.spool_dir else {
            return Ok((Store::Memory(Queue::new(args.queue_bytes)), Lost::default()));
        };
        let dir = spool::target_dir(root, url);
        let (spool, lost) = Spool::open(&dir, args.spool_bytes)
            .with_context(|| format!("--remote-write-spool-dir: {} for {url}", dir.display()))?;
        if !spool.is_empty() {
            tracing::info!(%url, dir = %dir.display(), batches = spool.len(), bytes = spool.bytes(), "push spool: sending what a previous run left first");
        }
        Ok((Store::Disk(spool), lost))
    };
    let mut receivers = Vec::new();
    for url in urls {
        let opts = TargetOptions {
            basic_auth: basic_auth.clone(),
            bearer_token_file: args.bearer_token_file.clone(),
            ca_file: args.ca_file.clone(),
            cert_file: args.cert_file.clone(),
            key_file: args.key_file.clone(),
            headers: headers.clone(),
            proxy: proxy(url)?,
            timeout: args.timeout,
        };
        let target =
            Target::new(url, &opts).with_context(|| format!("--remote-write-url {url}"))?;
        let (store, lost) = store(url)?;
        receivers.push(Receiver {
            target,
            protocol: Protocol::RemoteWrite,
            store,
            lost,
        });
    }
    let influx = match influx {
        Some(url) => {
            let password = match &storage.password_file {
                Some(file) => std::fs::read_to_string(file)
                    .with_context(|| format!("--storage-driver-password-file {}", file.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                None => storage.password.clone(),
            };
            let opts = TargetOptions {
                basic_auth: Some((storage.user.clone(), password)),
                ca_file: storage.ca_file.clone(),
                proxy: proxy(&url)?,
                timeout: args.timeout,
                ..TargetOptions::default()
            };
            let target = Target::new(&url, &opts)
                .with_context(|| format!("--storage-driver-host: {url}"))?;
            let (store, lost) = store(&url)?;
            receivers.push(Receiver {
                target,
                protocol: Protocol::Influx,
                store,
                lost,
            });
            Some(influx::Buffering {
                schema: influx::Schema {
                    machine: node.clone(),
                    containerd_namespaces: containerd_namespaces.to_vec(),
                },
                duration: storage.buffer_duration,
            })
        }
        None => None,
    };
    Ok(Some(PushConfig {
        receivers,
        influx,
        interval: args.interval,
        external_labels: external_labels(&args.labels, &node)?,
    }))
}

/// The InfluxDB write URL of cAdvisor's storage driver flags; `None` when no driver is asked for.
fn influx_url(storage: &StorageDriverArgs) -> anyhow::Result<Option<String>> {
    let mut influx = false;
    for d in storage
        .drivers
        .iter()
        .map(|d| d.trim())
        .filter(|d| !d.is_empty())
    {
        match d {
            "influxdb" => influx = true,
            other => bail!(
                "--storage-driver {other}: nodetel has cAdvisor's influxdb driver; for Prometheus-style receivers (and VictoriaMetrics, Mimir, Thanos) use --remote-write-url"
            ),
        }
    }
    if !influx {
        return Ok(None);
    }
    let host = storage.host.trim();
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
        bail!("--storage-driver-host `{host}`: not host:port");
    }
    if storage.secure && storage.ca_file.is_none() {
        bail!(
            "--storage-driver-secure needs --storage-driver-ca-file (the agent trusts no CA bundle by default)"
        );
    }
    let scheme = if storage.secure { "https" } else { "http" };
    let mut url = format!(
        "{scheme}://{host}/write?db={}&precision=ms",
        query_escape(&storage.db)
    );
    if !storage.retention_policy.is_empty() {
        url.push_str("&rp=");
        url.push_str(&query_escape(&storage.retention_policy));
    }
    Ok(Some(url))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `name=value` pairs, with `job=nodetel` and `instance=<node>` unless given.
fn external_labels(given: &[String], node: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut labels = Vec::new();
    for l in given.iter().filter(|l| !l.trim().is_empty()) {
        let (name, value) = l
            .split_once('=')
            .with_context(|| format!("--remote-write-label `{l}`: not `name=value`"))?;
        let name = name.trim();
        let valid = name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if name.is_empty() || !valid || name.starts_with("__") {
            bail!("--remote-write-label `{l}`: `{name}` is not a label name");
        }
        labels.push((name.to_string(), value.to_string()));
    }
    let has = |labels: &[(String, String)], n: &str| labels.iter().any(|(k, _)| k == n);
    if !has(&labels, "job") {
        labels.push(("job".into(), "nodetel".into()));
    }
    if !has(&labels, "instance") {
        labels.push(("instance".into(), node.to_string()));
    }
    Ok(labels)
}

/// The standard proxy variables for `url`: `HTTPS_PROXY` or `HTTP_PROXY` by its scheme
/// (lower-case spellings too), unless `NO_PROXY` lists its host (`*`, the host, or a domain
/// suffix with or without its leading dot).
fn proxy_from_env(url: &str, var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let uri: hyper::Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let get = |upper: &str| {
        var(upper)
            .or_else(|| var(&upper.to_ascii_lowercase()))
            .filter(|v| !v.trim().is_empty())
    };
    if let Some(no) = get("NO_PROXY") {
        for entry in no.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let domain = entry.trim_start_matches('.');
            if entry == "*" || host == domain || host.ends_with(&format!(".{domain}")) {
                return None;
            }
        }
    }
    match uri.scheme_str()? {
        "https" => get("HTTPS_PROXY"),
        _ => get("HTTP_PROXY"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_default_to_job_and_instance() {
        let l = external_labels(&["cluster=prod".into()], "node-7").expect("labels");
        assert_eq!(
            l,
            [
                ("cluster".to_string(), "prod".to_string()),
                ("job".into(), "nodetel".into()),
                ("instance".into(), "node-7".into())
            ]
        );
        let own = external_labels(&["job=nt".into(), "instance=x".into()], "n").expect("labels");
        assert_eq!(own.len(), 2);
        for bad in ["novalue", "=v", "__name__=x", "9x=1", "a-b=1"] {
            assert!(external_labels(&[bad.into()], "n").is_err(), "{bad}");
        }
    }

    fn storage(args: &[&str]) -> StorageDriverArgs {
        use clap::Parser as _;
        let mut argv = vec!["nodetel"];
        argv.extend_from_slice(args);
        crate::config::Config::try_parse_from(argv)
            .expect("flags")
            .storage_driver
    }

    #[test]
    fn cadvisor_s_storage_flags_make_the_write_url() {
        assert_eq!(influx_url(&storage(&[])).expect("off"), None);
        assert_eq!(
            influx_url(&storage(&["--storage_driver=influxdb"])).expect("defaults"),
            Some("http://localhost:8086/write?db=cadvisor&precision=ms".into())
        );
        assert_eq!(
            influx_url(&storage(&[
                "--storage-driver",
                "influxdb",
                "--storage_driver_host=db:8086",
                "--storage-driver-db=k8s metrics",
                "--storage_driver_influxdb_retention_policy=1w",
            ]))
            .expect("set"),
            Some("http://db:8086/write?db=k8s%20metrics&precision=ms&rp=1w".into())
        );
        let secure = storage(&[
            "--storage_driver=influxdb",
            "--storage_driver_secure",
            "--storage-driver-ca-file=/ca.pem",
        ]);
        assert!(secure.secure);
        assert!(
            influx_url(&secure)
                .expect("secure")
                .is_some_and(|u| u.starts_with("https://"))
        );
        for bad in [
            &["--storage_driver=bigquery"][..],
            &["--storage_driver=influxdb", "--storage_driver_secure=true"],
            &[
                "--storage_driver=influxdb",
                "--storage_driver_host=http://db:8086",
            ],
        ] {
            assert!(influx_url(&storage(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn proxy_variables_by_scheme_and_no_proxy() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let vars = env(&[
            ("HTTPS_PROXY", "http://p:3128"),
            ("http_proxy", "http://q:8080"),
            ("NO_PROXY", "localhost,.internal"),
        ]);
        assert_eq!(
            proxy_from_env("https://r.example/api/v1/write", vars).as_deref(),
            Some("http://p:3128")
        );
        assert_eq!(
            proxy_from_env("http://r.example/api/v1/write", vars).as_deref(),
            Some("http://q:8080")
        );
        assert_eq!(proxy_from_env("http://localhost:9090/", vars), None);
        assert_eq!(proxy_from_env("http://vm.internal/", vars), None);
        assert_eq!(
            proxy_from_env(
                "http://x/",
                env(&[("NO_PROXY", "*"), ("HTTP_PROXY", "http://p:1")])
            ),
            None
        );
        assert_eq!(proxy_from_env("http://x/", env(&[])), None);
    }
}
