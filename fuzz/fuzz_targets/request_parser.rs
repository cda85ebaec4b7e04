//! Fuzzes the GOCACHEPROG request parser and the streaming body decoder:
//! no input may panic them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gocache::prog::parse_request(data);
    let mut r = std::io::BufReader::with_capacity(16, data);
    let _ = gocache::prog::stream_body(&mut r, &mut std::io::sink());
});
