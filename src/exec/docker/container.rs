//! How a sandbox container is made: every hardening option in one place, and the labels that let
//! a later start find what an earlier instance left behind.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, ResourcesUlimits};
use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use bollard::Docker;

use crate::policy::Limits;

/// Label keys, all under the `execbox.` prefix.
pub const LABEL_INSTANCE: &str = "execbox.instance";
pub const LABEL_SHAPE: &str = "execbox.shape";
pub const LABEL_MANAGED: &str = "execbox.managed";
/// On a sandbox's long-lived container: the sandbox id. Such containers outlive a graceful stop
/// and are left alone by [`sweep`]; the sandbox backend reconciles them at start.
pub const LABEL_SANDBOX: &str = "execbox.sandbox";

/// On every container: the uid (= gid) its programs run as, the container's own from the
/// service's allocator (no name needed: the images need not have it in /etc/passwd). A
/// sandbox's container gets its uid back from this label after a restart.
pub const LABEL_UID: &str = "execbox.uid";

/// The uid of the engine's exec wrapper for reads of the container's own state; no container
/// process runs as it.
pub const WAITER_UID: u32 = 65533;

/// Where the supervisor finds its pieces inside a container.
pub const SUPERVISOR_BINARY: &str = "/.execbox/execbox";
pub const RUN_DIR: &str = "/.execbox/run";
/// The supervisor's socket, in the run dir.
pub const SOCKET: &str = "sup.sock";

/// The supervisor's own share of a container's pids limit (its threads, a call's pid-namespace
/// init, a context's and a background process's).
const SUPERVISOR_TASKS: i64 = 16;
/// The supervisor's own share of a container's memory: a call's program is held to the call's
/// limit by the call's cgroup below the container's.
const SUPERVISOR_MEMORY: i64 = 32 << 20;
/// The supervisor serves many connections at once; each program gets the policy's own limit.
const SUPERVISOR_OPEN_FILES: i64 = 4096;

/// The capabilities the supervisor keeps (its programs drop every one when they setuid): a new
/// pid namespace and /proc per call (SYS_ADMIN), becoming the sandbox user (SETUID, SETGID),
/// files of the work dir whatever their owner and mode (CHOWN, FOWNER, DAC_OVERRIDE), and
/// killing a call's processes (KILL).
const SUPERVISOR_CAPS: &[&str] = &[
    "SYS_ADMIN",
    "SETUID",
    "SETGID",
    "CHOWN",
    "FOWNER",
    "DAC_OVERRIDE",
    "KILL",
];

/// What a supervised container mounts from the host.
#[derive(Debug, Clone)]
pub struct Mounts {
    /// The service's own binary, mounted read-only: the supervisor.
    pub binary: std::path::PathBuf,
    /// A directory only root can enter, holding the supervisor's socket.
    pub run_dir: std::path::PathBuf,
    /// The work dir on the host (a sandbox's); None: a tmpfs of the shape's disk size.
    pub work: Option<std::path::PathBuf>,
    /// The PATH a program's argv[0] is resolved in.
    pub path: String,
}

/// The `user` of an exec as `uid`.
pub fn user(uid: u32) -> String {
    format!("{uid}:{uid}")
}

/// What a container is made for: containers of one shape are interchangeable in the pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shape {
    pub image: String,
    pub limits: Limits,
    pub open_files: u64,
    /// An OCI runtime other than the engine's default (e.g. `runsc`).
    pub runtime: Option<String>,
    /// CPU quota in billionths of a CPU.
    pub nano_cpus: i64,
}

impl Shape {
    /// A short stable name for labels and logs.
    pub fn key(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        format!("{:016x}", h.finish())
    }
}

