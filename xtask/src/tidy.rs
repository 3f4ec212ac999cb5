//! `cargo xtask tidy`: repository hygiene.
//!
//! - every crate has a `//!` crate doc; no tokio below the runtime; no clock reads or
//!   `todo!`/`unimplemented!` in library code below the runtime;
//! - every invariant I1..I12 has a section in docs/SECURITY.md and a test named after it
//!   (`fn iN_…`), unless its section says the invariant does not hold yet
//!   ([`NOT_YET_MARKER`]);
//! - the repository speaks of the software only: words about how the code was made
//!   (numbered work items, code inspections, tracker numbers) fail, in file contents and
//!   file names ([`process_words`]);
//! - size limits on library code under crates/: files, struct fields, function bodies
//!   ([`MAX_FILE_LINES`], [`MAX_STRUCT_FIELDS`], [`MAX_FN_LINES`]), with the exact
//!   current offenders listed in [`SIZE_EXEMPT`].
//!
//! The word patterns are assembled at run time from fragments, so this file does not
//! contain the phrases it looks for.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Highest invariant number (docs/SECURITY.md, the product spec).
const INVARIANTS: u32 = 12;

/// A line in an invariant's SECURITY.md section saying it does not hold yet. Such an
/// invariant needs no `iN_` test; the section must say plainly what is missing.
const NOT_YET_MARKER: &str = "**Status: does not hold yet.**";

/// Longest library source file under crates/, in lines.
const MAX_FILE_LINES: usize = 1_500;
/// Most named fields in one struct.
const MAX_STRUCT_FIELDS: usize = 20;
/// Longest function, in lines from `fn` to its closing brace.
const MAX_FN_LINES: usize = 100;

/// Library code over the size limits today. Every entry must leave this list: split
/// the file, struct or function and delete its line. Tidy fails on an entry that is no
/// longer over its limit, so the list only shrinks. Forms: `path` (file lines),
/// `path: struct Name`, `path: fn name` (every function of that name in the file).
const SIZE_EXEMPT: &[&str] = &[];

/// How many of the largest items of each kind tidy prints.
const SHOW_LARGEST: usize = 5;

type Result<T = ()> = std::result::Result<T, String>;

/// Runs every check under `root`; prints the largest files, structs and functions.
pub(crate) fn run(root: &Path) -> Result {
    let mut problems = Vec::new();
    let mut all_sources = String::new();
    crates(root, &mut problems, &mut all_sources)?;
    invariants(root, &all_sources, &mut problems)?;
    for file in text_files(root) {
        let rel = relative(root, &file);
        if let Some(word) = process_words(&rel).into_iter().next() {
            problems.push(format!("{rel}: file name says how it was made ({word})"));
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (i, line) in text.lines().enumerate() {
            for word in process_words(line) {
                problems.push(format!(
                    "{rel}:{}: `{word}` speaks of how the code was made, not what it does",
                    i + 1
                ));
            }
        }
    }
    sizes(root, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        for p in &problems {
            eprintln!("tidy: {p}");
        }
        Err(format!("{} tidy problem(s)", problems.len()))
    }
}

/// Crate docs, tokio below the runtime, clock reads and `todo!` in library code.
fn crates(root: &Path, problems: &mut Vec<String>, all_sources: &mut String) -> Result {
    let crates_dir = root.join("crates");
    let entries = std::fs::read_dir(&crates_dir).map_err(|e| format!("crates/: {e}"))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let lib = dir.join("src").join("lib.rs");
        let main = dir.join("src").join("main.rs");
        let top = if lib.exists() { lib } else { main };
        match std::fs::read_to_string(&top) {
            Ok(s) if s.trim_start().starts_with("//!") => {}
            _ => problems.push(format!("{name}: no `//!` crate doc in {}", top.display())),
        }
        let below_runtime = !matches!(name.as_str(), "phantom" | "phantom-cli" | "phantom-ffi");
        if below_runtime {
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
            let deps = manifest.split("[dev-dependencies]").next().unwrap_or("");
            if deps.lines().any(|l| l.trim_start().starts_with("tokio")) {
                problems.push(format!("{name}: depends on tokio below the runtime"));
            }
        }
        for file in files_with(&dir, &["rs"]) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            // Tests, benches and examples may read the clock and use `todo!`;
            // the rules below apply to library code.
            let in_tests = is_test_file(&file);
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if !in_tests && (code.contains("todo!(") || code.contains("unimplemented!(")) {
                    problems.push(format!(
                        "{}:{}: todo!/unimplemented!",
                        file.display(),
                        i + 1
                    ));
                }
                if below_runtime
                    && !in_tests
                    && (code.contains("Instant::now(") || code.contains("SystemTime::now("))
                {
                    problems.push(format!("{}:{}: reads the clock", file.display(), i + 1));
                }
            }
            all_sources.push_str(&text);
        }
    }
    Ok(())
}

