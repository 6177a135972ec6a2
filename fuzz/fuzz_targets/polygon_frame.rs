#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| finstream_fuzz::polygon_frame(data));
