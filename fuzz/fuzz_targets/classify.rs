//! The classifier on any provider message and every status.
#![no_main]

use bouncewatch::classify::classify_detailed;
use bouncewatch::okta::DeliveryStatus;
use libfuzzer_sys::fuzz_target;

const STATUSES: [DeliveryStatus; 6] = [
    DeliveryStatus::Delivered,
    DeliveryStatus::Bounce,
    DeliveryStatus::Blocked,
    DeliveryStatus::Deferred,
    DeliveryStatus::Dropped,
    DeliveryStatus::Unknown,
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let status = STATUSES[first as usize % STATUSES.len()];
    let message = String::from_utf8_lossy(rest);
    let _ = classify_detailed(status, Some(&message));
    let _ = classify_detailed(status, None);
});
