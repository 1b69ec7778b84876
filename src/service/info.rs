//! What the service offers and how it is: the runtimes that passed their start-up probes, each
//! executor's readiness, and the metrics.

use std::collections::BTreeMap;

use serde::Serialize;

use super::AppState;
use crate::exec::Readiness;

/// A language that passed its start-up probe on at least one executor.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RuntimeInfo {
    pub language: String,
    /// Other names `language` accepts.
    pub aliases: Vec<String>,
    /// The local executor's version, else the first executor's.
    pub version: String,
    /// The version on each executor that has the language.
    pub versions: BTreeMap<String, String>,
    pub executors: Vec<String>,
    /// The container image of the docker executor, when it has the language.
    #[schema(required = true)]
    pub image: Option<String>,
}

/// The languages that can run now, in the runtime table's order; only what passed its
/// start-up probe on some executor is listed.
pub fn runtimes(s: &AppState) -> Vec<RuntimeInfo> {
    let mut names: Vec<&&str> = s.executors.keys().collect();
    names.sort();
    s.runtimes
        .runtimes
        .iter()
        .filter_map(|r| {
            let mut executors = Vec::new();
            let mut versions = BTreeMap::new();
            let mut image = None;
            for name in &names {
                let e = &s.executors[**name];
                if let Some(v) = e.runtimes().get(&r.language) {
                    executors.push(name.to_string());
                    versions.insert(name.to_string(), v.clone());
                    image = image.or(e.image(&r.language));
                }
            }
            let version = versions.get("local").or(versions.values().next())?.clone();
            Some(RuntimeInfo {
                language: r.language.clone(),
                aliases: r.aliases.clone(),
                version,
                versions,
                executors,
                image,
            })
        })
        .collect()
}

/// Each executor's readiness, by name.
pub fn readiness(s: &AppState) -> BTreeMap<String, Readiness> {
    s.executors
        .iter()
        .map(|(name, e)| (name.to_string(), e.readiness()))
        .collect()
}

/// The metrics in Prometheus's text exposition format (version 0.0.4), the run gauges read now.
pub fn metrics(s: &AppState) -> String {
    s.metrics.in_flight.set(s.admission.running() as i64);
    s.metrics.queued.set(s.admission.queued() as i64);
    s.metrics.render()
}
