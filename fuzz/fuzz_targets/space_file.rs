#![no_main]
// A space file either fails to load or builds valid networks; never a panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(space) = hwnas_search::space::file::parse(text, "fuzz.toml") {
        let _ = space.ops();
        let mut rng = hwnas_core::rng::SplitMix64::new(data.len() as u64);
        let arch = space.sample(&mut rng);
        let net = space.network(&arch).expect("a sampled architecture builds");
        net.validate().expect("a sampled network is wired right");
    }
});
