#![no_main]
// Properties live in src/fuzzing.rs, shared with the corpus replay test.
libfuzzer_sys::fuzz_target!(|data: &[u8]| k8s_image_availability_exporter::fuzzing::web_config(data));
