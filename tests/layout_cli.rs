//! The template cache is real: Go built it, and it holds what we expect.

use crate::support::*;

#[test]
fn template_cache_holds_outputs_actions_and_two_executables() {
    let cache = template_cache();
    let mut exe_dirs = 0;
    for sub in 0..256 {
        let dir = cache.join(format!("{sub:02x}"));
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                exe_dirs += 1;
            }
        }
    }
    assert_eq!(exe_dirs, 2);
}
