//! The worker's own business metrics, next to the Temporal SDK's worker
//! metrics on the same Prometheus endpoint (they share the SDK's meter).
//! Activity durations and failures by activity type are the SDK's
//! (`temporal_local_activity_execution_latency_seconds`, `..._failed_total`);
//! these add what only the activities know. Each is counted when the change is
//! committed, so a retried activity does not count twice.

use std::sync::Arc;

use temporalio_common::telemetry::metrics::{
    CoreMeter, Counter, MetricAttributes, MetricKeyValue, MetricParameters, NewAttributes, NoOpCoreMeter,
};

use crate::domain::OrderStatus;

#[derive(Clone)]
pub struct OrderMetrics {
    meter: Arc<dyn CoreMeter>,
    none: MetricAttributes,
    declines: Counter,
    stockouts: Counter,
    compensations: Counter,
    refusals: Counter,
    finished: Counter,
}

/// A compensating step that undid something.
#[derive(Debug, Clone, Copy)]
pub enum Compensation {
    Refund,
    CancelShipment,
    ReleaseStock,
}

/// A compensating step the party refused for good (it cannot be retried away).
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    Refund,
    CancelShipment,
}

impl OrderMetrics {
    pub fn new(meter: Arc<dyn CoreMeter>) -> Self {
        let counter = |name: &'static str, description: &'static str| {
            meter.counter(MetricParameters { name: name.into(), description: description.into(), unit: "".into() })
        };
        let metrics = Self {
            none: meter.new_attributes(NewAttributes::default()),
            declines: counter("orders_payment_declines", "Payments the gateway declined or refused"),
            stockouts: counter("orders_stockouts", "Orders that could not reserve stock for every line"),
            compensations: counter("orders_compensations", "Compensating steps that undid something, by step"),
            refusals: counter(
                "orders_compensations_refused",
                "Compensating steps the party refused for good, by step: an operator must settle each",
            ),
            finished: counter("orders_finished", "Orders that reached an end status, by status"),
            meter,
        };
        // Every series exposed at 0 from the start: `increase()` (alerts, dashboards)
        // sees the first event only if the series existed before it.
        for step in [Refusal::Refund, Refusal::CancelShipment] {
            metrics.refusals.add(0, &metrics.labelled("step", refusal_label(step)));
        }
        for step in [Compensation::Refund, Compensation::CancelShipment, Compensation::ReleaseStock] {
            metrics.compensations.add(0, &metrics.labelled("step", compensation_label(step)));
        }
        for status in OrderStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            metrics.finished.add(0, &metrics.labelled("status", status.as_str()));
        }
        metrics.declines.add(0, &metrics.none);
        metrics.stockouts.add(0, &metrics.none);
        metrics
    }

    /// For tests and tools that run activities without an exporter.
    pub fn disabled() -> Self {
        Self::new(Arc::new(NoOpCoreMeter))
    }

    fn labelled(&self, key: &str, value: &'static str) -> MetricAttributes {
        self.meter.new_attributes(NewAttributes::from([MetricKeyValue::new(key, value)]))
    }

    pub fn payment_declined(&self) {
        self.declines.add(1, &self.none);
    }

    pub fn stock_out(&self) {
        self.stockouts.add(1, &self.none);
    }

    pub fn compensated(&self, step: Compensation) {
        self.compensations.add(1, &self.labelled("step", compensation_label(step)));
    }

    pub fn compensation_refused(&self, step: Refusal) {
        self.refusals.add(1, &self.labelled("step", refusal_label(step)));
    }

    pub fn finished(&self, status: OrderStatus) {
        self.finished.add(1, &self.labelled("status", status.as_str()));
    }
}

/// Records `workflows::runs_in_memory` as `orders_workflow_runs_in_memory` every
/// `every`, for as long as the worker runs. Beside the SDK's cache size it shows
/// runs that are never freed (memory growing with orders served).
pub async fn record_runs_in_memory(meter: Arc<dyn CoreMeter>, every: std::time::Duration) {
    let gauge = meter.gauge(MetricParameters {
        name: "orders_workflow_runs_in_memory".into(),
        description: "Workflow runs the worker holds in memory: its workflow cache plus any run not yet freed".into(),
        unit: "".into(),
    });
    let none = meter.new_attributes(NewAttributes::default());
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        gauge.record(crate::workflows::runs_in_memory() as u64, &none);
    }
}

fn refusal_label(step: Refusal) -> &'static str {
    match step {
        Refusal::Refund => "refund",
        Refusal::CancelShipment => "cancel_shipment",
    }
}

fn compensation_label(step: Compensation) -> &'static str {
    match step {
        Compensation::Refund => "refund",
        Compensation::CancelShipment => "cancel_shipment",
        Compensation::ReleaseStock => "release_stock",
    }
}
