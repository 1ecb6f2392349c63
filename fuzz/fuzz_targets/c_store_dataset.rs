#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| brainaged::scp::fuzz::c_store_dataset(data));
