//! I8: configuration types print no application plaintext in Debug.
#![allow(missing_docs, clippy::unwrap_used)]

use phantom::ClientOptions;

#[test]
fn i8_client_options_debug_shows_early_data_length_not_bytes() {
    let early = b"POST /login user=alice&password=hunter2";
    let options = ClientOptions {
        early_data: Some(early.to_vec()),
        ..ClientOptions::default()
    };
    let compact = format!("{options:?}");
    assert!(
        compact.contains(&format!("early_data_len: Some({})", early.len())),
        "{compact}"
    );
    for shown in [compact, format!("{options:#?}")] {
        assert!(!shown.contains("hunter2"), "plaintext in {shown}");
        // The decimal list a derived Debug prints for a Vec<u8>, from the first byte on.
        let list = format!("{:?}", &early[..6]);
        assert!(!shown.contains(list.trim_end_matches(']')), "{shown}");
    }
    let none = format!("{:?}", ClientOptions::default());
    assert!(none.contains("early_data_len: None"), "{none}");
}
