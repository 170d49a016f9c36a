//! Split the input into argv words, parse, render (must give back the words exactly) and run
//! the offline validator (must not panic).

#![no_main]

use libfuzzer_sys::fuzz_target;
use uml::check::{CheckEnv, check};
use uml::cmdline::CommandLine;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // NUL can never be in an argv word; every other byte may be.
    let words: Vec<String> = text.split(['\0', '\n']).map(str::to_owned).collect();
    let cmdline = CommandLine::parse(&words);
    assert_eq!(cmdline.to_argv(), words);
    let _ = check(&cmdline, &CheckEnv::offline());
});
