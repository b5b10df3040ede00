//! The config loader: any text is a configuration or an error, and a
//! loaded one is checked without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_fuzz::Config;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    if let Ok(config) = Config::from_toml(text) {
        let _ = config.validate();
        let _ = config.plugins.settings_text();
    }
});
