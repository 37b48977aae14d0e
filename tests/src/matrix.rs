//! The ground-truth matrix: every family nodetel exports and every field of its cAdvisor JSON,
//! with what the figure must equal and the test that checks it on the real thing.
//!
//! `tests/tests/ground_truth.rs` checks every [`Truth::Kernel`] row that names it, on the host
//! (hybrid cgroups: cgroup v1 controllers) and in the VM (pure cgroup v2): it reads the kernel's
//! file just before and just after the pass the agent served and requires the agent's figure
//! within that bracket (a running PSI average: among the values its file showed meanwhile). It also fails when its scrape or its JSON holds a family or a field no
//! row covers. `tests/tests/matrix.rs` checks that every named test exists and that the README
//! carries this table as [`markdown`] renders it (`cargo xtask bless` rewrites it there).

/// What a figure must equal.
#[derive(Clone, Copy, Debug)]
pub enum Truth {
    /// The kernel's own file and key: on cgroup v2, and on v1 (`-` where v1 has none, and then
    /// the family must be absent there).
    Kernel { v2: &'static str, v1: &'static str },
    /// Another live source, named (bytes actually sent, real kills, `du`, cAdvisor).
    Live(&'static str),
    /// Written as cAdvisor writes it without measuring (zero, a constant, an identity field).
    Constant(&'static str),
}

/// One row: the family (or `-`), the JSON paths carrying the same figure (`[]` for each array
/// level, a trailing `*` for a subtree), its truth, and the test (`file.rs::function`).
#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub family: &'static str,
    pub json: &'static [&'static str],
    pub truth: Truth,
    pub test: &'static str,
}

const GT: &str = "ground_truth.rs::every_figure_is_within_the_kernels_bracket";
const TASKS: &str = "processes.rs::thread_states_and_load_averages_of_a_known_workload";
const HIST: &str = "ground_truth.rs::runqueue_waits_of_a_known_length_land_in_their_bucket";
const BLKIO: &str = "blkio.rs::direct_io_per_cgroup_equals_the_kernels_accounting";

const fn k(
    family: &'static str,
    json: &'static [&'static str],
    v2: &'static str,
    v1: &'static str,
) -> Row {
    Row {
        family,
        json,
        truth: Truth::Kernel { v2, v1 },
        test: GT,
    }
}

const fn live(
    family: &'static str,
    json: &'static [&'static str],
    what: &'static str,
    test: &'static str,
) -> Row {
    Row {
        family,
        json,
        truth: Truth::Live(what),
        test,
    }
}