/// The create body: no network, read-only root, size-limited tmpfs /tmp (and /work, unless the
/// work dir comes from the host), only the capabilities the supervisor needs, no-new-privileges,
/// an init, memory = memory+swap, CPU quota, pids limit, ulimits. The entrypoint is the
/// supervisor (execbox's own binary, mounted read-only), which runs the programs as `uid` and
/// answers on its socket in the run dir.
pub fn create_body(
    shape: &Shape,
    instance: &str,
    uid: u32,
    mounts: &Mounts,
) -> ContainerCreateBody {
    let l = &shape.limits;
    let gvisor = super::gvisor::is_gvisor(shape.runtime.as_deref());
    // Under gVisor there is no call cgroup: the container's limit is the program's (and gVisor's).
    let mem = l.memory_bytes as i64 + if gvisor { 0 } else { SUPERVISOR_MEMORY };
    let ulimit = |name: &str, soft: i64, hard: i64| ResourcesUlimits {
        name: Some(name.into()),
        soft: Some(soft),
        hard: Some(hard),
    };
    let tmpfs = |mode: &str| {
        format!(
            "rw,exec,nosuid,nodev,size={},uid={uid},gid={uid},mode={mode}",
            l.disk_bytes
        )
    };
    let mut tmpfs_mounts = HashMap::from([("/tmp".to_string(), tmpfs("1777"))]);
    let mut binds = vec![
        format!("{}:{SUPERVISOR_BINARY}:ro", mounts.binary.display()),
        format!("{}:{RUN_DIR}", mounts.run_dir.display()),
    ];
    match &mounts.work {
        Some(dir) => binds.push(format!("{}:/work", dir.display())),
        None => {
            tmpfs_mounts.insert("/work".to_string(), tmpfs("0755"));
        }
    }
    let host = HostConfig {
        network_mode: Some("none".into()),
        memory: Some(mem),
        memory_swap: Some(mem),
        nano_cpus: Some(shape.nano_cpus),
        pids_limit: Some(l.pids as i64 + SUPERVISOR_TASKS),
        readonly_rootfs: Some(true),
        tmpfs: Some(tmpfs_mounts),
        binds: Some(binds),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: Some(SUPERVISOR_CAPS.iter().map(|c| c.to_string()).collect()),
        security_opt: Some(vec![
            "no-new-privileges".into(),
            format!("seccomp={}", super::seccomp_profile::supervisor_profile()),
        ]),
        init: Some(true),
        ulimits: Some(vec![
            ulimit(
                "nofile",
                SUPERVISOR_OPEN_FILES.max(shape.open_files as i64),
                SUPERVISOR_OPEN_FILES.max(shape.open_files as i64),
            ),
            // No fsize: the supervisor writes files for the service and sets each program's own
            // (a compile step's may exceed the sandbox's; raising a hard limit needs a
            // capability the supervisor does not have). The work dir and /tmp are bounded.
            ulimit("core", 0, 0),
        ]),
        runtime: shape.runtime.clone(),
        ipc_mode: Some("private".into()),
        ..Default::default()
    };
    let entrypoint = [
        SUPERVISOR_BINARY,
        "__supervisor",
        "--socket",
        &format!("{RUN_DIR}/{SOCKET}"),
        "--work",
        "/work",
        "--uid",
        &uid.to_string(),
        "--gid",
        &uid.to_string(),
        "--path",
        &mounts.path,
    ]
    .map(String::from)
    .to_vec();
    let mut body = ContainerCreateBody {
        image: Some(shape.image.clone()),
        entrypoint: Some(entrypoint),
        cmd: Some(vec![]),
        user: Some("0:0".into()),
        working_dir: Some("/work".into()),
        network_disabled: Some(true),
        hostname: Some("sandbox".into()),
        env: Some(vec![]),
        labels: Some(HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_INSTANCE.to_string(), instance.to_string()),
            (LABEL_SHAPE.to_string(), shape.key()),
            (LABEL_UID.to_string(), uid.to_string()),
        ])),
        host_config: Some(host),
        ..Default::default()
    };
    // gVisor counts tasks and applies seccomp its own way.
    if gvisor {
        super::gvisor::adjust(&mut body, l);
    }
    body
}

/// Every container (running or not) labelled with this instance.
async fn list_labelled(
    docker: &Docker,
    instance: &str,
) -> Result<Vec<bollard::models::ContainerSummary>, bollard::errors::Error> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_INSTANCE}={instance}")],
    )]);
    docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
}

/// A sandbox's long-lived container, as the engine lists it.
#[derive(Debug, Clone)]
pub struct SandboxContainer {
    pub id: String,
    pub sandbox: String,
    pub running: bool,
    pub labels: HashMap<String, String>,
}

