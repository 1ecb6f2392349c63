#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| brainaged::scp::fuzz::spool_file_read_back(data));
