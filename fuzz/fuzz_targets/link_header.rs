//! The System Log's `Link` header parser on any header value and rel.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (value, rel) = text.split_once('\n').unwrap_or((&text, "next"));
    let _ = bouncewatch::okta::logs::find_link(value, rel);
});