/// Every invariant has a bold `**IN**` section in SECURITY.md and a test `fn iN_…`, or
/// its section carries [`NOT_YET_MARKER`].
fn invariants(root: &Path, all_sources: &str, problems: &mut Vec<String>) -> Result {
    let security = std::fs::read_to_string(root.join("docs").join("SECURITY.md"))
        .map_err(|e| format!("docs/SECURITY.md: {e}"))?;
    for n in 1..=INVARIANTS {
        let tag = format!("**I{n}**");
        let Some(start) = security.find(&tag) else {
            problems.push(format!("SECURITY.md: no section for {tag}"));
            continue;
        };
        let rest = security.get(start + tag.len()..).unwrap_or("");
        let section = rest.split("\n### ").next().unwrap_or(rest);
        let not_yet = section.contains(NOT_YET_MARKER);
        if !not_yet && !all_sources.contains(&format!("fn i{n}_")) {
            problems.push(format!(
                "SECURITY.md: I{n} has no test named `i{n}_*` (nor says it does not hold yet)"
            ));
        }
    }
    Ok(())
}

/// Words about how the code was made, lowercased: a numbered work item or tracker
/// number, any form of the word for a code inspection, and the word for a person or
/// program assisting the work.
pub(crate) fn process_words(line: &str) -> Vec<String> {
    let lower = line.to_ascii_lowercase();
    let b = lower.as_bytes();
    let inspect = ["re", "view"].concat();
    let halt = ["st", "op"].concat();
    let tracker = ["is", "sue"].concat();
    let assist = ["hel", "per"].concat();
    let mut found = Vec::new();
    let word_char = |i: usize| b.get(i).is_some_and(|c| c.is_ascii_alphanumeric());
    let ident_char = |i: usize| {
        b.get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    };
    // The end of a number following `at` (one optional ' ', '-', '_' or '#' first).
    let number_after = |at: usize| -> Option<usize> {
        let mut i = at;
        if b.get(i)
            .is_some_and(|c| matches!(c, b' ' | b'-' | b'_' | b'#'))
        {
            i += 1;
        }
        let digits = b
            .get(i..)?
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        (digits > 0 && !word_char(i + digits)).then_some(i + digits)
    };
    for (start, _) in lower.match_indices(inspect.as_str()) {
        if start == 0 || !word_char(start - 1) {
            let end = b
                .iter()
                .skip(start)
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count();
            found.push(lower.get(start..start + end).unwrap_or("").to_owned());
        }
    }
    for key in [&halt, &tracker] {
        for (start, _) in lower.match_indices(key.as_str()) {
            if start > 0 && word_char(start - 1) {
                continue;
            }
            if let Some(end) = number_after(start + key.len()) {
                found.push(lower.get(start..end).unwrap_or("").to_owned());
            }
        }
    }
    let the_tracker = format!("the {tracker}");
    for (start, _) in lower.match_indices(the_tracker.as_str()) {
        let end = start + the_tracker.len();
        if (start == 0 || !word_char(start - 1)) && !ident_char(end) {
            found.push(the_tracker.clone());
        }
    }
    for (start, _) in lower.match_indices(assist.as_str()) {
        let mut end = start + assist.len();
        if b.get(end) == Some(&b's') {
            end += 1;
        }
        if (start == 0 || !ident_char(start - 1)) && !ident_char(end) {
            found.push(lower.get(start..end).unwrap_or("").to_owned());
        }
    }
    found
}

/// Text files that must speak of the software: .rs, .md and .toml under crates/,
/// docs/, xtask/ and fuzz/ (outside target and corpus directories), and README.md.
fn text_files(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.join("README.md")];
    for dir in ["crates", "docs", "xtask", "fuzz"] {
        out.extend(files_with(&root.join(dir), &["rs", "md", "toml"]));
    }
    out
}

/// True for tests, benches and examples: files under a `tests`, `benches` or
/// `examples` directory, and `tests.rs`.
fn is_test_file(file: &Path) -> bool {
    file.components().any(|c| {
        let c = c.as_os_str();
        c == "tests" || c == "benches" || c == "examples"
    }) || file.file_name().is_some_and(|f| f == "tests.rs")
}

/// One measured item: its `SIZE_EXEMPT` key and its size.
struct Item {
    key: String,
    size: usize,
}

