#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| finstream_fuzz::sec_submissions(data));
