#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| brainaged::scp::fuzz::pdu_stream(data));
