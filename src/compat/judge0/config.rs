//! What `GET /judge0/config_info` reports: Judge0 CE 1.13.1's configuration as this service
//! applies it. Defaults and maxima are Judge0's own, lowered where the compat policy allows
//! less; features execbox does not offer (callbacks, additional files, network, per-process
//! limits, deleting submissions) are reported off, as a Judge0 configured so would, and a
//! submission asking for them is refused the way Judge0 refuses it.

use serde::Serialize;

use crate::policy::{Policy, MINIMUMS};

/// Every field of Judge0's `config_info`, in its order. Times in seconds, sizes in kilobytes.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigInfo {
    pub maintenance_mode: bool,
    pub enable_wait_result: bool,
    pub enable_compiler_options: bool,
    pub allowed_languages_for_compile_options: Vec<String>,
    pub enable_command_line_arguments: bool,
    pub enable_submission_delete: bool,
    pub enable_callbacks: bool,
    pub callbacks_max_tries: u32,
    pub callbacks_timeout: f64,
    pub enable_additional_files: bool,
    pub max_queue_size: usize,
    pub cpu_time_limit: f64,
    pub max_cpu_time_limit: f64,
    pub cpu_extra_time: f64,
    pub max_cpu_extra_time: f64,
    pub wall_time_limit: f64,
    pub max_wall_time_limit: f64,
    pub memory_limit: u64,
    pub max_memory_limit: u64,
    pub stack_limit: u64,
    pub max_stack_limit: u64,
    pub max_processes_and_or_threads: u64,
    pub max_max_processes_and_or_threads: u64,
    pub enable_per_process_and_thread_time_limit: bool,
    pub allow_enable_per_process_and_thread_time_limit: bool,
    pub enable_per_process_and_thread_memory_limit: bool,
    pub allow_enable_per_process_and_thread_memory_limit: bool,
    pub max_file_size: u64,
    pub max_max_file_size: u64,
    pub number_of_runs: u32,
    pub max_number_of_runs: u32,
    pub redirect_stderr_to_stdout: bool,
    pub max_extract_size: u64,
    pub enable_batched_submissions: bool,
    pub max_submission_batch_size: usize,
    pub submission_cache_duration: f64,
    pub use_docs_as_homepage: bool,
    pub allow_enable_network: bool,
    pub enable_network: bool,
}

/// The least `memory_limit` (KB) and `max_processes_and_or_threads` a submission may ask for:
/// execbox's own minimums (Judge0's are 2048 KB and 1), below which a run cannot start on
/// every executor.
pub const MIN_MEMORY_KB: u64 = MINIMUMS.memory_bytes / 1024;
pub const MIN_PROCESSES: u64 = MINIMUMS.pids;

impl ConfigInfo {
    /// Judge0 CE 1.13.1's defaults, each maximum lowered to what `policy` allows (the CPU
    /// limit a run gets is `cpu_time_limit + cpu_extra_time`, so the two maxima share the
    /// policy's), and each default to its maximum.
    pub fn new(policy: &Policy, max_queue_size: usize) -> ConfigInfo {
        let m = &policy.maxima;
        let cpu_s = m.cpu_time_ms as f64 / 1000.0;
        let max_cpu_time_limit = 15f64.min(cpu_s);
        let max_cpu_extra_time = 5f64.min(cpu_s - max_cpu_time_limit);
        let max_wall_time_limit = 20f64.min(m.wall_time_ms as f64 / 1000.0);
        let max_memory_limit = 512_000.min(m.memory_bytes / 1024);
        let max_max_processes = 120.min(m.pids);
        let max_max_file_size = 4096.min(m.output_bytes / 1024);
        ConfigInfo {
            maintenance_mode: false,
            enable_wait_result: true,
            enable_compiler_options: true,
            allowed_languages_for_compile_options: Vec::new(),
            enable_command_line_arguments: true,
            enable_submission_delete: false,
            enable_callbacks: false,
            callbacks_max_tries: 3,
            callbacks_timeout: 5.0,
            enable_additional_files: false,
            max_queue_size,
            cpu_time_limit: 5f64.min(max_cpu_time_limit),
            max_cpu_time_limit,
            cpu_extra_time: 1f64.min(max_cpu_extra_time),
            max_cpu_extra_time,
            wall_time_limit: 10f64.min(max_wall_time_limit),
            max_wall_time_limit,
            memory_limit: 128_000.min(max_memory_limit),
            max_memory_limit,
            stack_limit: 64_000,
            max_stack_limit: 128_000,
            max_processes_and_or_threads: 60.min(max_max_processes),
            max_max_processes_and_or_threads: max_max_processes,
            enable_per_process_and_thread_time_limit: false,
            allow_enable_per_process_and_thread_time_limit: false,
            enable_per_process_and_thread_memory_limit: false,
            allow_enable_per_process_and_thread_memory_limit: false,
            max_file_size: 1024.min(max_max_file_size),
            max_max_file_size,
            number_of_runs: 1,
            max_number_of_runs: 20,
            redirect_stderr_to_stdout: false,
            max_extract_size: 10_240,
            enable_batched_submissions: true,
            max_submission_batch_size: 20,
            // Reads go to the store each time; nothing is served stale.
            submission_cache_duration: 0.0,
            use_docs_as_homepage: false,
            allow_enable_network: false,
            enable_network: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySet;

    #[test]
    fn the_default_policy_holds_judge0s_own_configuration() {
        let p = PolicySet::embedded().unwrap();
        let c = ConfigInfo::new(p.get("default").unwrap(), 64);
        assert_eq!(
            (
                c.cpu_time_limit,
                c.max_cpu_time_limit,
                c.cpu_extra_time,
                c.max_cpu_extra_time
            ),
            (5.0, 15.0, 1.0, 5.0)
        );
        assert_eq!((c.wall_time_limit, c.max_wall_time_limit), (10.0, 20.0));
        assert_eq!((c.memory_limit, c.max_memory_limit), (128_000, 512_000));
        assert_eq!(
            (
                c.max_processes_and_or_threads,
                c.max_max_processes_and_or_threads
            ),
            (60, 120)
        );
        assert_eq!((c.max_file_size, c.max_max_file_size), (1024, 4096));
        let fields = serde_json::to_value(&c).unwrap();
        assert_eq!(fields.as_object().unwrap().len(), 39);
    }

    #[test]
    fn every_policy_bounds_what_config_info_offers() {
        let set = PolicySet::embedded().unwrap();
        for p in set.policies.values() {
            let c = ConfigInfo::new(p, 1);
            let cpu_ms = ((c.max_cpu_time_limit + c.max_cpu_extra_time) * 1000.0) as u64;
            assert!(cpu_ms <= p.maxima.cpu_time_ms, "{}", p.name);
            assert!((c.max_wall_time_limit * 1000.0) as u64 <= p.maxima.wall_time_ms);
            assert!(c.max_memory_limit * 1024 <= p.maxima.memory_bytes);
            assert!(c.max_max_processes_and_or_threads <= p.maxima.pids);
            assert!(c.max_max_file_size * 1024 <= p.maxima.output_bytes);
            assert!(
                c.memory_limit >= MIN_MEMORY_KB && c.max_processes_and_or_threads >= MIN_PROCESSES
            );
        }
    }
}
