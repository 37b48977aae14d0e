//! From `--remote-write-*` flags to receivers, checked at start (a bad URL, header, TLS file
//! or label stops the agent with a clear error rather than failing every push).
use anyhow::{Context as _, bail};

use super::{
    PushConfig, Receiver,
    queue::{Queue, Store},
    spool::{self, Lost, Spool},
    target::{Proxy, Target, TargetOptions},
};
use crate::config::RemoteWriteArgs;

/// `None` when no URL is given (push off).
pub fn from_args(args: &RemoteWriteArgs, node_name: &str) -> anyhow::Result<Option<PushConfig>> {
    let urls: Vec<&str> = args
        .urls
        .iter()
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Ok(None);
    }
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
    let mut receivers = Vec::new();
    for url in urls {
        let proxy = match &args.proxy {
            Some(p) => Some(p.clone()),
            None => proxy_from_env(url, |k| std::env::var(k).ok()),
        };
        let opts = TargetOptions {
            basic_auth: basic_auth.clone(),
            bearer_token_file: args.bearer_token_file.clone(),
            ca_file: args.ca_file.clone(),
            cert_file: args.cert_file.clone(),
            key_file: args.key_file.clone(),
            headers: headers.clone(),
            proxy: proxy
                .as_deref()
                .map(Proxy::parse)
                .transpose()
                .with_context(|| format!("proxy for {url}"))?,
            timeout: args.timeout,
        };
        let target =
            Target::new(url, &opts).with_context(|| format!("--remote-write-url {url}"))?;
        let (store, lost) = match &args.spool_dir {
            Some(root) => {
                let dir = spool::target_dir(root, url);
                let (spool, lost) = Spool::open(&dir, args.spool_bytes).with_context(|| {
                    format!("--remote-write-spool-dir: {} for {url}", dir.display())
                })?;
                if !spool.is_empty() {
                    tracing::info!(%url, dir = %dir.display(), batches = spool.len(), bytes = spool.bytes(), "remote write spool: sending what a previous run left first");
                }
                (Store::Disk(spool), lost)
            }
            None => (Store::Memory(Queue::new(args.queue_bytes)), Lost::default()),
        };
        receivers.push(Receiver {
            target,
            store,
            lost,
        });
    }
    Ok(Some(PushConfig {
        receivers,
        interval: args.interval,
        external_labels: external_labels(&args.labels, node_name)?,
    }))
}

/// `name=value` pairs, with `job=nodetel` and `instance=<node>` unless given.
fn external_labels(given: &[String], node_name: &str) -> anyhow::Result<Vec<(String, String)>> {
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
        let node = if node_name.is_empty() {
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        } else {
            node_name.to_string()
        };
        labels.push(("instance".into(), node));
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
