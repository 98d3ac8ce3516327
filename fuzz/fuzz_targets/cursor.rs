//! Any text as a pagination cursor: decoded or refused, never a panic; a decoded
//! cursor encodes back to one that decodes to the same position.
#![no_main]

use gateway_domain::Cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, &str)| {
    let (arity, text) = input;
    let arity = usize::from(arity % 4);
    if let Ok(cursor) = Cursor::decode(text, arity) {
        let again = Cursor::decode(&cursor.encode(), arity).expect("our own cursor decodes");
        assert_eq!(again, cursor);
    }
});
