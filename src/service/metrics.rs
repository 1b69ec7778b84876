//! Prometheus metrics: runs by status/executor/language, run duration, in-flight, queued and
//! rejected; agent runs by state and their tokens. Rendered in the text exposition format on `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub status: String,
    pub executor: String,
    pub language: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExecutorLabel {
    pub executor: String,
}

pub struct Metrics {
    registry: Registry,
    pub runs: Family<RunLabels, Counter>,
    pub duration: Family<ExecutorLabel, Histogram>,
    pub in_flight: Gauge,
    pub queued: Gauge,
    pub rejected: Counter,
    pub agent_runs: Family<StateLabel, Counter>,
    pub agent_tokens: Family<TokenLabel, Counter>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("execbox");
        let runs = Family::<RunLabels, Counter>::default();
        let duration = Family::<ExecutorLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ])
        });
        let in_flight = Gauge::default();
        let queued = Gauge::default();
        let rejected = Counter::default();
        registry.register(
            "runs",
            "Runs finished, by status, executor and language",
            runs.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "Wall time of runs, from admission to result",
            duration.clone(),
        );
        registry.register("runs_in_flight", "Runs executing now", in_flight.clone());
        registry.register("runs_queued", "Runs waiting for a slot", queued.clone());
        registry.register(
            "runs_rejected",
            "Runs refused with 429 because slots and queue were full",
            rejected.clone(),
        );
        let agent_runs = Family::<StateLabel, Counter>::default();
        let agent_tokens = Family::<TokenLabel, Counter>::default();
        registry.register(
            "agent_runs",
            "Agent runs ended, by state (finished, failed, cancelled)",
            agent_runs.clone(),
        );
        registry.register(
            "agent_tokens",
            "Model tokens of ended agent runs, by kind (input, output)",
            agent_tokens.clone(),
        );
        Metrics {
            registry,
            runs,
            duration,
            in_flight,
            queued,
            rejected,
            agent_runs,
            agent_tokens,
        }
    }

    /// Count an ended agent run.
    pub fn agent_run_ended(&self, state: &str, input_tokens: u64, output_tokens: u64) {
        self.agent_runs
            .get_or_create(&StateLabel {
                state: state.into(),
            })
            .inc();
        self.agent_tokens
            .get_or_create(&TokenLabel {
                kind: "input".into(),
            })
            .inc_by(input_tokens);
        self.agent_tokens
            .get_or_create(&TokenLabel {
                kind: "output".into(),
            })
            .inc_by(output_tokens);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