const fn constant(family: &'static str, json: &'static [&'static str], why: &'static str) -> Row {
    Row {
        family,
        json,
        truth: Truth::Constant(why),
        test: "api.rs::cadvisor_api_against_a_real_docker_container",
    }
}

pub static ROWS: &[Row] = &[
    // CPU
    live(
        "container_cpu_usage_seconds_total",
        &["stats[].cpu.usage.total"],
        "v2 `cpu.stat` `usage_usec` mid-run and after exit (eBPF count; JSON: the kernel's)",
        "cpu.rs::cpu_usage_matches_the_kernel_mid_run_and_after_exit",
    ),
    k(
        "container_cpu_user_seconds_total",
        &["stats[].cpu.usage.user"],
        "`cpu.stat` `user_usec`",
        "`cpu.stat` `user_usec` (the unified hierarchy)",
    ),
    k(
        "container_cpu_system_seconds_total",
        &["stats[].cpu.usage.system"],
        "`cpu.stat` `system_usec`",
        "`cpu.stat` `system_usec` (the unified hierarchy)",
    ),
    k(
        "container_cpu_cfs_periods_total",
        &["stats[].cpu.cfs.periods"],
        "`cpu.stat` `nr_periods`",
        "`cpu.stat` `nr_periods`",
    ),
    k(
        "container_cpu_cfs_throttled_periods_total",
        &["stats[].cpu.cfs.throttled_periods"],
        "`cpu.stat` `nr_throttled`",
        "`cpu.stat` `nr_throttled`",
    ),
    k(
        "container_cpu_cfs_throttled_seconds_total",
        &["stats[].cpu.cfs.throttled_time"],
        "`cpu.stat` `throttled_usec`",
        "`cpu.stat` `throttled_time`",
    ),
    k(
        "container_cpu_cfs_burst_periods_total",
        &["stats[].cpu.cfs.bursts_periods"],
        "`cpu.stat` `nr_bursts`",
        "`cpu.stat` `nr_bursts`",
    ),
    k(
        "container_cpu_cfs_burst_seconds_total",
        &["stats[].cpu.cfs.burst_time"],
        "`cpu.stat` `burst_usec`",
        "`cpu.stat` `burst_time`",
    ),
    k(
        "container_spec_cpu_period",
        &["spec.cpu.period"],
        "`cpu.max` (2nd)",
        "`cpu.cfs_period_us`",
    ),
    k(
        "container_spec_cpu_quota",
        &["spec.cpu.quota"],
        "`cpu.max` (1st)",
        "`cpu.cfs_quota_us`",
    ),
    k(
        "container_spec_cpu_shares",
        &["spec.cpu.limit"],
        "`cpu.weight` w as runc converts it: 2 + (w-1)*262142/9999",
        "`cpu.shares`",
    ),
    k(
        "-",
        &["spec.cpu.mask"],
        "`cpuset.cpus.effective`",
        "`cpuset.cpus`",
    ),
    constant(
        "-",
        &["spec.cpu.max_limit"],
        "0, as cAdvisor without its netlink load reader",
    ),
    live(
        "container_tasks_state",
        &[
            "stats[].task_stats.nr_running",
            "stats[].task_stats.nr_sleeping",
            "stats[].task_stats.nr_stopped",
            "stats[].task_stats.nr_uninterruptible",
        ],
        "the state `/proc/<tid>/stat` shows for each thread of the cgroup's `cgroup.threads` (`R`, `S`, `T`, `D`), bracketed, for a workload of known states (busy, sleeping, stopped, vfork-waiting); `iowaiting` 0 (see the next row)",
        TASKS,
    ),
    constant(
        "-",
        &["stats[].task_stats.nr_io_wait"],
        "0: taskstats (cAdvisor's source) counts a thread sleeping in `io_schedule()` as uninterruptible, and /proc does not show the io-wait flag of the rare other case",
    ),
    live(
        "container_cpu_load_average_10s",
        &["stats[].cpu.load_average"],
        "cAdvisor's smoothing of the running count, in thousandths: the first count (2000 for two busy loops), then `1000 + 1000 e^(-k interval/10 s)` k passes after one of them stops",
        TASKS,
    ),
    live(
        "container_cpu_load_d_average_10s",
        &["stats[].cpu.load_d_average"],
        "the same smoothing of the uninterruptible count (1000 for one vfork-waiting parent)",
        TASKS,
    ),
    live(
        "container_cpu_schedstat_run_seconds_total",
        &["stats[].cpu.schedstat.run_time"],
        "the scheduler's runtime, as `container_cpu_usage_seconds_total`",
        "sched.rs::two_tasks_on_one_cpu_wait_half_the_time",
    ),
    live(
        "container_cpu_schedstat_runqueue_seconds_total",
        &["stats[].cpu.schedstat.runqueue_time"],
        "`/proc/<pid>/schedstat` wait time of the cgroup's tasks",
        "sched.rs::two_tasks_on_one_cpu_wait_half_the_time",
    ),
    live(
        "container_cpu_schedstat_run_periods_total",
        &["stats[].cpu.schedstat.run_periods"],
        "`/proc/<pid>/schedstat` timeslices of the cgroup's tasks",
        "sched.rs::two_tasks_on_one_cpu_wait_half_the_time",
    ),
    live(
        "nodetel_container_runqueue_latency_seconds",
        &[],
        "waits of a known length (a SCHED_FIFO task spinning 20 ms on the same CPU) in their log2 bucket",
        HIST,
    ),
    // Memory
    k(
        "container_memory_usage_bytes",
        &["stats[].memory.usage"],
        "`memory.current`",
        "`memory.usage_in_bytes`",
    ),
    k(
        "container_memory_max_usage_bytes",
        &["stats[].memory.max_usage"],
        "`memory.peak`",
        "`memory.max_usage_in_bytes`",
    ),
    k(
        "container_memory_working_set_bytes",
        &["stats[].memory.working_set"],
        "`memory.current` - `memory.stat` `inactive_file`",
        "`memory.usage_in_bytes` - `total_inactive_file`",
    ),
    k(
        "container_memory_rss",
        &["stats[].memory.rss"],
        "`memory.stat` `anon`",
        "`memory.stat` `total_rss`",
    ),
    k(
        "container_memory_cache",
        &["stats[].memory.cache"],
        "`memory.stat` `file`",
        "`memory.stat` `total_cache`",
    ),
    k(
        "container_memory_mapped_file",
        &["stats[].memory.mapped_file"],
        "`memory.stat` `file_mapped`",
        "`memory.stat` `total_mapped_file`",
    ),
    k(
        "container_memory_swap",
        &["stats[].memory.swap"],
        "`memory.swap.current`",
        "`memory.stat` `total_swap` (with swap accounting)",
    ),
    k(
        "container_memory_kernel_usage",
        &["stats[].memory.kernel"],
        "`memory.stat` `kernel`",
        "`memory.kmem.usage_in_bytes`",
    ),
    k(
        "container_memory_total_active_file_bytes",
        &["stats[].memory.total_active_file"],
        "`memory.stat` `active_file`",
        "`memory.stat` `total_active_file`",
    ),
    k(
        "container_memory_total_inactive_file_bytes",
        &["stats[].memory.total_inactive_file"],
        "`memory.stat` `inactive_file`",
        "`memory.stat` `total_inactive_file`",
    ),
    k(
        "container_memory_failcnt",
        &["stats[].memory.failcnt"],
        "`memory.events` `max`",
        "`memory.failcnt`",
    ),
    k(
        "container_memory_failures_total",
        &[
            "stats[].memory.container_data.pgfault",
            "stats[].memory.container_data.pgmajfault",
            "stats[].memory.hierarchical_data.pgfault",
            "stats[].memory.hierarchical_data.pgmajfault",
        ],
        "`memory.stat` `pgfault`, `pgmajfault` (both scopes)",
        "`memory.stat` `pgfault`, `pgmajfault`; hierarchy `total_pgfault`, `total_pgmajfault`",
    ),
    k(
        "container_memory_events_high_total",
        &["stats[].memory.events.high"],
        "`memory.events` `high`",
        "-",
    ),
    k(
        "container_memory_events_max_total",
        &["stats[].memory.events.max"],
        "`memory.events` `max`",
        "-",
    ),
    k(
        "container_memory_file_dirty_bytes",
        &["stats[].memory.file_dirty"],
        "`memory.stat` `file_dirty`",
        "-",
    ),
    k(
        "container_memory_file_writeback_bytes",
        &["stats[].memory.file_writeback"],
        "`memory.stat` `file_writeback`",
        "-",
    ),
    k(
        "container_memory_pgscan_total",
        &["stats[].memory.pgscan"],
        "`memory.stat` `pgscan`",
        "-",
    ),
    k(
        "container_memory_pgsteal_total",
        &["stats[].memory.pgsteal"],
        "`memory.stat` `pgsteal`",
        "-",
    ),
    k(
        "container_memory_workingset_refault_file_total",
        &["stats[].memory.workingset_refault_file"],
        "`memory.stat` `workingset_refault_file`",
        "-",
    ),
    k(
        "container_memory_workingset_refault_anon_total",
        &["stats[].memory.workingset_refault_anon"],
        "`memory.stat` `workingset_refault_anon`",
        "-",
    ),
    k(
        "container_spec_memory_limit_bytes",
        &["spec.memory.limit"],
        "`memory.max`",
        "`memory.limit_in_bytes`",
    ),
    k(
        "container_spec_memory_swap_limit_bytes",
        &["spec.memory.swap_limit"],
        "`memory.swap.max`",
        "`memory.memsw.limit_in_bytes`",
    ),
    k(
        "container_spec_memory_reservation_limit_bytes",
        &["spec.memory.reservation"],
        "`memory.min`",
        "`memory.soft_limit_in_bytes`",
    ),
    // Pressure
    k(
        "container_pressure_cpu_waiting_seconds_total",
        &["stats[].cpu.psi.some.*"],
        "`cpu.pressure` `some` (`total`, `avg10/60/300`)",
        "the same (the unified hierarchy)",
    ),
    k(
        "container_pressure_cpu_stalled_seconds_total",
        &["stats[].cpu.psi.full.*"],
        "`cpu.pressure` `full`",
        "the same (the unified hierarchy)",
    ),
    k(
        "container_pressure_memory_waiting_seconds_total",
        &["stats[].memory.psi.some.*"],
        "`memory.pressure` `some`",
        "the same (the unified hierarchy)",
    ),
    k(
        "container_pressure_memory_stalled_seconds_total",
        &["stats[].memory.psi.full.*"],
        "`memory.pressure` `full`",
        "the same (the unified hierarchy)",
    ),
    k(
        "container_pressure_io_waiting_seconds_total",
        &["stats[].diskio.psi.some.*"],
        "`io.pressure` `some`",
        "the same (the unified hierarchy)",
    ),
    k(
        "container_pressure_io_stalled_seconds_total",
        &["stats[].diskio.psi.full.*"],
        "`io.pressure` `full`",
        "the same (the unified hierarchy)",
    ),
    // Block I/O
    k(
        "container_fs_reads_bytes_total",
        &["stats[].diskio.io_service_bytes[].*"],
        "`io.stat` `rbytes` (O_DIRECT reads)",
        "`blkio.throttle.io_service_bytes_recursive` `Read`; under BFQ `blkio.bfq.*` (`v1_block_io_under_bfq_matches_the_kernels_bfq_figures`)",
    ),
    k(
        "container_fs_writes_bytes_total",
        &[],
        "`io.stat` `wbytes` (O_DIRECT writes)",
        "`blkio.throttle.io_service_bytes_recursive` `Write`; under BFQ `blkio.bfq.*`",
    ),
    k(
        "container_fs_reads_total",
        &["stats[].diskio.io_serviced[].*"],
        "`io.stat` `rios`",
        "`blkio.throttle.io_serviced_recursive` `Read`; under BFQ `blkio.bfq.*`",
    ),
    k(
        "container_fs_writes_total",
        &[],
        "`io.stat` `wios`",
        "`blkio.throttle.io_serviced_recursive` `Write`; under BFQ `blkio.bfq.*`",
    ),
    k(
        "container_blkio_device_usage_total",
        &[],
        "`io.stat` `rbytes`, `wbytes`",
        "`blkio.throttle.io_service_bytes_recursive`, every operation; under BFQ `blkio.bfq.*`",
    ),
    // Block I/O latency (the `blkio` kind)
    live(
        "nodetel_container_blkio_ios_total",
        &[],
        "`io.stat` `rios`, `wios` (v2) and `blkio.throttle.io_serviced` (v1) deltas of two cgroups' direct I/O, exactly; writeback charged to the writer (v2)",
        BLKIO,
    ),
    live(
        "nodetel_container_blkio_bytes_total",
        &[],
        "`io.stat` `rbytes`, `wbytes` (v2) and `blkio.throttle.io_service_bytes` (v1) deltas, exactly",
        BLKIO,
    ),
    live(
        "nodetel_container_blkio_queue_seconds_total",
        &[],
        "Little's law on a loop device limited to 4 requests: 32 direct readers spend most of their latency queued, a reader alone under a quarter",
        "blkio.rs::queue_time_is_the_wait_for_a_request",
    ),
    live(
        "nodetel_container_blkio_service_seconds_total",
        &[],
        "the rest of the latency sum: non-zero for both cgroups of the queue test, all of a reader's latency alone but its queue share",
        "blkio.rs::queue_time_is_the_wait_for_a_request",
    ),
    live(
        "nodetel_container_blkio_latency_seconds",
        &[],
        "reads of a device-mapper `delay` device of 20 ms in the 16.4-65.5 ms buckets, of an undelayed loop device under 2 ms (VM)",
        "blkio.rs::a_known_device_delay_lands_in_its_bucket",
    ),
    // TCP health (the `tcp_health` kind)
    live(
        "nodetel_container_tcp_retransmits_total",
        &[],
        "the sender namespace's `TcpRetransSegs` delta (`/proc/<pid>/net/snmp`, as `nstat`) under 5 % of data segments dropped by nftables, exactly; the receiver's 0 as the kernel's",
        "tcp.rs::retransmits_equal_the_senders_retrans_segs",
    ),
    live(
        "nodetel_container_tcp_connects_total",
        &[],
        "what the client's `connect(2)` returned: ECONNREFUSED from a closed port, ETIMEDOUT when the SYN retries ran out, success against a listener (1, 1, 3); none under another result or cgroup",
        "tcp.rs::connects_are_counted_by_their_real_result",
    ),
    live(
        "nodetel_container_tcp_resets_received_total",
        &[],
        "one per refused connect, for the cgroup that connected, two cgroups on the host network kept apart (3 and 1)",
        "tcp.rs::host_network_sockets_are_charged_to_their_own_cgroup",
    ),
    live(
        "nodetel_container_tcp_resets_sent_total",
        &[],
        "one per connection its client closed with `SO_LINGER` 0 (2), for the client's cgroup",
        "tcp.rs::connects_are_counted_by_their_real_result",
    ),
    live(
        "nodetel_container_tcp_rtt_seconds",
        &[],
        "netem delaying every packet 50 ms at both ends of a veth pair: the client's and the listener's median round trip in the 65.5-131 ms bucket (VM); loopback: the median under 2 ms, none at 65.5 ms or more",
        "tcp.rs::round_trips_land_in_the_paths_bucket",
    ),
    live(
        "nodetel_container_tcp_accepts_total",
        &[],
        "the connections the listener's `accept(2)` returned (1; 5)",
        "tcp.rs::connects_are_counted_by_their_real_result",
    ),
    live(
        "nodetel_container_tcp_established",
        &[],
        "ESTABLISHED entries of `/proc/net/tcp` on each side (5 opened before the agent, 8, 3 after a kill); 0 after 20,000 connects churned through the agent's start",
        "tcp.rs::established_connections_are_counted_from_before_the_start",
    ),
    // Filesystem usage
    live(
        "container_fs_usage_bytes",
        &[
            "stats[].filesystem[].usage",
            "stats[].filesystem[].base_usage",
        ],
        "`du -s -B1` of the writable layer; for `/`, `statvfs`; and cAdvisor on the same containers",
        "fs_usage.rs::docker_writable_layer_usage_is_what_du_says",
    ),
    live(
        "container_fs_inodes_free",
        &[
            "stats[].filesystem[].inodes_free",
            "stats[].filesystem[].has_inodes",
        ],
        "`df -i` of the layer's filesystem",
        "fs_usage.rs::docker_writable_layer_usage_is_what_du_says",
    ),
    live(
        "container_fs_inodes_total",
        &["stats[].filesystem[].inodes"],
        "`df -i` of the layer's filesystem",
        "fs_usage.rs::docker_writable_layer_usage_is_what_du_says",
    ),
    live(
        "container_fs_limit_bytes",
        &[
            "stats[].filesystem[].capacity",
            "stats[].filesystem[].available",
            "stats[].filesystem[].device",
            "stats[].filesystem[].type",
        ],
        "`df -B1` of the layer's filesystem",
        "fs_usage.rs::docker_writable_layer_usage_is_what_du_says",
    ),
    live(
        "-",
        &[
            "stats[].filesystem[].reads_completed",
            "stats[].filesystem[].reads_merged",
            "stats[].filesystem[].sectors_read",
            "stats[].filesystem[].read_time",
            "stats[].filesystem[].writes_completed",
            "stats[].filesystem[].writes_merged",
            "stats[].filesystem[].sectors_written",
            "stats[].filesystem[].write_time",
            "stats[].filesystem[].io_in_progress",
            "stats[].filesystem[].io_time",
            "stats[].filesystem[].weighted_io_time",
        ],
        "the device's `/proc/diskstats` line, bracketed",
        GT,
    ),
    // Processes
    k(
        "container_processes",
        &["stats[].processes.process_count"],
        "lines of `cgroup.procs`",
        "lines of `cgroup.procs` (the unified hierarchy)",
    ),
    k(
        "container_threads",
        &["stats[].processes.threads_current"],
        "`pids.current`",
        "`pids.current`",
    ),
    k(
        "container_threads_max",
        &["stats[].processes.threads_max"],
        "`pids.max`",
        "`pids.max`",
    ),
    // Network
    live(
        "container_network_receive_bytes_total",
        &[
            "stats[].network.rx_bytes",
            "stats[].network.interfaces[].rx_bytes",
        ],
        "`/proc/<pid>/net/dev` and cAdvisor on the same containers; datagrams of a known size",
        "cadvisor_peer.rs::network_figures_are_cadvisors_for_the_same_docker_containers",
    ),
    live(
        "container_network_transmit_bytes_total",
        &[
            "stats[].network.tx_bytes",
            "stats[].network.interfaces[].tx_bytes",
        ],
        "`/proc/<pid>/net/dev` and cAdvisor on the same containers",
        "cadvisor_peer.rs::network_figures_are_cadvisors_for_the_same_docker_containers",
    ),
    live(
        "container_network_receive_packets_total",
        &[
            "stats[].network.rx_packets",
            "stats[].network.interfaces[].rx_packets",
        ],
        "`/proc/<pid>/net/dev`; 5000 datagrams sent",
        "network.rs::udp_in_a_network_namespace_is_counted_to_the_packet",
    ),
    live(
        "container_network_transmit_packets_total",
        &[
            "stats[].network.tx_packets",
            "stats[].network.interfaces[].tx_packets",
        ],
        "`/proc/<pid>/net/dev`",
        "network.rs::udp_in_a_network_namespace_is_counted_to_the_packet",
    ),
    live(
        "container_network_receive_packets_dropped_total",
        &[
            "stats[].network.rx_dropped",
            "stats[].network.interfaces[].rx_dropped",
        ],
        "`/proc/<pid>/net/dev` `drop` of a namespace whose device drops (a veth whose peer is down)",
        GT,
    ),
    live(
        "container_network_transmit_packets_dropped_total",
        &[
            "stats[].network.tx_dropped",
            "stats[].network.interfaces[].tx_dropped",
        ],
        "`/proc/<pid>/net/dev` `drop`, bracketed",
        GT,
    ),
    live(
        "container_network_receive_errors_total",
        &[
            "stats[].network.rx_errors",
            "stats[].network.interfaces[].rx_errors",
        ],
        "`/proc/<pid>/net/dev` `errs`, bracketed",
        GT,
    ),
    live(
        "container_network_transmit_errors_total",
        &[
            "stats[].network.tx_errors",
            "stats[].network.interfaces[].tx_errors",
            "stats[].network.name",
            "stats[].network.interfaces[].name",
        ],
        "`/proc/<pid>/net/dev` `errs`, bracketed",
        GT,
    ),
    constant(
        "-",
        &[
            "stats[].network.tcp.*",
            "stats[].network.tcp6.*",
            "stats[].network.udp.*",
            "stats[].network.udp6.*",
            "stats[].network.tcp_advanced.*",
        ],
        "0, as cAdvisor with its `tcp`, `udp` and `advtcp` kinds off (its default)",
    ),
    // OOM
    live(
        "container_oom_events_total",
        &[],
        "kills the kernel really made (a child allocating past its limit), charged to the victim",
        "oom.rs::the_victim_is_charged_not_the_allocator",
    ),
    // Lifecycle and identity
    live(
        "container_start_time_seconds",
        &["spec.creation_time"],
        "the cgroup directory's mtime, and the wall clock at its creation",
        "processes.rs::processes_threads_pressure_and_lifecycle",
    ),
    live(
        "container_last_seen",
        &["stats[].timestamp"],
        "the pass's drain time (`nodetel_last_collection_timestamp_seconds`)",
        "processes.rs::processes_threads_pressure_and_lifecycle",
    ),
    constant(
        "-",
        &[
            "spec.has_cpu",
            "spec.has_memory",
            "spec.has_network",
            "spec.has_processes",
            "spec.has_filesystem",
            "spec.has_diskio",
            "spec.has_hugetlb",
            "spec.has_custom_metrics",
            "spec.labels.*",
            "spec.image",
            "spec.processes.*",
            "stats[].health.status",
            "stats[].cpuset.memory_migrate",
            "stats[].processes.fd_count",
            "stats[].processes.socket_count",
        ],
        "cAdvisor's flags and defaults for the same cgroup; `fd_count`, `socket_count` 0 (see Metrics)",
    ),
    // Machine
    live(
        "machine_cpu_cores",
        &[],
        "`/sys/devices/system/cpu/online`",
        "exposition.rs::machine_facts_match_the_host",
    ),
    live(
        "machine_cpu_physical_cores",
        &[],
        "distinct (`physical_package_id`, `core_id`) in sysfs topology",
        GT,
    ),
    live(
        "machine_cpu_sockets",
        &[],
        "distinct `physical_package_id` in sysfs topology",
        GT,
    ),
    live(
        "machine_memory_bytes",
        &[],
        "`/proc/meminfo` `MemTotal`",
        "exposition.rs::machine_facts_match_the_host",
    ),
    live("machine_swap_bytes", &[], "`/proc/meminfo` `SwapTotal`", GT),
    live(
        "nodetel_swarm_service_tasks",
        &[],
        "`docker ps` of the service's tasks on this node, on a real single-node Swarm, scaled and removed",
        "swarm.rs::swarm_services_and_compose_projects_are_counted_and_labelled",
    ),
    live(
        "nodetel_compose_service_containers",
        &[],
        "the containers `docker-compose up --scale` started",
        "swarm.rs::swarm_services_and_compose_projects_are_counted_and_labelled",
    ),
    live(
        "cadvisor_version_info",
        &[],
        "`kernelVersion` is `/proc/sys/kernel/osrelease`; `cadvisorVersion` names nodetel's build",
        "exposition.rs::machine_facts_match_the_host",
    ),
];

/// The agent's own health families (`nodetel_*` but not `nodetel_container_*`) describe the
/// agent, not the node; each is documented with the behaviour it counts and checked by that
/// behaviour's test. The matrix does not list them one by one.
pub fn is_self_metric(family: &str) -> bool {
    family.starts_with("nodetel_")
        && !["nodetel_container_", "nodetel_swarm_", "nodetel_compose_"]
            .iter()
            .any(|p| family.starts_with(p))
}

/// The row whose family is `family`.
pub fn row_of(family: &str) -> Option<&'static Row> {
    ROWS.iter().find(|r| r.family == family)
}

/// Whether some row's JSON patterns cover `path` (`stats[].memory.usage`).
pub fn covers_json(path: &str) -> bool {
    ROWS.iter()
        .flat_map(|r| r.json)
        .any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => *p == path,
        })
}

/// The table the README carries, between its `ground-truth-matrix` markers.
pub fn markdown() -> String {
    let mut out = String::from(
        "| family | JSON (`/api/v1.3/containers`) | must equal: cgroup v2 | cgroup v1 | test |\n\
         |---|---|---|---|---|\n",
    );
    for r in ROWS {
        let family = if r.family == "-" {
            "-".to_string()
        } else {
            format!("`{}`", r.family)
        };
        let json = r
            .json
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let (v2, v1) = match r.truth {
            Truth::Kernel { v2, v1 } => (v2.to_string(), v1.to_string()),
            Truth::Live(what) => (what.to_string(), "the same".to_string()),
            Truth::Constant(why) => (format!("constant: {why}"), "the same".to_string()),
        };
        let test = format!("`{}`", r.test);
        out += &format!("| {family} | {json} | {v2} | {v1} | {test} |\n");
    }
    out
}
