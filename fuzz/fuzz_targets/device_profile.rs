#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hwnas_profiler::fuzzing::device_profile(data));
