//! What a cgroup path alone says about its owner: the container id and runtime, the Kubernetes
//! pod UID, the containerd namespace. Every runtime and cgroup driver names its
//! directories differently; this is the one place that knows them all, for v1 and v2 alike (the
//! path relative to the hierarchy root is the same in both).
//!
//! Only the last component can be a container; the pod UID may come from any ancestor. A name
//! that merely resembles a layout (a service called `docker-foo.scope`) is not taken for a
//! container unless its id has the runtime's shape, so a guess never puts one cgroup's figures
//! under another's name.

/// Which runtime a container cgroup belongs to, as far as the path tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Docker,
    Containerd,
    Crio,
    Podman,
    /// A Kubernetes container under the cgroupfs driver (`.../pod<uid>/<id>`): the directory is
    /// the bare id, whichever CRI runtime made it.
    Cri,
}

/// What a path says. Borrowed from the path: parsing runs for every cgroup on every pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathInfo<'a> {
    /// The container this cgroup is, if it is one.
    pub container: Option<(Runtime, &'a str)>,
    /// The pod this cgroup is or belongs to, as written in the path: dashes (cgroupfs driver) or
    /// underscores (systemd driver); see [`PathInfo::pod_uid`].
    pub pod_uid_raw: Option<&'a str>,
    /// The containerd namespace of a `/<namespace>/<id>` container.
    pub containerd_namespace: Option<&'a str>,
}

impl PathInfo<'_> {
    /// The pod UID with dashes, as the API server and the runtime labels write it.
    pub fn pod_uid(&self) -> Option<String> {
        self.pod_uid_raw.map(|u| u.replace('_', "-"))
    }

    /// Whether this cgroup is a pod's own cgroup (not one of its containers).
    pub fn is_pod(&self) -> bool {
        self.pod_uid_raw.is_some() && self.container.is_none()
    }
}

/// Parses `path` (relative to the hierarchy root, starting with `/`). `containerd_namespaces`
/// are the namespaces whose `/<namespace>/<id>` directories are containers: that layout has no
/// marker of its own, so only the namespaces the agent watches are trusted.
pub fn parse<'a>(path: &'a str, containerd_namespaces: &[String]) -> PathInfo<'a> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut info = PathInfo::default();
    let Some((&last, ancestors)) = parts.split_last() else {
        return info;
    };
    // The pod is the nearest ancestor (or the cgroup itself) that names one, below a kubepods
    // root: a `pod<uid>` directory elsewhere is someone else's naming.
    let in_kubepods = parts
        .first()
        .is_some_and(|p| *p == "kubepods" || *p == "kubepods.slice");
    if in_kubepods {
        info.pod_uid_raw = parts.iter().rev().find_map(|p| pod_uid_of(p));
    }
    let parent_is_pod = ancestors.last().is_some_and(|p| pod_uid_of(p).is_some());

    info.container = scoped_container(last)
        .or_else(|| {
            // cgroupfs drivers: `/docker/<id>`, `/libpod_parent/libpod-<id>`, and a CRI runtime's
            // bare id under a pod directory.
            let parent = ancestors.last().copied().unwrap_or("");
            if parent == "docker" && is_hex_id(last) {
                Some((Runtime::Docker, last))
            } else if parent == "libpod_parent" {
                last.strip_prefix("libpod-")
                    .filter(|id| is_hex_id(id))
                    .map(|id| (Runtime::Podman, id))
            } else if in_kubepods && parent_is_pod && pod_uid_of(last).is_none() {
                let id = last.strip_prefix("crio-").unwrap_or(last);
                let runtime = if id.len() < last.len() {
                    Runtime::Crio
                } else {
                    Runtime::Cri
                };
                is_runtime_id(id).then_some((runtime, id))
            } else {
                None
            }
        })
        .or_else(|| {
            // containerd without Kubernetes (`ctr run`): `/<namespace>/<id>`.
            match ancestors {
                [ns] if containerd_namespaces.iter().any(|n| n == ns) && is_runtime_id(last) => {
                    info.containerd_namespace = Some(ns);
                    Some((Runtime::Containerd, last))
                }
                _ => None,
            }
        });
    info
}

