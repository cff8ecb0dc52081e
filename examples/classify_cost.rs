//! Times `classify::classify_detailed` over the delivery status and provider message of every
//! event in a System Log export, and prints the mean cost per event.
//!
//!     cargo run --release --example classify_cost -- EXPORT.json [PASSES]
//!
//! EXPORT.json is a JSON array of `system.email.delivery` events, as `GET /api/v1/logs`
//! returns them. Parsing the file is not timed. The figure for failures only excludes
//! `Delivered` events, which return before any pattern matching.

use std::hint::black_box;
use std::time::Instant;

use bouncewatch::classify::classify_detailed;
use bouncewatch::okta::DeliveryStatus;
use serde::Deserialize;

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "debugContext")]
    debug_context: DebugContext,
}

#[derive(Deserialize)]
struct DebugContext {
    #[serde(rename = "debugData")]
    debug_data: DebugData,
}

#[derive(Deserialize)]
struct DebugData {
    #[serde(rename = "deliveryStatus")]
    delivery_status: String,
    #[serde(rename = "providerMessage")]
    provider_message: Option<String>,
}

fn time_passes(inputs: &[(DeliveryStatus, Option<String>)], passes: usize) -> f64 {
    let started = Instant::now();
    for _ in 0..passes {
        for (status, message) in inputs {
            black_box(classify_detailed(*status, black_box(message.as_deref())));
        }
    }
    started.elapsed().as_nanos() as f64 / (inputs.len() * passes) as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: classify_cost EXPORT.json [PASSES]");
    let passes: usize = args.next().map_or(3, |n| n.parse().expect("PASSES"));
    let text = std::fs::read(&path).expect("reading the export failed");
    let events: Vec<Event> = serde_json::from_slice(&text).expect("the export is not a JSON array");
    let inputs: Vec<(DeliveryStatus, Option<String>)> = events
        .into_iter()
        .filter_map(|event| {
            let data = event.debug_context.debug_data;
            DeliveryStatus::from_word(&data.delivery_status).map(|s| (s, data.provider_message))
        })
        .collect();
    let failures: Vec<(DeliveryStatus, Option<String>)> = inputs
        .iter()
        .filter(|(status, _)| *status != DeliveryStatus::Delivered)
        .cloned()
        .collect();
    // One untimed pass warms the caches and any lazily built pattern tables.
    time_passes(&inputs, 1);
    let all = time_passes(&inputs, passes);
    let failed = time_passes(&failures, passes);
    println!(
        "{} events ({} failures), {passes} passes: {all:.0} ns/event over all events, \
         {failed:.0} ns/event over failures only",
        inputs.len(),
        failures.len()
    );
}
