#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| brainaged::scp::fuzz::convert_file(data));
