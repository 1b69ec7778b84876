//! OOM kills as the engine records them. The engine marks a container `OOMKilled` only when
//! its main process dies of it; a program killed by the OOM killer inside a container whose
//! main process lives on shows up only as an `oom` event. So one subscription to the engine's
//! events (this instance's containers, action `oom`) feeds a set every run can consult.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures_util::StreamExt;

#[derive(Default)]
pub struct OomWatch {
    seen: Mutex<HashSet<String>>,
}

impl OomWatch {
    /// Start watching; re-subscribes after the stream ends (engine restart).
    pub fn start(docker: Docker, instance: &str) -> Arc<OomWatch> {
        let watch = Arc::new(OomWatch::default());
        let w = watch.clone();
        let filters = std::collections::HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), vec!["oom".to_string()]),
            (
                "label".to_string(),
                vec![format!("{}={instance}", super::container::LABEL_INSTANCE)],
            ),
        ]);
        tokio::spawn(async move {
            loop {
                let mut events = docker.events(Some(EventsOptions {
                    filters: Some(filters.clone()),
                    ..Default::default()
                }));
                while let Some(Ok(ev)) = events.next().await {
                    if let Some(id) = ev.actor.and_then(|a| a.id) {
                        w.seen.lock().unwrap().insert(id);
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        watch
    }

    /// Whether `container` had an OOM kill. The event can trail the program's end by a few
    /// milliseconds, so a caller that saw a SIGKILL waits up to `grace` for it.
    pub async fn check(&self, container: &str, grace: Duration) -> bool {
        let until = tokio::time::Instant::now() + grace;
        loop {
            if self.seen.lock().unwrap().remove(container) {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Forget a removed container.
    pub fn forget(&self, container: &str) {
        self.seen.lock().unwrap().remove(container);
    }
}