/// File, struct and function sizes of library code under crates/.
fn sizes(root: &Path, problems: &mut Vec<String>) {
    let (mut files, mut structs, mut fns) = (Vec::new(), Vec::new(), Vec::new());
    for file in files_with(&root.join("crates"), &["rs"]) {
        if is_test_file(&file) {
            continue;
        }
        let rel = relative(root, &file);
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        files.push(Item {
            key: rel.clone(),
            size: text.lines().count(),
        });
        let code = strip(&text);
        let tests = test_module_ranges(&code);
        for (name, at, size) in struct_fields(&code) {
            if !tests.iter().any(|r| r.contains(&at)) {
                structs.push(Item {
                    key: format!("{rel}: struct {name}"),
                    size,
                });
            }
        }
        for (name, at, size) in fn_lengths(&code) {
            if !tests.iter().any(|r| r.contains(&at)) {
                fns.push(Item {
                    key: format!("{rel}: fn {name}"),
                    size,
                });
            }
        }
    }
    let mut report = String::new();
    let mut over = Vec::new();
    for (kind, unit, limit, items) in [
        ("files", "lines", MAX_FILE_LINES, &mut files),
        ("structs", "fields", MAX_STRUCT_FIELDS, &mut structs),
        ("functions", "lines", MAX_FN_LINES, &mut fns),
    ] {
        items.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.key.cmp(&b.key)));
        let _ = writeln!(report, "tidy: largest {kind} (limit {limit} {unit}):");
        for it in items.iter().take(SHOW_LARGEST) {
            let exempt = if SIZE_EXEMPT.contains(&it.key.as_str()) {
                " (exempt)"
            } else {
                ""
            };
            let _ = writeln!(report, "tidy:   {:>5}  {}{exempt}", it.size, it.key);
        }
        for it in items.iter().filter(|it| it.size > limit) {
            over.push(it.key.clone());
            if !SIZE_EXEMPT.contains(&it.key.as_str()) {
                problems.push(format!(
                    "{}: {} {unit}, over the limit of {limit}",
                    it.key, it.size
                ));
            }
        }
    }
    print!("{report}");
    for e in SIZE_EXEMPT {
        if !over.iter().any(|k| k == e) {
            problems.push(format!(
                "SIZE_EXEMPT lists `{e}`, which is not over its limit: delete the entry"
            ));
        }
    }
}

