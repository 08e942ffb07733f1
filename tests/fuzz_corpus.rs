//! Replays every checked-in fuzz corpus file (seeds and inputs the fuzzers
//! once crashed on) through the same property checks the fuzz targets run,
//! on the stable toolchain, so CI exercises them without nightly.

use k8s_image_availability_exporter::fuzzing::{run, TARGETS};

#[test]
fn every_corpus_file_passes_its_properties() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut total = 0;
    for target in TARGETS {
        let dir = root.join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let result = std::panic::catch_unwind(|| run(target, &data));
            assert!(
                result.is_ok(),
                "{target}: {} violates a property",
                path.display()
            );
            n += 1;
        }
        assert!(n > 0, "{target} has no corpus");
        total += n;
    }
    println!("replayed {total} corpus files");
}