/// systemd-driver container scopes: `<prefix>-<id>.scope`.
fn scoped_container(name: &str) -> Option<(Runtime, &str)> {
    let stem = name.strip_suffix(".scope")?;
    // Monitors that live beside the container (conmon) are not the container.
    if stem.starts_with("crio-conmon-") || stem.starts_with("libpod-conmon-") {
        return None;
    }
    const PREFIXES: [(&str, Runtime); 4] = [
        ("docker-", Runtime::Docker),
        ("cri-containerd-", Runtime::Containerd),
        ("crio-", Runtime::Crio),
        ("libpod-", Runtime::Podman),
    ];
    PREFIXES.iter().find_map(|(prefix, runtime)| {
        stem.strip_prefix(prefix)
            .filter(|id| is_hex_id(id))
            .map(|id| (*runtime, id))
    })
}

/// `pod<uid>` (cgroupfs) or `kubepods[-<qos>]-pod<uid_with_underscores>.slice` (systemd).
fn pod_uid_of(name: &str) -> Option<&str> {
    let uid = match name.strip_suffix(".slice") {
        Some(stem) => stem.rsplit_once("-pod").map(|(_, uid)| uid)?,
        None => name.strip_prefix("pod")?,
    };
    (uid.len() >= 32
        && uid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_'))
    .then_some(uid)
}

/// Docker, CRI-O, Podman and Kubernetes containerd ids: 64 lowercase hex digits.
fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// containerd accepts any identifier (`ctr run ... my-task`): letters, digits, `._-`, at most
/// 76 bytes, starting with a letter or digit.
fn is_runtime_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 76
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !s.ends_with(".slice")
        && !s.ends_with(".scope")
        && !s.ends_with(".service")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1f7b20c02c4037e5c1b9ef2c299804311464a64c29112c1b7d1aa0702a63e8f4";
    const UID: &str = "0a1b2c3d-1111-2222-3333-444455556666";
    const UID_: &str = "0a1b2c3d_1111_2222_3333_444455556666";

    struct Case {
        layout: &'static str,
        path: String,
        container: Option<(Runtime, &'static str)>,
        pod: Option<&'static str>,
        ns: Option<&'static str>,
    }

    fn case(layout: &'static str, path: String) -> Case {
        Case {
            layout,
            path,
            container: None,
            pod: None,
            ns: None,
        }
    }

    /// One fixture per layout the agent must name, on either cgroup version.
    fn cases() -> Vec<Case> {
        use Runtime::*;
        vec![
            case("root", "/".into()),
            Case {
                container: Some((Docker, ID)),
                ..case("docker, cgroupfs driver", format!("/docker/{ID}"))
            },
            Case {
                container: Some((Docker, ID)),
                ..case(
                    "docker, systemd driver",
                    format!("/system.slice/docker-{ID}.scope"),
                )
            },
            Case {
                container: Some((Docker, ID)),
                ..case(
                    "docker, --cgroup-parent",
                    format!("/mygroup/docker-{ID}.scope"),
                )
            },
            Case {
                container: Some((Containerd, "ctr-x")),
                ns: Some("k8s.io"),
                ..case("containerd, ctr run", "/k8s.io/ctr-x".into())
            },
            Case {
                container: Some((Containerd, ID)),
                ns: Some("default"),
                ..case("containerd, default namespace", format!("/default/{ID}"))
            },
            case(
                "containerd layout in an unwatched namespace",
                "/other/ctr-x".into(),
            ),
            Case {
                container: Some((Containerd, ID)),
                ..case(
                    "containerd, systemd driver outside Kubernetes",
                    format!("/system.slice/cri-containerd-{ID}.scope"),
                )
            },
            case("kubepods root, cgroupfs", "/kubepods".into()),
            case("QoS class, cgroupfs", "/kubepods/burstable".into()),
            Case {
                pod: Some(UID),
                ..case(
                    "burstable pod, cgroupfs",
                    format!("/kubepods/burstable/pod{UID}"),
                )
            },
            Case {
                container: Some((Cri, ID)),
                pod: Some(UID),
                ..case(
                    "burstable container, cgroupfs",
                    format!("/kubepods/burstable/pod{UID}/{ID}"),
                )
            },
            Case {
                container: Some((Cri, "ctr-k8s")),
                pod: Some(UID),
                ..case(
                    "besteffort container with a ctr id, cgroupfs",
                    format!("/kubepods/besteffort/pod{UID}/ctr-k8s"),
                )
            },
            Case {
                pod: Some(UID),
                ..case("guaranteed pod, cgroupfs", format!("/kubepods/pod{UID}"))
            },
            Case {
                container: Some((Cri, ID)),
                pod: Some(UID),
                ..case(
                    "guaranteed container, cgroupfs",
                    format!("/kubepods/pod{UID}/{ID}"),
                )
            },
            Case {
                container: Some((Crio, ID)),
                pod: Some(UID),
                ..case(
                    "CRI-O container, cgroupfs",
                    format!("/kubepods/burstable/pod{UID}/crio-{ID}"),
                )
            },
            case("kubepods root, systemd", "/kubepods.slice".into()),
            case(
                "QoS class, systemd",
                "/kubepods.slice/kubepods-burstable.slice".into(),
            ),
            Case {
                pod: Some(UID),
                ..case(
                    "burstable pod, systemd",
                    format!(
                        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"
                    ),
                )
            },
            Case {
                container: Some((Containerd, ID)),
                pod: Some(UID),
                ..case(
                    "burstable containerd container, systemd",
                    format!(
                        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"
                    ),
                )
            },
            Case {
                pod: Some(UID),
                ..case(
                    "guaranteed pod, systemd",
                    format!("/kubepods.slice/kubepods-pod{UID_}.slice"),
                )
            },
            Case {
                container: Some((Crio, ID)),
                pod: Some(UID),
                ..case(
                    "guaranteed CRI-O container, systemd",
                    format!("/kubepods.slice/kubepods-pod{UID_}.slice/crio-{ID}.scope"),
                )
            },
            Case {
                pod: Some(UID),
                ..case(
                    "CRI-O monitor beside a container",
                    format!("/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{ID}.scope"),
                )
            },
            Case {
                container: Some((Docker, ID)),
                pod: Some(UID),
                ..case(
                    "dockershim container, systemd",
                    format!(
                        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/docker-{ID}.scope"
                    ),
                )
            },
            Case {
                container: Some((Podman, ID)),
                ..case(
                    "podman, rootful",
                    format!("/machine.slice/libpod-{ID}.scope"),
                )
            },
            Case {
                container: Some((Podman, ID)),
                ..case(
                    "podman, rootless",
                    format!(
                        "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
                    ),
                )
            },
            Case {
                container: Some((Podman, ID)),
                ..case(
                    "podman, cgroupfs manager",
                    format!("/libpod_parent/libpod-{ID}"),
                )
            },
            Case {
                ..case("systemd service", "/system.slice/cron.service".into())
            },
            Case {
                ..case(
                    "login session",
                    "/user.slice/user-1000.slice/session-3.scope".into(),
                )
            },
            case("a slice", "/system.slice".into()),
            Case {
                ..case(
                    "a unit that only looks like docker",
                    "/system.slice/docker-notanid.scope".into(),
                )
            },
            case("docker directory with a non-id", "/docker/buildkit".into()),
            case(
                "pod-like name outside kubepods",
                format!("/system.slice/pod{UID}"),
            ),
            case("a plain test cgroup", "/nodetel-test/a/b".into()),
        ]
    }

    #[test]
    fn every_layout() {
        let namespaces: Vec<String> = ["k8s.io", "moby", "default"].map(String::from).into();
        for c in cases() {
            let got = parse(&c.path, &namespaces);
            assert_eq!(got.container, c.container, "{}: {}", c.layout, c.path);
            assert_eq!(got.pod_uid().as_deref(), c.pod, "{}: {}", c.layout, c.path);
            assert_eq!(got.containerd_namespace, c.ns, "{}: {}", c.layout, c.path);
        }
    }

    #[test]
    fn pod_cgroups_are_pods() {
        let p = format!("/kubepods/burstable/pod{UID}");
        assert!(parse(&p, &[]).is_pod());
        assert!(!parse(&format!("{p}/{ID}"), &[]).is_pod());
    }

    #[test]
    fn hostile_paths_name_nothing() {
        for p in ["", "//", "/docker/../docker", "/kubepods/pod/", "/\0/x"] {
            let got = parse(p, &["k8s.io".into()]);
            assert_eq!(got.container, None, "{p:?}");
        }
    }
}