/// `text` with comments, string and char literals blanked (newlines kept), so that
/// braces and keywords in them do not count.
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let blank = |out: &mut Vec<u8>, s: &[u8]| {
        out.extend(s.iter().map(|c| if *c == b'\n' { b'\n' } else { b' ' }));
    };
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let next = b.get(i + 1).copied();
        let prev_ident = i > 0
            && b.get(i - 1)
                .is_some_and(|p| p.is_ascii_alphanumeric() || *p == b'_');
        let len = if c == b'/' && next == Some(b'/') {
            b.iter().skip(i).take_while(|c| **c != b'\n').count()
        } else if c == b'/' && next == Some(b'*') {
            block_comment_len(b.get(i..).unwrap_or(&[]))
        } else if c == b'"' {
            1 + string_body_len(b.get(i + 1..).unwrap_or(&[]))
        } else if (c == b'r' || (c == b'b' && next == Some(b'r'))) && !prev_ident {
            let skip = if c == b'b' { 2 } else { 1 };
            let hashes = b.iter().skip(i + skip).take_while(|c| **c == b'#').count();
            if b.get(i + skip + hashes) == Some(&b'"') {
                let body = b.get(i + skip + hashes + 1..).unwrap_or(&[]);
                skip + hashes + 1 + raw_string_body_len(body, hashes)
            } else {
                0
            }
        } else if c == b'\'' {
            char_literal_len(b.get(i..).unwrap_or(&[]))
        } else {
            0
        };
        if len == 0 {
            out.push(c);
            i += 1;
        } else {
            let end = (i + len).min(b.len());
            blank(&mut out, b.get(i..end).unwrap_or(&[]));
            i = end;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Length of a (nested) block comment starting at `b[0..2] == "/*"`.
fn block_comment_len(b: &[u8]) -> usize {
    let (mut depth, mut i) = (0usize, 0);
    while i < b.len() {
        match (b.get(i), b.get(i + 1)) {
            (Some(b'/'), Some(b'*')) => {
                depth += 1;
                i += 2;
            }
            (Some(b'*'), Some(b'/')) => {
                depth = depth.saturating_sub(1);
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    b.len()
}

/// Length of a string body after its opening quote, closing quote included.
fn string_body_len(b: &[u8]) -> usize {
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// Length of a raw string body after its opening quote, closing `"###` included.
fn raw_string_body_len(b: &[u8], hashes: usize) -> usize {
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'"'
            && b.iter()
                .skip(i + 1)
                .take(hashes)
                .filter(|h| **h == b'#')
                .count()
                == hashes
        {
            return i + 1 + hashes;
        }
        i += 1;
    }
    b.len()
}

/// Length of a char literal at `b[0] == '\''`, or 0 for a lifetime or label.
fn char_literal_len(b: &[u8]) -> usize {
    match (b.get(1), b.get(2)) {
        (Some(b'\\'), _) => b
            .iter()
            .skip(3)
            .position(|c| *c == b'\'')
            .map_or(0, |p| p + 4),
        (Some(c), Some(b'\'')) if *c != b'\'' => 3,
        // A multi-byte UTF-8 char.
        (Some(c), _) if *c >= 0x80 => b
            .iter()
            .skip(1)
            .take(5)
            .position(|c| *c == b'\'')
            .map_or(0, |p| p + 2),
        _ => 0,
    }
}

/// Byte offsets following each occurrence of keyword `kw` (word boundaries both sides).
fn keyword_at(code: &str, kw: &str) -> Vec<usize> {
    let b = code.as_bytes();
    let ident = |i: usize| {
        b.get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    };
    code.match_indices(kw)
        .filter(|(s, _)| (*s == 0 || !ident(s - 1)) && !ident(s + kw.len()))
        .map(|(s, _)| s + kw.len())
        .collect()
}

/// The identifier after `at` (spaces skipped) and the offset after it.
fn ident_after(code: &str, at: usize) -> Option<(String, usize)> {
    let b = code.as_bytes();
    let start = at
        + b.get(at..)?
            .iter()
            .take_while(|c| c.is_ascii_whitespace())
            .count();
    let len = b
        .get(start..)?
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    (len > 0).then(|| {
        (
            code.get(start..start + len).unwrap_or("").to_owned(),
            start + len,
        )
    })
}

/// Offset of the brace closing the one at `open`.
fn matching_brace(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in b.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Line number (0-based) of byte offset `at`.
fn line_of(b: &[u8], at: usize) -> usize {
    b.iter().take(at).filter(|c| **c == b'\n').count()
}

/// Byte ranges of `#[cfg(test)] mod name { … }` blocks.
fn test_module_ranges(code: &str) -> Vec<std::ops::Range<usize>> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for (s, _) in code.match_indices("#[cfg(test)]") {
        let rest = code.get(s..).unwrap_or("");
        let Some(m) = keyword_at(rest, "mod").first().copied() else {
            continue;
        };
        // Only when `mod` follows the attribute directly (attributes and `pub` between).
        let between = rest.get(12..m.saturating_sub(3)).unwrap_or("");
        if between.contains(';') || between.contains('{') || between.contains("fn ") {
            continue;
        }
        let Some(open) = rest.get(m..).and_then(|r| r.find(['{', ';'])) else {
            continue;
        };
        let open = s + m + open;
        if b.get(open) == Some(&b'{')
            && let Some(close) = matching_brace(b, open)
        {
            out.push(s..close);
        }
    }
    out
}

/// `(name, offset, named fields)` of every `struct Name { … }`.
fn struct_fields(code: &str) -> Vec<(String, usize, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for at in keyword_at(code, "struct") {
        let Some((name, after)) = ident_after(code, at) else {
            continue;
        };
        // Skip generics, then expect `{` (possibly after a where clause).
        let mut i = after;
        let mut angle = 0i32;
        let open = loop {
            match b.get(i) {
                Some(b'<') => angle += 1,
                Some(b'>') if b.get(i.wrapping_sub(1)) != Some(&b'-') => angle -= 1,
                Some(b'(' | b';') if angle == 0 => break None,
                Some(b'{') if angle == 0 => break Some(i),
                None => break None,
                _ => {}
            }
            i += 1;
        };
        let Some(open) = open else { continue };
        let Some(close) = matching_brace(b, open) else {
            continue;
        };
        let body = code.get(open + 1..close).unwrap_or("");
        out.push((name, open, count_fields(body)));
    }
    out
}

/// Named fields at the top level of a struct body: `name:` (not `::`) after an
/// optional visibility, at nesting depth 0.
fn count_fields(body: &str) -> usize {
    let mut depth = 0i32;
    let mut fields = 0;
    for line in body.lines() {
        if depth == 0 {
            let mut t = line.trim_start();
            if let Some(r) = t.strip_prefix("pub") {
                t = r.trim_start();
                if t.starts_with('(') {
                    t = t.split_once(')').map_or("", |(_, r)| r).trim_start();
                }
            }
            let n = t
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                .count();
            let after = t.get(n..).unwrap_or("").trim_start();
            if n > 0 && after.starts_with(':') && !after.starts_with("::") {
                fields += 1;
            }
        }
        for c in line.bytes() {
            match c {
                b'{' | b'(' | b'[' => depth += 1,
                b'}' | b')' | b']' => depth -= 1,
                _ => {}
            }
        }
    }
    fields
}

/// `(name, offset, lines)` of every function with a body, from the line of `fn` to the
/// line of its closing brace.
fn fn_lengths(code: &str) -> Vec<(String, usize, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for at in keyword_at(code, "fn") {
        let Some((name, after)) = ident_after(code, at) else {
            continue;
        };
        // The body opens at the first `{` outside the signature's parentheses, unless
        // a `;` (a declaration) comes first.
        let mut paren = 0i32;
        let mut open = None;
        for (i, c) in b.iter().enumerate().skip(after) {
            match c {
                b'(' | b'[' => paren += 1,
                b')' | b']' => paren -= 1,
                b';' if paren == 0 => break,
                b'{' if paren == 0 => {
                    open = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let Some(close) = matching_brace(b, open) else {
            continue;
        };
        let lines = line_of(b, close) - line_of(b, at) + 1;
        out.push((name, at, lines));
    }
    out
}

/// Files under `dir` (not in `target` or `corpus` directories) with one of `exts`.
fn files_with(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                if p.file_name()
                    .is_some_and(|n| n != "target" && n != "corpus" && n != "artifacts")
                {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| exts.iter().any(|e| x == *e)) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `file` relative to `root`, with `/` separators.
fn relative(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap_or(file);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        process_words(s)
    }

    #[test]
    fn numbered_work_items_and_inspections_are_found() {
        let inspect = ["re", "view"].concat();
        let halt = ["St", "op"].concat();
        let tracker = ["is", "sue"].concat();
        assert_eq!(words(&format!("{halt} 12 figures")).len(), 1);
        assert_eq!(words(&format!("a {halt}-12 speed-up")).len(), 1);
        assert_eq!(words(&format!("mod {inspect}3_tests;")).len(), 1);
        assert_eq!(words(&format!("mod {inspect}_tests;")).len(), 1);
        assert_eq!(words(&format!("(third {inspect}, {halt} 11)")).len(), 2);
        assert_eq!(words(&format!("measured in {tracker} 5")).len(), 1);
        assert_eq!(words(&format!("The {tracker}'s variants")).len(), 1);
        assert_eq!(words(&["test ", "hel", "pers fail"].concat()).len(), 1);
    }

    #[test]
    fn ordinary_words_pass() {
        for s in [
            "the sender may stop sending on this stream",
            "pub fn issue_challenge(&mut self)",
            "the server may issue a ticket",
            "tickets issued at `issued`",
            "a preview of the frame",
            "stopped streams give their slots back",
        ] {
            assert_eq!(words(s), Vec::<String>::new(), "{s}");
        }
    }

    #[test]
    fn strip_blanks_comments_strings_and_chars() {
        let s = strip("let a = \"{\"; // }\nlet b = '{'; /* { */ let c = r#\"}\"#;\n");
        assert_eq!(s.matches(['{', '}']).count(), 0);
        assert_eq!(s.lines().count(), 2);
        assert!(strip("fn f<'a>(x: &'a u8) {}").contains("{}"));
        assert_eq!(strip("let q = b'\\''; {}").matches(['{', '}']).count(), 2);
        assert_eq!(strip("let q = '\\u{7b}'; {").matches(['{', '}']).count(), 1);
    }

    #[test]
    fn struct_fields_and_fn_lengths_are_counted() {
        let code = "pub struct S<T: Into<u8>> {\n    pub a: u8,\n    pub(crate) b: Vec<(u8, u8)>,\n    c: fn() -> T,\n}\nstruct U(u8);\nfn f() {\n    if x {\n    }\n}\ntrait T { fn g(); }\n";
        let code = strip(code);
        let structs: Vec<_> = struct_fields(&code)
            .into_iter()
            .map(|(n, _, f)| (n, f))
            .collect();
        assert_eq!(structs, vec![("S".to_owned(), 3)]);
        let fns: Vec<_> = fn_lengths(&code)
            .into_iter()
            .map(|(n, _, l)| (n, l))
            .collect();
        assert_eq!(fns, vec![("f".to_owned(), 4)]);
    }
}
