#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| finstream_fuzz::market_frame(data));
