//! The configuration loader on any TOML file: an error naming the setting, never a panic.
#![no_main]

use std::io::Write;

use bouncewatch::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("create a temporary file");
    file.write_all(data).expect("write the temporary file");
    let _ = Config::load_from(Some(file.path()), &[]);
});
