//! The RFC 8288 Link header parser on arbitrary input: it must never panic,
//! and what it returns must keep the promises `Link` documents.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(links) = apisync::fetch::parse_links(&text) else {
        return;
    };
    for link in &links {
        if let Some(rel) = &link.rel {
            // One relation type per link, compared case-insensitively.
            assert!(!rel.is_empty(), "empty rel from {text:?}");
            assert!(!rel.contains(char::is_whitespace), "{rel:?} from {text:?}");
            assert_eq!(rel, &rel.to_ascii_lowercase(), "from {text:?}");
        }
        for (name, _) in &link.params {
            assert_eq!(name, &name.to_ascii_lowercase(), "from {text:?}");
        }
    }
});
