//! The hook's delivery parser: any bytes must give an envelope or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, sorted)) = bouncewatch::ingest::parse_envelope(data) {
        for event in &sorted.events {
            assert!(event.address.key().contains('@'));
        }
    }
});