/// This instance's sandbox containers (running or not).
pub async fn list_sandboxes(
    docker: &Docker,
    instance: &str,
) -> Result<Vec<SandboxContainer>, bollard::errors::Error> {
    Ok(list_labelled(docker, instance)
        .await?
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.unwrap_or_default();
            let sandbox = labels.get(LABEL_SANDBOX)?.clone();
            let running = c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING);
            Some(SandboxContainer {
                id: c.id?,
                sandbox,
                running,
                labels,
            })
        })
        .collect())
}

/// Create and start a container from `body`, its socket memory capped before any program
/// arrives; nothing is left behind when either fails.
pub async fn create_started(
    docker: &Docker,
    body: ContainerCreateBody,
) -> Result<String, bollard::errors::Error> {
    let memory = body
        .host_config
        .as_ref()
        .and_then(|h| h.memory)
        .unwrap_or(0);
    let created = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await?;
    if let Err(e) = docker
        .start_container(
            &created.id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
    {
        remove(docker, &created.id).await;
        return Err(e);
    }
    if memory > 0 {
        if let Err(err) = cap_socket_memory(&created.id, memory as u64) {
            remove(docker, &created.id).await;
            return Err(bollard::errors::Error::IOError { err });
        }
    }
    Ok(created.id)
}

/// How a container's kernel socket buffers are bounded, as far as this host can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketMemory {
    /// cgroup v1: `memory.kmem.tcp.limit_in_bytes` of the container set to its memory limit.
    KmemTcpLimit,
    /// cgroup v2 charges socket buffers to `memory.max` itself.
    ChargedToMemoryMax,
    /// The container's cgroup is not on this host's cgroupfs (a remote engine).
    Unknown,
}

/// The host's hierarchy, as containers of a local engine get it.
pub fn socket_memory_mode() -> SocketMemory {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        SocketMemory::ChargedToMemoryMax
    } else if std::path::Path::new("/sys/fs/cgroup/memory/memory.kmem.tcp.limit_in_bytes").exists()
    {
        SocketMemory::KmemTcpLimit
    } else {
        SocketMemory::Unknown
    }
}

/// cgroup v1 does not charge TCP buffers to the memory limit: a run limited to 64 MiB could pin
/// hundreds of MiB of the host's kernel memory in its own network namespace. The engine no
/// longer sets kernel TCP memory, so the host sets the container's `kmem.tcp` limit to its
/// memory limit, right after start and before any exec (sockets are charged from their creation
/// on). On v2 nothing is needed: socket memory counts against `memory.max`.
fn cap_socket_memory(id: &str, bytes: u64) -> std::io::Result<SocketMemory> {
    for dir in [
        format!("/sys/fs/cgroup/memory/docker/{id}"),
        format!("/sys/fs/cgroup/memory/system.slice/docker-{id}.scope"),
    ] {
        let file = std::path::Path::new(&dir).join("memory.kmem.tcp.limit_in_bytes");
        if file.exists() {
            std::fs::write(&file, bytes.to_string()).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "capping socket memory of container {id} ({}): {e}",
                        file.display()
                    ),
                )
            })?;
            return Ok(SocketMemory::KmemTcpLimit);
        }
        if std::path::Path::new(&dir).exists() {
            return Err(std::io::Error::other(format!("container {id}'s memory cgroup {dir} has no memory.kmem.tcp.limit_in_bytes: this kernel cannot cap its socket memory")));
        }
    }
    Ok(socket_memory_mode())
}

/// Force-remove a container (kills it first); a missing one is fine. What its runtime left on
/// this host (runsc's gofer and sandbox after some failed starts) is killed too.
pub async fn remove(docker: &Docker, id: &str) {
    let opts = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(id, Some(opts)).await {
        Ok(()) => {}
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => tracing::warn!(container = id, error = %e, "could not remove container"),
    }
    super::gvisor::kill_leftovers(id);
}

