#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| finstream_fuzz::altdata_csv(data));
