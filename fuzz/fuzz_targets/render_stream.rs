#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ro_p2p_core::fuzz::render_stream(data));