/// Remove this instance's per-run containers (start-up sweep and graceful stop). Sandbox
/// containers are kept: they belong to sandboxes that survive a restart.
pub async fn sweep(docker: &Docker, instance: &str) -> Result<usize, bollard::errors::Error> {
    let ids: Vec<String> = list_labelled(docker, instance)
        .await?
        .into_iter()
        .filter(|c| {
            !c.labels
                .as_ref()
                .is_some_and(|l| l.contains_key(LABEL_SANDBOX))
        })
        .filter_map(|c| c.id)
        .collect();
    let n = ids.len();
    futures_util::future::join_all(ids.iter().map(|id| remove(docker, id))).await;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hardening is data: every option the issue names, and a policy's OCI runtime.
    #[test]
    fn a_sandbox_container_is_created_hardened_with_the_policys_runtime() {
        let limits = Limits {
            wall_time_ms: 1000,
            cpu_time_ms: 2500,
            memory_bytes: 64 << 20,
            pids: 16,
            output_bytes: 1 << 20,
            disk_bytes: 8 << 20,
        };
        let shape = Shape {
            image: "img".into(),
            limits,
            open_files: 128,
            runtime: Some("crun".into()),
            nano_cpus: 1_000_000_000,
        };
        let mounts = Mounts {
            binary: "/usr/bin/execbox".into(),
            run_dir: "/data/run".into(),
            work: None,
            path: "/usr/bin:/bin".into(),
        };
        let body = create_body(&shape, "inst", 60123, &mounts);
        let h = body.host_config.clone().unwrap();
        assert_eq!(h.runtime.as_deref(), Some("crun"));
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(
            (h.memory, h.memory_swap),
            (
                Some((64 << 20) + SUPERVISOR_MEMORY),
                Some((64 << 20) + SUPERVISOR_MEMORY)
            ),
            "memory + swap = memory: no swap; the supervisor's share on top of the calls'"
        );
        assert_eq!(h.nano_cpus, Some(1_000_000_000));
        assert_eq!(h.pids_limit, Some(16 + SUPERVISOR_TASKS));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(
            h.cap_add.unwrap(),
            [
                "SYS_ADMIN",
                "SETUID",
                "SETGID",
                "CHOWN",
                "FOWNER",
                "DAC_OVERRIDE",
                "KILL"
            ]
        );
        assert_eq!(h.init, Some(true));
        let opts = h.security_opt.unwrap();
        assert!(opts.contains(&"no-new-privileges".to_string()));
        assert!(opts.iter().any(|o| o.starts_with("seccomp={")), "{opts:?}");
        assert_eq!(
            h.binds.unwrap(),
            [
                "/usr/bin/execbox:/.execbox/execbox:ro",
                "/data/run:/.execbox/run"
            ]
        );
        assert_eq!(
            body.entrypoint.clone().unwrap().join(" "),
            "/.execbox/execbox __supervisor --socket /.execbox/run/sup.sock --work /work --uid 60123 --gid 60123 --path /usr/bin:/bin"
        );
        let tmpfs = h.tmpfs.unwrap();
        assert!(
            tmpfs["/work"].contains(&format!("size={}", 8 << 20))
                && tmpfs["/tmp"].contains(&format!("size={}", 8 << 20))
        );
        assert!(
            tmpfs["/work"].contains(",uid=60123,gid=60123,"),
            "/work belongs to the container's own uid: {}",
            tmpfs["/work"]
        );
        let ulimits: Vec<(String, i64)> = h
            .ulimits
            .unwrap()
            .into_iter()
            .map(|u| (u.name.unwrap(), u.hard.unwrap()))
            .collect();
        assert_eq!(
            ulimits,
            [("nofile".into(), SUPERVISOR_OPEN_FILES), ("core".into(), 0)]
        );
        assert_eq!(body.network_disabled, Some(true));
        assert_eq!(body.user.as_deref(), Some("0:0"), "the supervisor is root");
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_INSTANCE], "inst");
        assert_eq!(labels[LABEL_UID], "60123");
        assert!(labels.keys().all(|k| k.starts_with("execbox.")));
        let sandbox = Mounts {
            work: Some("/data/work".into()),
            ..mounts
        };
        let default_runtime = create_body(
            &Shape {
                runtime: None,
                ..shape
            },
            "inst",
            60123,
            &sandbox,
        );
        let h = default_runtime.host_config.unwrap();
        assert_eq!(h.runtime, None);
        assert!(h.binds.unwrap().contains(&"/data/work:/work".to_string()));
        assert!(!h.tmpfs.unwrap().contains_key("/work"));
    }
}
